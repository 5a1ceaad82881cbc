"""Every stage, declared once: its function, the stages it needs, the config it may read.

The pipeline gives each stage a view of exactly `reads` (voicetune.contract.view) and keys its
cache entry by that view, its inputs' keys and its sources: a key a stage reads but did not
declare fails the run, so a cache key cannot miss an input. The names and their order are
`voicetune.config.Stage`.
"""

from __future__ import annotations

from voicetune.contract import StageSpec

# Rendering a chat record: the tokenizer and template, the persona and the instruction.
CHAT = ("model", "corpus.persona", "data.instruction")
# Cutting units of a shape (voicetune.shapes): word limits, the token budget of one record.
BUDGET = ("data.max_tokens", "data.limits", "data.seed", "data.gates.max_length_ratio", "train.seq_len")
# Drafting them (voicetune.drafting): the generator, the rough styles, the prompt, the gates.
DRAFTS = ("generator", "data.rough_styles", "data.prompt", "data.gates")
RECORDS = CHAT + ("data.section_weights",)
# A generation's token cap (voicetune.chat.caps).
CAPS = ("eval.cap_ratio", "eval.cap_extra")

STAGES = {spec.name: spec for spec in [
    StageSpec("extract", "voicetune.stages.extract:run",
              reads=("corpus.path", "corpus.sections", "corpus.excluded", "corpus.end_markers",
                     "corpus.max_heading_chars"),
              sources="voicetune.stages.extract:sources", located=("corpus.path",)),
    StageSpec("units", "voicetune.stages.units:run", needs=("extract",),
              reads=("data.name", "data.shapes", "data.max_units", "data.sources") + BUDGET + CHAT),
    StageSpec("pairs", "voicetune.stages.pairs:run", needs=("units",),
              reads=DRAFTS + ("data.revisions.min_changed_words",)),
    StageSpec("split", "voicetune.stages.split:run", needs=("extract",),
              reads=("data.valid_fraction", "data.seed")),
    StageSpec("dataset", "voicetune.stages.dataset:run", needs=("pairs", "split"),
              reads=RECORDS + ("data.rough_styles", "data.revisions.weight")),
    # The held-out sets depend on the papers and the split, not on data.shapes: one per experiment.
    StageSpec("probes", "voicetune.stages.probes:run", needs=("extract", "split"),
              reads=("eval.panel", "eval.panel_size") + BUDGET + DRAFTS + RECORDS),
    StageSpec("heldout", "voicetune.stages.heldout:run", needs=("extract", "split"),
              reads=("eval.samples_per_shape",) + BUDGET + DRAFTS + RECORDS),
    StageSpec("train", "voicetune.stages.train:run", needs=("dataset", "probes"),
              reads=("model", "lora", "train", "data.seed", "eval.loss_records", "corpus.persona") + CAPS,
              tracked=True),
    StageSpec("eval", "voicetune.stages.eval:run", needs=("train", "dataset", "heldout"),
              reads=("model", "data.seed", "eval.loss_records", "eval.likeness_min_auc", "eval.n_boot",
                     "eval.seed", "eval.batch_size", "train.seq_len", "train.batch_size") + CAPS,
              tracked=True),
    # The model card in each artifact folder summarises the dataset and the eval; parity rewrites
    # held-out drafts.
    StageSpec("export", "voicetune.stages.export:run", needs=("train", "heldout", "dataset", "eval"),
              reads=("export.formats", "export.name", "export.dtype", "export.gguf", "export.mlx",
                     "export.parity_probes", "export.parity_slow_probes", "export.parity_min_stop_rate",
                     "export.lmstudio.source", "train.backend", "train.precision", "train.seq_len")
              + CHAT + CAPS,
              check="voicetune.stages.export:check",
              deliver="voicetune.stages.export.lmstudio:deliver",
              deliver_check="voicetune.stages.export.lmstudio:check_target",
              deliver_reads=("export.formats", "export.lmstudio", "export.name", "corpus.persona")),
]}
