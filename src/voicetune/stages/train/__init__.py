"""Stage `train`: dataset + model + lora + train config -> LoRA adapter and training history.

One trainer contract, backends chosen by the resolved `train.backend`: `hf` (transformers + peft:
CPU, MPS, CUDA) and `unsloth` (CUDA 4-bit QLoRA) train through transformers' Trainer, `mlx`
(mlx-lm LoRA on Apple Silicon) through mlx_trainer's steps under the same cadence. A backend only
builds the LoRA model (voicetune.backends); tokenizer, labels, rows, callbacks and W&B are shared. Where it runs
(this machine, a Modal GPU) is the pipeline's decision, not this stage's.
"""

from __future__ import annotations

import json
import shutil
import time

from voicetune import backends
from voicetune.chat import caps, encode_records, end_tokens, persona_template
from voicetune.errors import UserError
from voicetune.probes import one_style_per_passage
from voicetune.records import read_jsonl, reference


def run(ctx) -> dict:
    """Train the adapter into out/adapter; history.json holds losses and probe generations."""
    from voicetune.stages.train import mlx_trainer, trainer as hf_trainer
    from voicetune.stages.train.callbacks import HistoryCallback, ProbeCallback
    from voicetune.stages.train.trainer import last_checkpoint

    cfg, out, tracker = ctx.cfg, ctx.out, ctx.tracker
    backend = backends.module(cfg.train.backend)
    tok = ctx.tokenizer()
    ends = end_tokens(cfg.model, tok)
    train_ex, train_recs, too_long = encode_records(read_jsonl(ctx.inputs["dataset"] / "train.jsonl"), tok, ends,
                                                    cfg.train.seq_len)
    valid = one_style_per_passage(read_jsonl(ctx.inputs["dataset"] / "valid.jsonl"), cfg.data.seed)
    valid_ex, _, _ = encode_records(valid[: cfg.eval.loss_records or None], tok, ends, cfg.train.seq_len)
    if not train_ex or not valid_ex:
        raise UserError(f"train.seq_len={cfg.train.seq_len}: no train or valid record fits; raise it or lower data.max_tokens")
    model = backend.load(cfg, ctx.cache, tok)
    history = HistoryCallback(tracker)
    panel = read_jsonl(ctx.inputs["probes"] / "probes.jsonl")
    probes = ProbeCallback(tok, panel, caps(tok, [reference(p) for p in panel], cfg.eval), ends, history, tracker)
    make_trainer = (mlx_trainer if cfg.train.backend == "mlx" else hf_trainer).make_trainer
    trainer = make_trainer(cfg, model, tok, train_ex, valid_ex, [r["weight"] for r in train_recs], out,
                           [history, probes], pack=backend.PACKED_ROWS_ISOLATED, wandb=_logging(tracker))
    history.trainer = probes.trainer = trainer
    if _logging(tracker):
        tracker.save_file(ctx.inputs["dataset"] / "card.md")
        tracker.image("dataset/token_lengths", ctx.inputs["dataset"] / "token_hist.png")
    started, checkpoint = time.perf_counter(), last_checkpoint(out)
    history.resume(checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.state.global_step not in history.eval_steps():
        trainer.evaluate()  # the last step always has an eval loss and probe outputs
    summary = history.finish(trainer, time.perf_counter() - started, too_long)
    save_adapter(cfg, trainer.save_adapter, tok, out)
    (out / "history.json").write_text(json.dumps(history.data, indent=2))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the adapter is the artifact
    return summary


def _logging(tracker) -> bool:
    """Whether a W&B run is open for this stage (the HF Trainer then reports into it)."""
    return tracker is not None and tracker.run is not None


def save_adapter(cfg, save_weights, tokenizer, out) -> None:
    """A self-contained adapter folder: weights (`save_weights(folder)`: a trainer's save_adapter, a
    PEFT model's save_pretrained), tokenizer + template, persona, the config it saw."""
    from omegaconf import OmegaConf

    folder = out / "adapter"
    save_weights(folder)
    # Training rendered an explicit persona in every record; saved, the template also makes it the
    # default, so a chat that sends no system turn gets the trained prompt (see export/parity.py).
    trained_template = tokenizer.chat_template
    tokenizer.chat_template = persona_template(trained_template, cfg.corpus.persona)
    tokenizer.save_pretrained(folder)
    tokenizer.chat_template = trained_template
    (folder / "persona.txt").write_text(cfg.corpus.persona + "\n")
    (folder / "voicetune.yaml").write_text(OmegaConf.to_yaml(cfg))  # the train stage's view
