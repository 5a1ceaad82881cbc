"""The `hf` backend: transformers + peft LoRA on CPU, MPS or CUDA."""

from __future__ import annotations

from pathlib import Path

# SDPA builds a block-diagonal mask from restarting position_ids (max logit difference < 1e-6
# alone vs packed, CPU and GPU), so this backend trains on packed rows.
PACKED_ROWS_ISOLATED = True


def load(cfg, cache, tokenizer=None):
    """The base model (SDPA) wrapped in the `lora` group's adapter: frozen base weights in bf16 when
    training in bf16 (an 8B model: 16 GB, not 32), else fp32; peft keeps the adapter in fp32."""
    import torch

    from voicetune.models import load_model

    dtype = torch.bfloat16 if str(cfg.train.precision) == "bf16" else torch.float32
    return lora_model(load_model(cfg.model, cache, dtype=dtype), cfg.lora)


def lora_model(base, lora_cfg):
    """Wrap the base model in a LoRA adapter from the `lora` config group."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                        target_modules=list(lora_cfg.targets), task_type="CAUSAL_LM")
    return get_peft_model(base, config)


def merge(cfg, cache, adapter: Path, folder: Path) -> None:
    """Fold the adapter into the base weights and save them in `export.dtype`."""
    import torch
    from peft import PeftModel

    from voicetune.models import load_model

    model = PeftModel.from_pretrained(load_model(cfg.model, cache), adapter).merge_and_unload()
    model.to(getattr(torch, cfg.export.dtype)).save_pretrained(folder, safe_serialization=True)
