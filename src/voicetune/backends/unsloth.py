"""The `unsloth` backend: CUDA 4-bit QLoRA through Unsloth's FastLanguageModel.

Only the model is Unsloth's: tokenizer, chat template, loss masking, sampling, eval, probes
and W&B are the shared trainer's (`voicetune.stages.train.trainer.make_trainer`). The CUDA stack is locked in ONE place,
pyproject's `cuda` extra (exact pins of unsloth 2026.10.9's stack; its header says where they come from);
`cuda_requirements()` reads it from there for the Modal image.
"""

from __future__ import annotations

import re
from pathlib import Path

# The locked Unsloth (2026.10.9) keeps packed examples apart only when told where they end:
# `packed_seq_lengths` in the batch (what its SFT packing/padding-free collators add, #3566 and
# #3672), or one flattened row (batch 1, no attention mask) with restarting position_ids
# (models/llama.py, utils/packing.py get_packed_info_from_kwargs). PackedCollator's [batch, seq]
# rows carry neither, so its fast attention would run one causal mask per row and the examples
# would attend to each other. Until the collator sends packed_seq_lengths (and a GPU test shows
# the losses match), this backend trains one example per row in length-grouped batches.
PACKED_ROWS_ISOLATED = False
EXTRA = "cuda"
PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def available() -> bool:
    """True when a CUDA device is visible and unsloth is installed (not imported: it patches on import)."""
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


def load_kwargs(cfg, model_name: str, tokenizer_name: str) -> dict:
    """FastLanguageModel.from_pretrained arguments: 4-bit base, the run's seq_len, dtype picked by Unsloth."""
    return {"model_name": model_name, "tokenizer_name": tokenizer_name, "max_seq_length": cfg.train.seq_len,
            "load_in_4bit": True, "dtype": None}


def peft_kwargs(cfg) -> dict:
    """FastLanguageModel.get_peft_model arguments from the `lora` group (Unsloth's own checkpointing)."""
    lora = cfg.lora
    return {"r": lora.r, "lora_alpha": lora.alpha, "target_modules": list(lora.targets),
            "lora_dropout": lora.dropout, "use_gradient_checkpointing": "unsloth",
            "random_state": cfg.train.seed}


def load(cfg, cache, tokenizer):
    """The 4-bit base model wrapped in the `lora` group's adapter by Unsloth."""
    from unsloth import FastLanguageModel

    from voicetune.models import model_source

    # Unsloth loads a tokenizer too; pointing it at the project's tokenizer folder keeps a GGUF
    # model loadable (its converted weights folder holds no tokenizer). Its copy is not used:
    # the trainer encodes with the project's tokenizer and chat template.
    tokenizer_name = tokenizer.name_or_path
    model, _ = FastLanguageModel.from_pretrained(**load_kwargs(cfg, model_source(cfg.model, cache), tokenizer_name))
    return FastLanguageModel.get_peft_model(model, **peft_kwargs(cfg))


def save_merged(model, tokenizer, folder: Path) -> None:
    """Merge the adapter into the base and save it in 16 bits (Unsloth dequantizes the 4-bit base)."""
    model.save_pretrained_merged(str(folder), tokenizer, save_method="merged_16bit")


def merge(cfg, cache, adapter: Path, folder: Path) -> None:
    """Load base + adapter the way training did (4-bit) and save the merged 16-bit model."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(adapter), max_seq_length=cfg.train.seq_len,
                                                         load_in_4bit=True, dtype=None)
    save_merged(model, tokenizer, folder)


def cuda_requirements() -> list[str]:
    """The `cuda` extra's requirements: from pyproject.toml in a source tree, else the installed metadata.

    A source tree's pyproject is read first: an editable install's metadata keeps the pins of the
    day it was installed, and the image must get the pin as written now.
    """
    project = source_project()
    if project is not None:
        return list(project["optional-dependencies"][EXTRA])
    return _metadata_requirements()


def source_project() -> dict | None:
    """The [project] table of the voicetune source tree this module runs from, if any."""
    try:
        import tomllib  # Python >= 3.11; on 3.10 the installed metadata is read
    except ModuleNotFoundError:
        return None
    if not PYPROJECT.is_file():
        return None
    project = tomllib.loads(PYPROJECT.read_text()).get("project", {})
    return project if project.get("name") == "voicetune" else None


def _metadata_requirements() -> list[str]:
    """Requirements of the installed voicetune marked `extra == "cuda"`, that marker removed."""
    from importlib.metadata import requires

    marker = re.compile(r"""\s*(;|and)\s*extra\s*==\s*["']%s["']\s*$""" % EXTRA)
    return [marker.sub("", r).strip() for r in requires("voicetune") or [] if marker.search(r)]
