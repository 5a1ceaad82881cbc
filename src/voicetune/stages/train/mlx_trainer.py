"""The trainer contract for the `mlx` backend: mlx steps, transformers' cadence and callbacks.

What is mlx here is only the arithmetic: a step (value_and_grad of the masked loss, grad
accumulation, clipping, mlx's AdamW), the eval loss, the checkpoint files and generation. The rows
(weighted draws, length-grouped), the collator, the TrainingArguments, the learning-rate schedule
(transformers' own scheduler, read out step by step), the cadence (transformers'
DefaultFlowCallback decides when to log, evaluate, save and stop) and every callback (history,
probes, W&B) are the ones the Trainer path uses.

Loss: the project's labels (chat.encode: the reply and its end token, prompt masked), not
mlx-lm's mask_prompt, which also trains the template's newline after `<|im_end|>` and, through
`steps <= length` in default_loss, one padding target per row (tests/test_mlx_backend.py).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from voicetune.chat import IGNORE

OPTIMIZER_FILE, ADAPTER_FILE, STATE_FILE = "optimizer.safetensors", "adapters.safetensors", "trainer_state.json"
KEEP_CHECKPOINTS = 2  # the Trainer path's save_total_limit


def make_trainer(cfg, model, tokenizer, train_ex, valid_ex, weights, out: Path, callbacks, pack: bool = False,
                 wandb: bool = False):
    """An MlxTrainer over the same rows, arguments and callbacks as trainer.make_trainer's."""
    from voicetune.stages.train.trainer import shared_inputs

    args, train, valid = shared_inputs(cfg, tokenizer, train_ex, valid_ex, weights, out, pack, wandb)
    return MlxTrainer(cfg, model, tokenizer, args, callbacks, train=train, valid=valid)


def _batches(rows: list[list[int]], size: int) -> list[list[list[int]]]:
    return [rows[i: i + size] for i in range(0, len(rows), size)]


