"""MLX export: mlx-lm's own converter quantizes the merged folder (export.mlx: 8 or 4 bits, group 64).

mlx-lm cannot read a PEFT adapter, so it converts the merged folder (an adapter the `mlx` backend
trained is fused into its MLX base instead: backends.mlx.fuse_quantized); the tokenizer files (and so
the chat template with the persona) are copied across by the converter.
"""

from __future__ import annotations

from pathlib import Path


def build_mlx(cfg, merged: Path, folder: Path) -> None:
    """mlx_lm.convert into folder/ (it refuses an existing target, so convert beside, then move)."""
    import shutil

    from mlx_lm import convert

    from voicetune.backends.mlx import legacy_rope

    staging = folder / "mlx"
    convert(str(merged), mlx_path=str(staging), quantize=True, q_bits=cfg.export.mlx.q_bits,
            q_group_size=cfg.export.mlx.group_size, dtype=cfg.export.mlx.dtype)  # resolved: no auto
    legacy_rope(staging / "config.json")  # else mlx-lm runs transformers 5's folder with theta 10,000
    for path in staging.iterdir():
        shutil.move(str(path), folder / path.name)
    staging.rmdir()
