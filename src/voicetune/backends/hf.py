"""The `hf` backend: transformers + peft LoRA on CPU, MPS or CUDA."""

from __future__ import annotations

from pathlib import Path

# SDPA builds a block-diagonal mask from restarting position_ids (max logit difference < 1e-6
# alone vs packed, CPU and GPU), so this backend trains on packed rows.
PACKED_ROWS_ISOLATED = True


def load(cfg, cache, tokenizer=None):
    """The base model (fp32, SDPA) wrapped in the `lora` group's adapter."""
    from voicetune.models import load_model

    return lora_model(load_model(cfg.model, cache), cfg.lora)


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
