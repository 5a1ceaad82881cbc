"""Base model weights from the hub, a folder, or a GGUF file (converted once into the cache).

transformers dequantises a GGUF on every load (~25 s for SmolLM2) and refuses to save_pretrained
it, so the first load rebuilds the model from its config without the quantization entry, copies
the weights and saves a plain safetensors folder into the cache.
"""

from __future__ import annotations

from pathlib import Path

from voicetune.cache import Cache, digest, save_pretrained_atomic
from voicetune.errors import UserError


def gguf_id(model_cfg) -> str:
    """Cache id of a GGUF source: its name, size and mtime (hashing 100 MB each run is waste)."""
    path = Path(model_cfg.name_or_path) / model_cfg.gguf_file
    if not path.is_file():
        raise UserError(f"model.gguf_file={model_cfg.gguf_file!r}: no such file in {model_cfg.name_or_path}")
    stat = path.stat()
    return digest([str(path), stat.st_size, int(stat.st_mtime)])[:16]


def model_source(model_cfg, cache: Cache) -> str:
    """A folder or hub id transformers loads directly; a GGUF is converted once into the cache."""
    if not model_cfg.gguf_file:
        return model_cfg.name_or_path
    folder = cache.models(f"weights-{model_cfg.name}-{gguf_id(model_cfg)}")
    if not folder.is_dir():
        import torch
        from transformers import AutoModelForCausalLM

        gguf = AutoModelForCausalLM.from_pretrained(model_cfg.name_or_path, gguf_file=model_cfg.gguf_file,
                                                    dtype=torch.float32)
        config = gguf.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf.state_dict())
        save_pretrained_atomic(plain, folder)
    return str(folder)


def inference_placement():
    """(device, dtype) for generation and eval losses on this machine: bf16 on CUDA (fp16 on a card
    without bf16), fp16 on MPS (its bf16 matmuls are emulated), fp32 on CPU (fp16 matmuls there are
    slower than fp32)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if torch.backends.mps.is_available():
        return "mps", torch.float16
    return "cpu", torch.float32


def load_model(model_cfg, cache: Cache, dtype=None, device: str = "cpu"):
    """The base causal LM (fp32 unless a dtype is given) on `device`, SDPA attention."""
    import torch
    from transformers import AutoModelForCausalLM

    source = model_source(model_cfg, cache)
    # Straight onto an accelerator: an 8B model in bf16 is 16 GB that need not pass through RAM.
    placed = {} if device == "cpu" else {"device_map": {"": device}}
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32,
                                                    attn_implementation="sdpa", **placed)
    except OSError as exc:
        raise UserError(f"model.name_or_path={model_cfg.name_or_path!r}: cannot load ({str(exc).splitlines()[0]})")


def load_for_inference(model_cfg, cache: Cache):
    """The base model on this machine's best device and dtype (inference_placement)."""
    device, dtype = inference_placement()
    return load_model(model_cfg, cache, dtype=dtype, device=device)