def masked_loss(model, ids, labels):
    """(summed cross-entropy over labelled tokens, their count): next-token targets, IGNORE skipped."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(ids[:, :-1]).astype(mx.float32)
    targets = labels[:, 1:]
    mask = targets != IGNORE
    ce = nn.losses.cross_entropy(logits, mx.where(mask, targets, 0)) * mask
    return ce.sum(), mask.sum()


class MlxTrainer:
    """The stage's trainer contract (see trainer.TrainerContract) over an mlx-lm LoRA model."""

    def __init__(self, cfg, model, tokenizer, args, callbacks, train, valid):
        import mlx.nn as nn
        import mlx.optimizers as optim
        from transformers.integrations import get_reporting_integration_callbacks
        from transformers.trainer_callback import (CallbackHandler, DefaultFlowCallback, ProgressCallback,
                                                   TrainerControl, TrainerState)

        self.cfg, self.model, self.tokenizer, self.args = cfg, model, tokenizer, args
        (self.collator, rows), (self.valid_collator, valid_rows) = train, valid
        self.batches = _batches(rows, args.per_device_train_batch_size)
        self.valid_batches = _batches(valid_rows, args.per_device_eval_batch_size)
        self.max_steps = args.max_steps if args.max_steps > 0 else \
            max(1, math.ceil(len(self.batches) / args.gradient_accumulation_steps))
        self.steps_per_epoch = max(1, len(self.batches) // args.gradient_accumulation_steps)
        self.lrs = _schedule(args, self.max_steps)
        # The Trainer path's optimizer: torch AdamW (bias-corrected, no weight decay), grads clipped at 1.0.
        self.optimizer = optim.AdamW(learning_rate=self.lrs[0], betas=[args.adam_beta1, args.adam_beta2],
                                     eps=args.adam_epsilon, weight_decay=args.weight_decay, bias_correction=True)
        self.loss_and_grad = nn.value_and_grad(model, masked_loss)
        reporters = get_reporting_integration_callbacks(args.report_to)
        progress = [] if args.disable_tqdm else [ProgressCallback]  # the Trainer's step bar
        self.handler = CallbackHandler([DefaultFlowCallback, *reporters, *progress, *callbacks], model, tokenizer,
                                       None, None)
        self.state, self.control = TrainerState(), TrainerControl()
        self.real_tokens = self.computed_tokens = 0

    def train(self, resume_from_checkpoint: str | None = None) -> None:
        """Optimizer steps up to max_steps; log, evaluate, save and stop when DefaultFlowCallback says."""
        args, state = self.args, self.state
        state.max_steps, state.num_train_epochs = self.max_steps, math.ceil(self.max_steps / self.steps_per_epoch)
        state.compute_steps(args, self.max_steps)
        if resume_from_checkpoint:
            self._load(Path(resume_from_checkpoint))
        self.model.train()
        self.control = self.handler.on_train_begin(args, state, self.control)
        while state.global_step < self.max_steps and not self.control.should_training_stop:
            self.control = self.handler.on_step_begin(args, state, self.control)
            loss, grad_norm = self._step(state.global_step)
            state.global_step += 1
            state.epoch = state.global_step / self.steps_per_epoch
            self.control = self.handler.on_step_end(args, state, self.control)
            self._log_evaluate_save(loss, grad_norm)
        self.control = self.handler.on_train_end(args, state, self.control)

    def _log_evaluate_save(self, loss: float, grad_norm: float) -> None:
        """In the Trainer's order: log, then evaluate, then save."""
        if self.control.should_log:
            self.control.should_log = False
            self._log({"loss": loss, "grad_norm": grad_norm, "learning_rate": self.lrs[self.state.global_step - 1]})
        if self.control.should_evaluate:
            self.control.should_evaluate = False
            self.evaluate()
        if self.control.should_save:
            self.control.should_save = False
            self._save()

    def _log(self, logs: dict) -> None:
        logs = {**logs, "epoch": self.state.epoch}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.handler.on_log(self.args, self.state, self.control, logs=logs)

    def _step(self, step: int) -> tuple[float, float]:
        """One optimizer step over grad_accum micro-batches; the loss is the mean over their labelled tokens."""
        import mlx.core as mx
        import mlx.optimizers as optim
        from mlx.utils import tree_map

        accum, grads, total, count = self.args.gradient_accumulation_steps, None, 0.0, 0
        for i in range(accum):
            ids, labels = self._arrays(self.collator, self.batches[(step * accum + i) % len(self.batches)], train=True)
            (ce, n), g = self.loss_and_grad(self.model, ids, labels)
            grads = g if grads is None else tree_map(lambda a, b: a + b, grads, g)
            mx.eval(grads, ce, n)
            total, count = total + ce.item(), count + n.item()
        grads = tree_map(lambda g: g / max(count, 1), grads)
        grads, norm = optim.clip_grad_norm(grads, self.args.max_grad_norm)
        self.optimizer.learning_rate = self.lrs[step]
        self.optimizer.update(self.model, grads)
        mx.eval(self.model.trainable_parameters(), self.optimizer.state)
        return total / max(count, 1), norm.item()

    def _arrays(self, collator, rows, train: bool = False):
        """The shared collator's torch tensors as mlx arrays; training rows count real vs computed tokens."""
        import mlx.core as mx

        batch = collator(rows)
        if train:
            self.real_tokens += int(batch["real_tokens"])
            self.computed_tokens += batch["input_ids"].numel()
        return mx.array(batch["input_ids"].numpy()), mx.array(batch["labels"].numpy())

    def evaluate(self) -> dict:
        """eval_loss as the Trainer computes it: each batch's token mean, averaged over examples; then on_evaluate."""
        self.model.eval()
        losses, sizes = [], []
        for rows in self.valid_batches:
            ce, n = masked_loss(self.model, *self._arrays(self.valid_collator, rows))
            losses.append(ce.item() / max(n.item(), 1))
            sizes.append(len(rows))
        self.model.train()
        metrics = {"eval_loss": sum(l * s for l, s in zip(losses, sizes)) / sum(sizes)}
        self._log(metrics)
        self.control = self.handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
        return metrics

    def generate(self, tokenizer, conversations, caps, end_ids) -> list[dict]:
        from voicetune.backends.mlx import generate

        return generate(self.model, tokenizer, conversations, caps, end_ids)

    def _save(self) -> None:
        """checkpoint-N/: LoRA weights, optimizer state, TrainerState; older ones beyond KEEP_CHECKPOINTS removed."""
        import mlx.core as mx
        from mlx.utils import tree_flatten

        root = Path(self.args.output_dir)
        folder = root / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(folder / ADAPTER_FILE), dict(tree_flatten(self.model.trainable_parameters())))
        mx.save_safetensors(str(folder / OPTIMIZER_FILE), dict(tree_flatten(self.optimizer.state)))
        self.state.save_to_json(str(folder / STATE_FILE))
        self.control = self.handler.on_save(self.args, self.state, self.control)
        done = sorted(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in done[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)

    def _load(self, folder: Path) -> None:
        """Weights, optimizer moments and step of a killed run's checkpoint; later steps draw the same batches."""
        import mlx.core as mx
        from mlx.utils import tree_unflatten

        self.model.load_weights(list(mx.load(str(folder / ADAPTER_FILE)).items()), strict=False)
        self.optimizer.init(self.model.trainable_parameters())
        self.optimizer.state = tree_unflatten(list(mx.load(str(folder / OPTIMIZER_FILE)).items()))
        saved = json.loads((folder / STATE_FILE).read_text())
        self.state.global_step, self.state.epoch = saved["global_step"], saved["epoch"]
        self.state.log_history = saved["log_history"]

    def model_facts(self) -> dict:
        """Trainable parameters, device, base dtype and the allocator's peak, for the run summary."""
        import mlx.core as mx
        from mlx.utils import tree_flatten

        trainable = sum(v.size for _, v in tree_flatten(self.model.trainable_parameters()))
        return {"trainable_params": trainable, "device": str(mx.default_device()),
                "base_dtype": str(tree_flatten(self.model.parameters())[0][1].dtype),
                "peak_memory_gb": round(mx.get_peak_memory() / 2**30, 2), "peak_memory_of": "mlx allocator"}

    def save_adapter(self, folder: Path) -> None:
        from voicetune.backends.mlx import save_adapter

        save_adapter(self.model, self.cfg.lora, folder)


def _schedule(args, steps: int) -> list[float]:
    """The learning rate of each optimizer step, read from transformers' own scheduler for these arguments."""
    import torch
    from transformers import get_scheduler

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=args.learning_rate)
    sched = get_scheduler(args.lr_scheduler_type, opt, num_warmup_steps=args.get_warmup_steps(steps),
                          num_training_steps=steps)
    lrs = []
    for _ in range(steps):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return lrs
