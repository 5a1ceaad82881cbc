"""Stage `train`: dataset + model + lora + train config -> LoRA adapter and training history.

One trainer interface, backends chosen by `train.backend`: `hf` (transformers + peft: CPU,
MPS, CUDA) and `unsloth` (CUDA 4-bit QLoRA). A backend only builds the LoRA model
(`load(cfg, cache)`); tokenizer, rows, trainer, callbacks and W&B are shared. `compute=modal`
runs this same stage on a Modal GPU (voicetune.compute.modal).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from voicetune.dataset import read_jsonl
from voicetune.errors import UserError

BACKENDS = ("hf", "unsloth", "mlx")


def pick_backend(cfg) -> str:
    """`auto` -> unsloth when CUDA and unsloth are present, else hf; an explicit unsloth must be usable here."""
    from voicetune.train import unsloth

    choice = cfg.train.backend
    if choice == "auto":
        choice = "unsloth" if unsloth.available() else "hf"
    if choice not in BACKENDS:
        raise UserError(f"train.backend={choice!r}: allowed: auto, {', '.join(BACKENDS)}")
    if choice == "mlx":
        raise UserError("train.backend=mlx: not built yet; use train.backend=hf")
    # compute=modal checks on the GPU machine, where the stage runs.
    if choice == "unsloth" and cfg.compute.target == "local" and not unsloth.available():
        raise UserError("train.backend=unsloth: needs a CUDA GPU and `pip install 'voicetune[cuda]'`; "
                        "use train.backend=hf or compute=modal")
    return choice


def backend_module(name: str):
    """The backend's module: `load(cfg, cache)` and PACKED_ROWS_ISOLATED."""
    if name == "unsloth":
        import unsloth  # noqa: F401  (patches transformers and peft on import: before they are used)

        from voicetune.train import unsloth as backend
    else:
        from voicetune.train import hf as backend
    return backend


def end_tokens(cfg, tokenizer) -> list[str]:
    """The model's end-of-turn tokens: from the model config, else the tokenizer's eos."""
    return list(cfg.model.end_tokens) or [tokenizer.eos_token]


def encode_split(records: list[dict], tokenizer, ends: list[str], seq_len: int) -> tuple[list, list, int]:
    """Encoded examples that fit seq_len (a truncated one would never see its end token)."""
    from voicetune.train.data import encode

    kept, recs, dropped = [], [], 0
    for rec in records:
        ex = encode(rec["messages"], tokenizer, ends)
        if len(ex["input_ids"]) > seq_len:
            dropped += 1
            continue
        kept.append(ex)
        recs.append(rec)
    return kept, recs, dropped


def run(cfg, inputs: dict[str, Path], out: Path, tracker=None) -> dict:
    """Train the adapter into out/adapter; history.json holds losses and probe generations."""
    if cfg.compute.target == "modal":
        from voicetune.compute.modal import run_remote

        return run_remote(cfg, inputs, out, tracker)
    backend = backend_module(pick_backend(cfg))
    from voicetune.cache import Cache
    from voicetune.generate import one_style_per_passage, probe_panel
    from voicetune.modelio import load_tokenizer
    from voicetune.train.callbacks import HistoryCallback, ProbeCallback
    from voicetune.train.hf import last_checkpoint, make_trainer

    cache = Cache(cfg.cache_dir)
    tok = load_tokenizer(cfg.model, cache)
    ends = end_tokens(cfg, tok)
    train_ex, train_recs, too_long = encode_split(read_jsonl(inputs["dataset"] / "train.jsonl"), tok, ends, cfg.train.seq_len)
    valid = one_style_per_passage(read_jsonl(inputs["dataset"] / "valid.jsonl"), cfg.data.seed)
    valid_ex, _, _ = encode_split(valid[: cfg.train.eval_records or None], tok, ends, cfg.train.seq_len)
    if not train_ex or not valid_ex:
        raise UserError(f"train.seq_len={cfg.train.seq_len}: no train or valid record fits; raise it or lower data.max_tokens")
    model = backend.load(cfg, cache)
    model.config.use_cache = False  # packed rows rely on the cache being off (see PackedCollator)
    history = HistoryCallback(tracker)
    panel = probe_panel(read_jsonl(inputs["heldout"] / "heldout.jsonl"), cfg.data.seed)
    probes = ProbeCallback(tok, panel, ends, history, tracker)
    trainer = make_trainer(cfg, model, tok, train_ex, valid_ex, [r["weight"] for r in train_recs], out,
                           [history, probes], pack=backend.PACKED_ROWS_ISOLATED)
    history.trainer = trainer
    if tracker:
        tracker.save_file(inputs["dataset"] / "card.md")
        tracker.image("dataset/token_lengths", inputs["dataset"] / "token_hist.png")
    started, checkpoint = time.perf_counter(), last_checkpoint(out)
    history.resume(checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.state.global_step not in history.eval_steps():
        trainer.evaluate()  # the last step always has an eval loss and probe outputs
    summary = history.finish(trainer, model, time.perf_counter() - started, too_long)
    save_adapter(cfg, model, tok, out)
    (out / "history.json").write_text(json.dumps(history.data, indent=2))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the adapter is the artifact
    return summary


def save_adapter(cfg, model, tokenizer, out: Path) -> None:
    """A self-contained adapter folder: weights, tokenizer + template, persona, the config."""
    from omegaconf import OmegaConf

    from voicetune.export.merged import persona_template

    folder = out / "adapter"
    model.save_pretrained(folder)
    # Training rendered an explicit persona in every record; saved, the template also makes it the
    # default, so a chat that sends no system turn gets the trained prompt (see export/parity.py).
    trained_template = tokenizer.chat_template
    tokenizer.chat_template = persona_template(trained_template, cfg.corpus.persona)
    tokenizer.save_pretrained(folder)
    tokenizer.chat_template = trained_template
    (folder / "persona.txt").write_text(cfg.corpus.persona + "\n")
    (folder / "voicetune.yaml").write_text(OmegaConf.to_yaml(
        OmegaConf.masked_copy(cfg, ["model", "lora", "train", "data", "corpus"]), resolve=True))
