"""Model backends: each builds the LoRA model for training (`load`) and merges an adapter
(`merge`); the trainer, data and callbacks are shared. `train.backend=auto` is resolved once,
before any stage runs, by `resolve`."""

from __future__ import annotations

from voicetune.errors import UserError

BUILT = ("hf", "unsloth")


def resolve(choice: str, remote: bool) -> str:
    """`auto` -> unsloth when CUDA and unsloth are here (or the stage runs on a remote GPU), else hf."""
    from voicetune.backends import unsloth

    if choice == "mlx":
        raise UserError("train.backend=mlx: not built yet; use train.backend=hf")
    if choice == "auto":
        return "unsloth" if remote or unsloth.available() else "hf"
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
    else:
        raise ValueError(f"backend {name!r} is not resolved: one of {BUILT}")
    return backend
