"""The `mlx` backend: mlx-lm's LoRA layers on Apple Silicon (mlx[cpu] runs them on Linux).

Only the model is mlx-lm's (its LoRALinear via linear_to_lora_layers, its converter, its
generate_step); tokenizer, chat template, labels, draws, cadence, probes and W&B are the shared
trainer's (voicetune.stages.train.mlx_trainer drives the same callbacks). The trained adapter is
saved twice: mlx-lm's own folder (adapter/mlx/, for mlx_lm.load and fuse) and its PEFT
conversion (adapter/, what eval, merge, GGUF and parity read); see backends/mlx_peft.py.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from voicetune.cache import digest, link_tree
from voicetune.errors import UserError

# mlx-lm models build one causal mask per row and take no position_ids, so packed examples would
# attend to each other (and their RoPE positions would not restart): one example per row.
PACKED_ROWS_ISOLATED = False
MLX_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ADAPTER_DIR = "mlx"  # mlx-lm's adapter, inside the run's adapter folder


def available() -> bool:
    """True on Apple Silicon with mlx-lm installed (mlx then trains on the GPU through Metal)."""
    import importlib.util

    return (platform.system() == "Darwin" and platform.machine() == "arm64"
            and importlib.util.find_spec("mlx_lm") is not None)


def precision() -> str:
    """train.precision=auto for mlx: bf16 on a Mac's GPU; fp32 on mlx[cpu] (Linux), which has no fast bf16."""
    return "bf16" if available() else "fp32"


def require() -> None:
    """One line when mlx-lm is missing, before the model loads."""
    import importlib.util

    if importlib.util.find_spec("mlx_lm") is None:
        raise UserError("train.backend=mlx: needs mlx-lm (pip install 'voicetune[mlx]'); or use train.backend=hf")


def base_folder(cfg, cache, tokenizer) -> Path:
    """The base model as an MLX folder in the run's precision, converted once into the cache by mlx_lm.convert."""
    from voicetune.models import model_source

    dtype = MLX_DTYPES[str(cfg.train.precision)]  # resolved before the run: never auto here
    source = model_source(cfg.model, cache)
    folder = cache.models(f"mlx-{cfg.model.name}-{digest([source, dtype])[:16]}")
    if not folder.is_dir():
        _convert(source, tokenizer, folder, dtype)
    return folder


def _convert(source: str, tokenizer, folder: Path, dtype: str) -> None:
    """mlx_lm.convert beside the target, then rename (a killed run leaves nothing trusted).

    The converter also loads a tokenizer; a GGUF's converted weights folder holds none, so a local
    source is staged as hard links plus the project's tokenizer.
    """
    import os
    import shutil
    import uuid

    from mlx_lm import convert

    work = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:6]}")
    staging = work / "hf"
    if Path(source).is_dir():
        link_tree(Path(source), staging)
        tokenizer.save_pretrained(staging)
        source = str(staging)
    try:
        convert(source, mlx_path=str(work / "mlx"), dtype=dtype)
        legacy_rope(work / "mlx" / "config.json")
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / "mlx", folder)
    except OSError:  # another process finished first
        pass
    finally:
        shutil.rmtree(work, ignore_errors=True)


