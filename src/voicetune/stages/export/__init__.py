"""Stage `export`: adapter -> merged model, GGUF + Ollama Modelfile, MLX (LM Studio: lmstudio.py).

Each format is cached on its own, keyed by the adapter's bytes and a view of just the config that
format reads (FORMAT_READS, enforced like a stage's own view), so adding `mlx_q4` to a run that
already exported GGUF builds only the MLX folder. GGUF and MLX convert from the merged folder,
which is built first whenever either is asked for; an adapter trained by the `mlx` backend goes
to MLX without it, fused into its own MLX base (backends.mlx.fuse_quantized). After the
artifacts, `parity` loads each one back with its own runtime and checks template and stopping;
one that fails is kept and marked. Installing into LM Studio is the
stage's delivery: it runs on this machine (lmstudio.deliver) wherever the export itself ran.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from voicetune.cache import digest, file_digest, link_tree
from voicetune.contract import view, view_digest
from voicetune.errors import UserError

# Bump when an artifact's layout or conversion changes, so old cache entries are not trusted.
EXPORT_VERSION = 5
# What each format's bytes depend on: its cache key is the hash of exactly this view.
FORMAT_READS = {
    "merged": ("model", "export.dtype", "corpus.persona", "train.backend", "train.seq_len"),
    "gguf": ("model.end_tokens", "export.gguf", "export.name", "corpus.persona"),
    "mlx_q4": ("export.mlx", "model", "train.backend", "train.precision"),
}


def wanted(cfg) -> list[str]:
    """Formats in build order (merged first when a later one converts from it; lmstudio, the
    delivery, last)."""
    asked = [name for name, on in cfg.export.formats.items() if on]
    if "lmstudio" in asked and lmstudio_source(cfg) not in asked:
        asked.append(lmstudio_source(cfg))
    if any(from_merged(cfg, name) for name in asked) and "merged" not in asked:
        asked.append("merged")
    return [name for name in (*FORMAT_READS, "lmstudio") if name in asked]


def from_merged(cfg, fmt: str) -> bool:
    """Whether a format converts from the merged folder (GGUF always; MLX unless mlx trained the adapter)."""
    return fmt == "gguf" or (fmt == "mlx_q4" and cfg.train.backend != "mlx")


def lmstudio_source(cfg) -> str:
    """The format LM Studio installs from (export.lmstudio.source, resolved before the run)."""
    return {"mlx": "mlx_q4", "gguf": "gguf"}[cfg.export.lmstudio.source]


def check(cfg) -> None:
    """One line per missing optional package, before any work is done."""
    import importlib.util

    formats = wanted(cfg)
    if "mlx_q4" in formats and importlib.util.find_spec("mlx_lm") is None:
        raise UserError("export format mlx_q4: needs mlx-lm and mlx (pip install 'voicetune[export]'); "
                        "or leave it out: export=[merged,gguf]")
    if "gguf" in formats and cfg.export.gguf.quantize:
        from voicetune.stages.export.gguf import require_llama_cpp

        require_llama_cpp(f"export.gguf.quantize={cfg.export.gguf.quantize}")


def run(ctx) -> dict:
    """Build every requested artifact through its own cache entry; check parity; write the index."""
    from voicetune.stages.export import parity

    cfg, inputs, out = ctx.cfg, ctx.inputs, ctx.out
    adapter = inputs["train"] / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"export: {inputs['train']} holds no trained adapter; run the train stage first")
    check(cfg)
    built, keys = {}, {"adapter": adapter_digest(adapter)}
    # The merged folder a conversion starts from stays in the cache unless asked for: on a remote
    # GPU the output folder is what comes back, and an 8B merged model is 16 GB.
    asked_merged = any(name == "merged" and on for name, on in cfg.export.formats.items())
    for fmt in [f for f in wanted(cfg) if f in FORMAT_READS]:
        built[fmt] = _build(cfg, fmt, adapter, ctx, keys, built)
        if fmt != "merged" or asked_merged:
            link_tree(Path(built[fmt]["cache"]), out / fmt)  # the run's export/<format>/ holds the files
            write_folder_files(cfg, fmt, out / fmt, inputs)
    shipped = {f: out / f for f in built if (out / f).is_dir()}
    (out / "artifacts.json").write_text(json.dumps(built, indent=2))
    table = parity.check(cfg, ctx.tokenizer(), inputs, adapter, shipped, out, ctx.cache)
    from voicetune.models import inference_placement

    device, dtype = inference_placement()  # where parity's transformers runtimes ran
    # A failed artifact stays (the run finishes with the ones that pass); `failed` is the line the
    # run's summary prints for it, like a rejected pair is kept with its reason.
    return {"formats": list(built), "parity": table["summary"], "failed": parity.failed_lines(table["summary"]),
            "parity_placement": {"device": device, "dtype": str(dtype)},
            "sizes_mb": {f: b.get("size_mb") for f, b in built.items()}}


def adapter_digest(adapter: Path) -> str:
    """Content key of the adapter: its weights and its config."""
    return digest([file_digest(adapter / "adapter_model.safetensors"), file_digest(adapter / "adapter_config.json")])


def _build(cfg, fmt: str, adapter: Path, ctx, keys: dict, built: dict) -> dict:
    """One format through the cache: a hit costs nothing, a miss builds into a temp dir."""
    cache, seen = ctx.cache, view(cfg, FORMAT_READS[fmt])
    upstream = keys["merged"] if from_merged(cfg, fmt) else keys["adapter"]
    key = digest({"format": fmt, "version": EXPORT_VERSION, "from": upstream, "config": view_digest(seen)})[:16]
    keys[fmt] = key
    started, hit = time.perf_counter(), cache.get(f"export-{fmt}", key)
    cached = hit is not None
    if not cached:
        with cache.put(f"export-{fmt}", key) as tmp:
            _convert(seen, fmt, adapter, built, tmp, ctx)
        hit = cache.get(f"export-{fmt}", key)
    size = sum(p.stat().st_size for p in hit.rglob("*") if p.is_file())
    return {"folder": fmt, "from": "merged" if from_merged(cfg, fmt) else "adapter", "cache": str(hit), "key": key, "cached": cached,
            "seconds": round(time.perf_counter() - started, 2), "size_mb": round(size / 2**20, 1)}


def _convert(seen, fmt: str, adapter: Path, built: dict, tmp: Path, ctx) -> None:
    if fmt == "merged":
        from voicetune.stages.export.merged import build_merged

        # The tokenizer follows model.*, which the merged view holds: the same one training used.
        build_merged(seen, adapter, tmp, ctx.cache, ctx.tokenizer())
    elif fmt == "gguf":
        from voicetune.stages.export.gguf import build_gguf

        build_gguf(seen, Path(built["merged"]["cache"]), tmp, ctx.cache)
    elif fmt == "mlx_q4" and seen.train.backend == "mlx":
        from voicetune.backends.mlx import fuse_quantized

        fuse_quantized(seen, ctx.cache, ctx.tokenizer(), adapter, tmp)
    elif fmt == "mlx_q4":
        from voicetune.stages.export.mlx import build_mlx

        build_mlx(seen, Path(built["merged"]["cache"]), tmp)


def write_folder_files(cfg, fmt: str, folder: Path, inputs: dict) -> None:
    """What makes an artifact folder self-contained: persona, the config that made it, model card."""
    from voicetune.stages.export.model_card import model_card

    (folder / "persona.txt").write_text(cfg.corpus.persona + "\n")
    (folder / "voicetune.yaml").write_text(OmegaConf.to_yaml(cfg))  # the export stage's view
    (folder / "README.md").write_text(model_card(cfg, fmt, folder, inputs.get("dataset"), inputs.get("eval")))
