"""mlx-lm adapter <-> PEFT LoRA adapter, both ways, for llama-style blocks (HF and MLX name modules alike).

The two compute the same update with transposed factors and different names:
- PEFT:   y = x W^T + (alpha/r)  (x A^T) B^T,  lora_A.weight: [r, in],  lora_B.weight: [out, r],
          key `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`;
- mlx-lm: y = x W^T + scale (x a) b,            lora_a: [in, r],         lora_b: [r, out],
          key `model.layers.3.self_attn.q_proj.lora_a`.
So a = A^T, b = B^T, scale = alpha/r (alpha/sqrt(r) under rsLoRA). An untransposed or swapped
factor of a square projection (q_proj, o_proj) has a valid shape, loads, and computes another
function; tests/test_mlx_backend.py proves each direction with equal logits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from voicetune.errors import UserError

PEFT_PREFIX = "base_model.model."
PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"
MLX_WEIGHTS, MLX_CONFIG = "adapters.safetensors", "adapter_config.json"
MLX_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[ab])$")
PEFT_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")
LAYER = re.compile(r"^model\.layers\.(?P<index>\d+)\.(?P<key>.+)$")


def mlx_to_peft(mlx_dir: Path, peft_dir: Path, base: str | None = None) -> None:
    """An mlx-lm adapter folder -> PEFT's adapter_model.safetensors + adapter_config.json."""
    import mlx.core as mx
    import numpy as np
    from peft import LoraConfig
    from safetensors.numpy import save_file

    conf = json.loads((Path(mlx_dir) / MLX_CONFIG).read_text())
    if conf.get("fine_tune_type", "lora") != "lora":
        raise UserError(f"{mlx_dir}: a {conf['fine_tune_type']} adapter; only LoRA converts to PEFT")
    params = conf["lora_parameters"]
    tensors = {}
    for key, value in mx.load(str(Path(mlx_dir) / MLX_WEIGHTS)).items():
        match = MLX_KEY.match(key)
        if not match:
            raise UserError(f"{mlx_dir}: {key} is not a LoRA factor")
        factor = match["factor"].upper()
        tensors[f"{PEFT_PREFIX}{match['module']}.lora_{factor}.weight"] = np.ascontiguousarray(np.array(value.astype(mx.float32)).T)
    rank = params["rank"]
    targets = sorted({k.rsplit(".", 1)[-1] for k in params["keys"]})
    peft_dir = Path(peft_dir)
    peft_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(peft_dir / PEFT_WEIGHTS), metadata={"format": "pt"})
    alpha = params["scale"] * rank
    LoraConfig(r=rank, lora_alpha=int(alpha) if float(alpha).is_integer() else alpha, lora_dropout=params["dropout"], target_modules=targets,
               task_type="CAUSAL_LM", base_model_name_or_path=base).save_pretrained(str(peft_dir))


def peft_to_mlx(peft_dir: Path, mlx_dir: Path) -> None:
    """A PEFT LoRA adapter folder (e.g. trained on CUDA) -> an mlx-lm adapter folder for mlx_lm.load(adapter_path=)."""
    import mlx.core as mx

    peft_dir = Path(peft_dir)
    conf = json.loads((peft_dir / PEFT_CONFIG).read_text())
    _refuse_unconvertible(peft_dir, conf)
    tensors, keys, layers = {}, set(), set()
    for key, value in mx.load(str(peft_dir / PEFT_WEIGHTS)).items():
        match = PEFT_KEY.match(key.removeprefix(PEFT_PREFIX))
        layer = LAYER.match(match["module"]) if match else None
        if not layer:
            raise UserError(f"{peft_dir}: {key} is not a LoRA factor inside model.layers; it does not convert")
        layers.add(int(layer["index"]))
        keys.add(layer["key"])
        tensors[f"{match['module']}.lora_{match['factor'].lower()}"] = value.T
    if sorted(layers) != list(range(len(layers))):
        raise UserError(f"{peft_dir}: adapts layers {sorted(layers)}; mlx-lm adapts the last N blocks only")
    rank = conf["r"]
    scale = conf["lora_alpha"] / (rank ** 0.5 if conf.get("use_rslora") else rank)
    mlx_dir = Path(mlx_dir)
    mlx_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(mlx_dir / MLX_WEIGHTS), tensors)
    config = {"fine_tune_type": "lora", "num_layers": len(layers),
              "lora_parameters": {"rank": rank, "scale": scale, "dropout": conf.get("lora_dropout", 0.0),
                                  "keys": sorted(keys)}}
    (mlx_dir / MLX_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def _refuse_unconvertible(peft_dir: Path, conf: dict) -> None:
    """One line for what mlx-lm's LoRALinear cannot express."""
    if conf.get("peft_type") != "LORA":
        raise UserError(f"{peft_dir}: a {conf.get('peft_type')} adapter; only LoRA converts to mlx-lm")
    for key in ("use_dora", "lora_bias"):
        if conf.get(key):
            raise UserError(f"{peft_dir}: {key}=true; mlx-lm's LoRALinear has no such term")
    if conf.get("rank_pattern") or conf.get("alpha_pattern"):
        raise UserError(f"{peft_dir}: per-module ranks (rank_pattern/alpha_pattern) do not convert to mlx-lm")
