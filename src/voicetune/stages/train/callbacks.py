"""Two small Trainer callbacks: one keeps the history, one generates the probe panel at each eval."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from voicetune.records import reference, user_turn
from voicetune.tracking import GENERATION_COLUMNS

HISTORY_FILE = "voicetune_history.json"


class HistoryCallback(TrainerCallback):
    """Train/eval losses, learning rate, real tokens/s and padding efficiency per logged step."""

    def __init__(self, tracker=None):
        self.tracker, self.trainer = tracker, None
        self.data = {"train": [], "eval": [], "generations": [], "summary": {}}
        self.started = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        """Keep the history with each checkpoint, so a resumed run reports every step."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        (folder / HISTORY_FILE).write_text(json.dumps(self.data))

    def resume(self, checkpoint: str | None) -> None:
        """Take the history saved with the checkpoint a killed run left behind."""
        saved = Path(checkpoint or "") / HISTORY_FILE
        if checkpoint and saved.is_file():
            self.data = json.loads(saved.read_text())
            self.data["summary"]["resumed_from"] = Path(checkpoint).name

    def eval_steps(self) -> set[int]:
        return {row["step"] for row in self.data["eval"]}

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs, step = logs or {}, state.global_step
        if "eval_loss" in logs:
            self.data["eval"].append({"step": step, "eval_loss": logs["eval_loss"]})
        elif "loss" in logs:
            rate = self.trainer.real_tokens / max(time.perf_counter() - self.started, 1e-9)
            row = {"step": step, "loss": logs["loss"], "learning_rate": logs.get("learning_rate"),
                   "tokens_per_s": round(rate, 1), "padding_efficiency": self.efficiency()}
            self.data["train"].append(row)
            if self.tracker:
                # No explicit step: the HF W&B callback owns wandb's step counter and plots
                # everything against train/global_step.
                self.tracker.log({"train/real_tokens_per_s": row["tokens_per_s"],
                                  "train/padding_efficiency": row["padding_efficiency"],
                                  "train/global_step": step})

    def efficiency(self) -> float:
        return round(self.trainer.real_tokens / max(self.trainer.computed_tokens, 1), 4)

    def finish(self, trainer, seconds: float, too_long: int) -> dict:
        self.data["summary"] = {**self.data["summary"],
            "steps": trainer.state.global_step, "runtime_s": round(seconds, 1),
            "real_tokens": trainer.real_tokens, "padding_efficiency": self.efficiency(),
            "real_tokens_per_s": round(trainer.real_tokens / max(seconds, 1e-9), 1),
            "dropped_too_long": too_long, **trainer.model_facts(),
            "final_eval_loss": self.data["eval"][-1]["eval_loss"] if self.data["eval"] else None,
        }
        if self.tracker:
            self.tracker.summary({f"train/{k}": v for k, v in self.data["summary"].items()})
        return self.data["summary"]


class ProbeCallback(TrainerCallback):
    """Greedy generations for the fixed probe panel after every evaluation (by the trainer's backend)."""

    def __init__(self, tokenizer, probes: list[dict], caps: list[int], end_tokens: list[str],
                 history: HistoryCallback, tracker=None):
        self.tokenizer, self.probes, self.caps, self.history, self.tracker = tokenizer, probes, caps, history, tracker
        self.trainer = None
        self.end_ids = [tokenizer.convert_tokens_to_ids(t) for t in end_tokens]

    def on_evaluate(self, args, state, control, **kwargs):
        if not self.probes:  # eval.panel_size=0: eval loss only
            return
        refs = [reference(p) for p in self.probes]
        outs = self.trainer.generate(self.tokenizer, [p["messages"] for p in self.probes], self.caps, self.end_ids)
        rows = [self._row(state.global_step, p, ref, o) for p, ref, o in zip(self.probes, refs, outs)]
        self.history.data["generations"] += rows
        if self.tracker:
            self.tracker.table("eval/generations", GENERATION_COLUMNS,
                               [[r[c] for c in GENERATION_COLUMNS] for r in rows])

    @staticmethod
    def _row(step: int, probe: dict, reference: str, out: dict) -> dict:
        ref_words, out_words = len(reference.split()), len(out["text"].split())
        return {"step": step, "probe_id": probe["probe_id"], "shape": probe["shape"],
                "prompt": user_turn(probe), "output": out["text"], "reference": reference,
                "output_words": out_words, "reference_words": ref_words,
                "length_ratio": round(out_words / max(ref_words, 1), 3), "ended": out["ended"]}
