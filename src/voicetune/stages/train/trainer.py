"""The shared trainer: transformers' Trainer over packed (or length-grouped) rows.

The Trainer does the loop, checkpoints, resume, eval and W&B; this module only supplies the
rows, the collator and the arguments. The `hf` and `unsloth` backends build their model with
their own `load` and train through `make_trainer` here; `mlx` trains through
mlx_trainer.make_trainer, which keeps these rows, arguments, cadence and callbacks. Both return
a TrainerContract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from transformers import Trainer

from voicetune.errors import UserError
from voicetune.packing import PackedCollator, grouped_rows, packed_rows, weighted_schedule

# What training_args passes needs: train_sampling_strategy came with transformers 5.2 (2026-02).
# pyproject's dependency and the `cuda` lock satisfy it (tests/test_cuda_lock.py checks both).
TRAINER_NEEDS = {"transformers": ">=5.2"}


class TrainerContract(Protocol):
    """What the train stage and its callbacks use of a trainer, whatever the backend."""

    state: object  # transformers' TrainerState: global_step, log_history
    real_tokens: int
    computed_tokens: int

    def train(self, resume_from_checkpoint: str | None = None): ...
    def evaluate(self) -> dict: ...
    def generate(self, tokenizer, conversations, caps, end_ids) -> list[dict]: ...
    def model_facts(self) -> dict: ...
    def save_adapter(self, folder: Path) -> None: ...


def require_stack() -> None:
    """Fail in one line when an installed library is older than TRAINER_NEEDS (not a TypeError mid-setup)."""
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    for name, spec in TRAINER_NEEDS.items():
        found = version(name)
        if not SpecifierSet(spec).contains(found, prereleases=True):
            raise UserError(f"{name} {found} is installed; the trainer needs {name}{spec}: pip install '{name}{spec}'")


def training_args(cfg, out: Path, steps_per_epoch: int, wandb: bool):
    """TrainingArguments from the `train` group (rows are pre-shuffled: sequential sampler)."""
    from transformers import TrainingArguments

    require_stack()
    t = cfg.train
    return TrainingArguments(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr, lr_scheduler_type=t.scheduler, warmup_steps=_warmup(t, steps_per_epoch),
        num_train_epochs=1, max_steps=t.max_steps, eval_strategy="steps", eval_steps=t.eval_steps,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=2, logging_steps=1,
        seed=t.seed, data_seed=t.seed, train_sampling_strategy="sequential",
        remove_unused_columns=False, report_to=["wandb"] if wandb else [],
        # train.precision was resolved before the run (auto -> bf16 on a CUDA card that has it).
        bf16=t.precision == "bf16", fp16=t.precision == "fp16", use_cpu=not _accelerated(),
        dataloader_num_workers=0, disable_tqdm=False, label_names=["labels"],
    )


def _warmup(t, steps: int) -> int:
    total = t.max_steps if t.max_steps > 0 else steps
    return max(0, round(t.warmup_ratio * total))


def _accelerated() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def make_trainer(cfg, model, tokenizer, train_ex, valid_ex, weights, out: Path, callbacks, pack: bool = True,
                 wandb: bool = False):
    """A Trainer over packed rows (or length-grouped single examples): weighted draws for train, each valid example once."""
    model.config.use_cache = False  # packed rows rely on the cache being off (see PackedCollator)
    args, (collator, rows), (eval_collator, valid_rows) = shared_inputs(cfg, tokenizer, train_ex, valid_ex, weights,
                                                                        out, pack, wandb)
    trainer = PackedTrainer(model=model, args=args, train_dataset=rows, eval_dataset=valid_rows,
                            data_collator=collator, callbacks=callbacks)
    trainer.eval_collator = eval_collator
    return trainer


def shared_inputs(cfg, tokenizer, train_ex, valid_ex, weights, out: Path, pack: bool, wandb: bool):
    """What every backend's trainer is built from: TrainingArguments, (collator, rows) for train (weighted
    draws) and for valid (each example once)."""
    t = cfg.train
    rows = _rows(train_ex, weighted_schedule(weights, t.epochs, t.seed), t, pack)
    valid_rows = _rows(valid_ex, list(range(len(valid_ex))), t, pack)
    steps = max(1, len(rows) // (t.batch_size * t.grad_accum))
    return (training_args(cfg, out, steps, wandb), (PackedCollator(train_ex, tokenizer.pad_token_id, t.seq_len), rows),
            (PackedCollator(valid_ex, tokenizer.pad_token_id, t.seq_len), valid_rows))


def _rows(examples: list[dict], schedule: list[int], t, pack: bool) -> list[list[int]]:
    """Rows of example indices, one chunk per pass over the examples."""
    if pack:
        return packed_rows(examples, schedule, t.seq_len, chunk=len(examples), seed=t.seed)
    return grouped_rows(examples, schedule, t.batch_size, chunk=len(examples), seed=t.seed)


class PackedTrainer(Trainer):
    """Trainer that counts real vs computed tokens (padding efficiency) and uses its own eval collator."""

    eval_collator = None
    real_tokens = 0
    computed_tokens = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        real = inputs.pop("real_tokens", None)
        if model.training and real is not None:
            self.real_tokens += int(real)
            self.computed_tokens += inputs["input_ids"].numel()
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def generate(self, tokenizer, conversations, caps, end_ids) -> list[dict]:
        """Greedy replies with the cache on for generation (off again for the packed rows)."""
        from voicetune.greedy import generate

        self.model.config.use_cache = True
        try:
            return generate(self.model, tokenizer, conversations, caps, end_ids)
        finally:
            self.model.config.use_cache = False

    def model_facts(self) -> dict:
        """Trainable parameters, device, base dtype and peak memory (CUDA allocator, else the process's RSS)."""
        import resource
        import sys

        import torch

        model = self.model
        if torch.cuda.is_available():
            peak, of = torch.cuda.max_memory_allocated(), "cuda allocator"
        else:  # ru_maxrss: kilobytes on Linux, bytes on macOS
            peak, of = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024), "process RSS"
        return {"trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "device": str(model.device), "base_dtype": str(model.get_base_model().dtype),
                "peak_memory_gb": round(peak / 2**30, 2), "peak_memory_of": of}

    def save_adapter(self, folder: Path) -> None:
        self.model.save_pretrained(folder)

    def get_eval_dataloader(self, eval_dataset=None):
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator


def last_checkpoint(out: Path) -> str | None:
    """The newest checkpoint of a killed run with the same key, to resume from."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = out / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None
