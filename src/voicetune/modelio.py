"""Load the model's tokenizer (and later weights) from the hub, a folder, or a GGUF file.

Reading a GGUF with transformers costs ~12 s for the tokenizer alone (it imports torch and
parses the whole file), so the first load saves a plain tokenizer folder into the cache and
later loads take it from there.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from voicetune.cache import Cache, digest
from voicetune.errors import UserError


# Llama 3.1's reserved padding token: never trained on, so padding cannot teach it anything.
PAD_FALLBACK = "<|finetune_right_pad_id|>"


def _gguf_id(model_cfg) -> str:
    """Cache id of a GGUF source: its name, size and mtime (hashing 100 MB each run is waste)."""
    path = Path(model_cfg.name_or_path) / model_cfg.gguf_file
    if not path.is_file():
        raise UserError(f"model.gguf_file={model_cfg.gguf_file!r}: no such file in {model_cfg.name_or_path}")
    stat = path.stat()
    return digest([str(path), stat.st_size, int(stat.st_mtime)])[:16]


def load_tokenizer(model_cfg, cache: Cache):
    """The model's tokenizer with the configured chat template applied."""
    from transformers import AutoTokenizer

    if model_cfg.gguf_file:
        folder = cache.models(f"tokenizer-{model_cfg.name}-{_gguf_id(model_cfg)}")
        if not folder.is_dir():
            tok = AutoTokenizer.from_pretrained(model_cfg.name_or_path, gguf_file=model_cfg.gguf_file)
            _save_atomic(tok, folder)
        tok = AutoTokenizer.from_pretrained(folder)
    else:
        try:
            tok = AutoTokenizer.from_pretrained(model_cfg.name_or_path)
        except OSError as exc:
            raise UserError(f"model.name_or_path={model_cfg.name_or_path!r}: cannot load a tokenizer ({exc})".splitlines()[0])
    if model_cfg.chat_template:
        tok.chat_template = model_cfg.chat_template
    if tok.pad_token is None:  # Llama 3.x ships none; batching, packing and generation need one
        tok.pad_token = PAD_FALLBACK if PAD_FALLBACK in tok.get_vocab() else tok.eos_token
    return tok


def _save_atomic(obj, folder: Path) -> None:
    """save_pretrained into a temp folder, then rename, so a killed run leaves nothing half-written."""
    tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:6]}")
    obj.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def chat_token_counter(tokenizer):
    """A function messages -> token count under the model's chat template."""

    def count(messages: list[dict]) -> int:
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    return count


def model_source(model_cfg, cache: Cache) -> str:
    """A folder or hub id transformers loads directly; a GGUF is converted once into the cache.

    transformers dequantises a GGUF on every load (~25 s for SmolLM2) and refuses to
    save_pretrained it, so the first load rebuilds the model from its config without the
    quantization entry, copies the weights and saves a plain safetensors folder.
    """
    if not model_cfg.gguf_file:
        return model_cfg.name_or_path
    folder = cache.models(f"weights-{model_cfg.name}-{_gguf_id(model_cfg)}")
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
        _save_atomic(plain, folder)
    return str(folder)


def load_model(model_cfg, cache: Cache, dtype=None):
    """The base causal LM (fp32 on CPU unless a dtype is given), SDPA attention."""
    import torch
    from transformers import AutoModelForCausalLM

    source = model_source(model_cfg, cache)
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32,
                                                    attn_implementation="sdpa")
    except OSError as exc:
        raise UserError(f"model.name_or_path={model_cfg.name_or_path!r}: cannot load ({str(exc).splitlines()[0]})")
