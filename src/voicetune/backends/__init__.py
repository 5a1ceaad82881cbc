"""Model backends: each builds the LoRA model for training (`load`) and merges an adapter
(`merge`); data, cadence and callbacks are shared (the trainer contract: stages/train/trainer.py). `train.backend=auto` is resolved once,
before any stage runs, by `resolve`."""

from __future__ import annotations

from voicetune.errors import UserError

BUILT = ("hf", "unsloth", "mlx")


def resolve(choice: str, remote: bool) -> str:
    """`auto` -> unsloth when CUDA and unsloth are here (or the stage runs on a remote GPU), mlx on
    Apple Silicon with mlx-lm installed, else hf."""
    from voicetune.backends import mlx, unsloth

    if choice == "mlx" and remote:
        raise UserError("train.backend=mlx: trains on this Mac, not on compute.target; use train.backend=auto")
    if choice == "mlx":
        mlx.require()
    if choice == "auto":
        if remote or unsloth.available():
            return "unsloth"
        return "mlx" if mlx.available() else "hf"
    if choice == "unsloth" and not remote and not unsloth.available():
        raise UserError("train.backend=unsloth: needs a CUDA GPU and `pip install 'voicetune[cuda]'`; "
                        "use train.backend=hf or compute=modal")
    return choice


def module(name: str):
    """The backend's module: `load(cfg, cache, tokenizer)`, `merge(cfg, cache, adapter, folder)`,
    PACKED_ROWS_ISOLATED."""
    if name == "unsloth":
        import unsloth  # noqa: F401  (patches transformers and peft on import: before they are used)

        from voicetune.backends import unsloth as backend
    elif name == "hf":
        from voicetune.backends import hf as backend
    elif name == "mlx":
        from voicetune.backends import mlx as backend
    else:
        raise ValueError(f"backend {name!r} is not resolved: one of {BUILT}")
    return backend