def legacy_rope(config_json: Path) -> None:
    """Spell transformers 5's `rope_parameters` the way mlx-lm 0.32 reads it (`rope_theta`, `rope_scaling`).

    mlx-lm's llama ignores `rope_parameters` and falls back to theta 10,000: SmolLM2 (100,000) then
    runs with the wrong positions (max logit difference 2.1 vs transformers), Llama 3.1 (500,000
    plus llama3 scaling) too.
    """
    config = json.loads(config_json.read_text())
    rope = config.get("rope_parameters")
    if not rope or "rope_theta" in config:
        return
    config["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    config_json.write_text(json.dumps(config, indent=4) + "\n")


def lora_parameters(lora_cfg, model) -> dict:
    """mlx-lm's lora_parameters from the `lora` group: PEFT's alpha/r becomes mlx-lm's `scale`."""
    import mlx.nn as nn
    from mlx_lm.tuner.lora import LoRALinear

    targets, linear = set(lora_cfg.targets), (nn.Linear, nn.QuantizedLinear, LoRALinear)
    keys = sorted(k for k, m in model.layers[0].named_modules()
                  if k.rsplit(".", 1)[-1] in targets and isinstance(m, linear))
    if not keys:
        raise UserError(f"lora.targets={list(lora_cfg.targets)}: no such linear layer in the model's blocks")
    return {"rank": lora_cfg.r, "scale": lora_cfg.alpha / lora_cfg.r, "dropout": lora_cfg.dropout, "keys": keys}


def load(cfg, cache, tokenizer):
    """The MLX base model, frozen, with mlx-lm's LoRA layers on every block's target projections."""
    import mlx.core as mx
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load_model

    require()
    model, _ = load_model(base_folder(cfg, cache, tokenizer))
    model.freeze()
    mx.random.seed(cfg.train.seed)  # the LoRA A init
    linear_to_lora_layers(model, len(model.layers), lora_parameters(cfg.lora, model))
    return model


def save_adapter(model, lora_cfg, folder: Path) -> None:
    """mlx-lm's adapter into folder/mlx/ and its PEFT conversion into folder/."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from voicetune.backends.mlx_peft import mlx_to_peft

    native = folder / ADAPTER_DIR
    native.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(native / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    config = {"fine_tune_type": "lora", "num_layers": len(model.layers), "lora_parameters": lora_parameters(lora_cfg, model)}
    (native / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    mlx_to_peft(native, folder)


def fuse_quantized(cfg, cache, tokenizer, adapter: Path, folder: Path) -> None:
    """The mlx-lm adapter fused into its own MLX base and quantized (export.mlx), with no merged folder
    in between: mlx_lm.fuse's steps, then the converter's cast and quantization, the tokenizer (and
    so the persona's template) from the adapter folder."""
    import mlx.core as mx
    from mlx.utils import tree_map, tree_unflatten
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import load_model, quantize_model, save

    base = base_folder(cfg, cache, tokenizer)  # converted by training: a cache hit
    model, config = load_model(base)
    model = load_adapters(model, str(adapter / ADAPTER_DIR))
    model.update_modules(tree_unflatten([(n, m.fuse()) for n, m in model.named_modules() if hasattr(m, "fuse")]))
    dtype = getattr(mx, cfg.export.mlx.dtype)  # resolved: no auto
    model.update(tree_map(lambda p: p.astype(dtype) if mx.issubdtype(p.dtype, mx.floating) else p, model.parameters()))
    model, config = quantize_model(model, config, cfg.export.mlx.group_size, cfg.export.mlx.q_bits)
    save(folder, base, model, load_tokenizer(adapter), config, donate_model=True)


def merge(cfg, cache, adapter: Path, folder: Path) -> None:
    """Merge the PEFT conversion the way the `hf` backend does (fp32 base, transformers)."""
    from voicetune.backends import hf

    hf.merge(cfg, cache, adapter, folder)


def generate(model, tokenizer, conversations: list[list[dict]], caps: list[int], end_ids: list[int]) -> list[dict]:
    """Greedy replies with mlx-lm's generate_step: the prompt ids greedy.generate would feed, one at a time."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    from voicetune.greedy import _reply

    model.eval()
    out = []
    for conv, cap in zip(conversations, caps):
        messages = conv[:-1] if conv[-1]["role"] == "assistant" else conv
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens = []
        for token, _ in generate_step(mx.array(ids), model, max_tokens=cap):  # no sampler: argmax
            tokens.append(int(token))
            if tokens[-1] in end_ids:
                break
        out.append(_reply(tokenizer, tokens, cap, end_ids))
    model.train()
    return out
