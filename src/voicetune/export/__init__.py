"""Stage `export`: adapter -> merged model, GGUF + Ollama Modelfile, MLX 4-bit, LM Studio install.

Each format is cached on its own (key: the adapter's bytes + the options that decide it), so
adding `mlx_q4` to a run that already exported GGUF builds only the MLX folder. GGUF and MLX are
converted from the merged folder, which is built first whenever either is asked for. After the
artifacts, `parity` loads each one back with its own runtime and checks template and stopping.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from voicetune.cache import Cache, digest, file_digest
from voicetune.errors import UserError

# Bump when an artifact's layout or conversion changes, so old cache entries are not trusted.
EXPORT_VERSION = 3
# Formats built from the merged folder, and what each needs installed.
NEEDS_MERGED = ("gguf", "mlx_q4", "lmstudio")


def wanted(cfg) -> list[str]:
    """Formats to build, in build order (merged first when a later one converts from it)."""
    asked = [name for name, on in cfg.export.formats.items() if on]
    if any(name in NEEDS_MERGED for name in asked) and "merged" not in asked:
        asked.append("merged")
    if "lmstudio" in asked and lmstudio_source(cfg) not in asked:
        asked.append(lmstudio_source(cfg))
    order = ("merged", "gguf", "mlx_q4", "lmstudio")
    return [name for name in order if name in asked]


def lmstudio_source(cfg) -> str:
    """`auto` -> MLX on macOS (LM Studio's fastest engine there), GGUF elsewhere."""
    import platform

    source = cfg.export.lmstudio.source
    if source == "auto":
        source = "mlx" if platform.system() == "Darwin" else "gguf"
    return {"mlx": "mlx_q4", "gguf": "gguf"}[source]


def check_dependencies(formats: list[str]) -> None:
    """One line per missing optional package, before any work is done."""
    import importlib.util

    missing = {
        "mlx_q4": ("mlx_lm", "mlx-lm and mlx (pip install 'voicetune[export]')"),
    }
    for fmt in formats:
        if fmt in missing and importlib.util.find_spec(missing[fmt][0]) is None:
            raise UserError(f"export format {fmt}: needs {missing[fmt][1]}; or leave it out: export=[merged,gguf]")


def run(cfg, inputs: dict[str, Path], out: Path) -> dict:
    """Build every requested artifact through its own cache entry; check parity; write the index."""
    from voicetune.export import parity

    adapter = inputs["train"] / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"export: {inputs['train']} holds no trained adapter; run the train stage first")
    formats = wanted(cfg)
    check_dependencies(formats)
    if "lmstudio" in formats:
        from voicetune.export.lmstudio import check_target

        check_target(cfg)  # a folder voicetune did not install: refuse before building anything
    if "gguf" in formats and cfg.export.gguf.quantize:
        from voicetune.export.gguf import require_llama_cpp

        require_llama_cpp(f"export.gguf.quantize={cfg.export.gguf.quantize}")
    if cfg.compute.target == "modal":
        return _run_remote(cfg, inputs, out, formats)
    cache, built, keys = Cache(cfg.cache_dir), {}, {"adapter": adapter_digest(adapter)}
    for fmt in formats:
        if fmt == "lmstudio":
            built[fmt] = _install_lmstudio(cfg, out, built)
            continue
        built[fmt] = _build(cfg, fmt, inputs, cache, keys, built)
        link_tree(Path(built[fmt]["cache"]), out / fmt)  # the run's export/<format>/ holds the files
    (out / "artifacts.json").write_text(json.dumps(built, indent=2))
    table = parity.check(cfg, inputs, adapter, {f: out / f for f in built if f != "lmstudio"}, out)
    return {"formats": list(built), "parity": table["summary"],
            "sizes_mb": {f: b.get("size_mb") for f, b in built.items()}}


def _install_lmstudio(cfg, out: Path, built: dict) -> dict:
    from voicetune.export.lmstudio import install

    source = lmstudio_source(cfg)
    return {"installed": str(install(cfg, out / source, built[source]["key"])), "from": source}


def _run_remote(cfg, inputs: dict[str, Path], out: Path, formats: list[str]) -> dict:
    """compute=modal: merge, convert and check on the GPU machine; install into LM Studio here."""
    from voicetune.compute.modal import run_remote

    import copy

    remote = copy.deepcopy(cfg)  # the caller's config keeps lmstudio
    remote.export.formats = {f: True for f in formats if f != "lmstudio"}
    metrics = run_remote(remote, inputs, out, stage="export")
    if "lmstudio" in formats:
        built = json.loads((out / "artifacts.json").read_text())
        built["lmstudio"] = _install_lmstudio(cfg, out, built)
        (out / "artifacts.json").write_text(json.dumps(built, indent=2))
        metrics["formats"] = list(built)
    return metrics


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy across disks) every file of src into dst: an 8B GGUF is not stored twice."""
    import os
    import shutil

    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue  # cache markers are not artifact files
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def adapter_digest(adapter: Path) -> str:
    """Content key of the adapter: its weights and its config."""
    return digest([file_digest(adapter / "adapter_model.safetensors"), file_digest(adapter / "adapter_config.json")])


def format_options(cfg, fmt: str) -> dict:
    """The config keys that decide one format's bytes."""
    export = cfg.export
    options = {"merged": {"dtype": export.dtype, "model": cfg.model},
               "gguf": {"gguf": export.gguf, "name": export.name},
               "mlx_q4": {"mlx": export.mlx}}[fmt]
    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in options.items()}


def _build(cfg, fmt: str, inputs: dict, cache: Cache, keys: dict, built: dict) -> dict:
    """One format through the cache: a hit costs nothing, a miss builds into a temp dir."""
    upstream = keys["merged"] if fmt != "merged" else keys["adapter"]
    key = digest({"format": fmt, "version": EXPORT_VERSION, "from": upstream,
                  "options": format_options(cfg, fmt), "persona": cfg.corpus.persona})[:16]
    keys[fmt] = key
    started, hit = time.perf_counter(), cache.get(f"export-{fmt}", key)
    cached = hit is not None
    if not cached:
        with cache.put(f"export-{fmt}", key) as tmp:
            _convert(cfg, fmt, inputs["train"] / "adapter", built, tmp)
            write_folder_files(cfg, fmt, tmp, inputs)
        hit = cache.get(f"export-{fmt}", key)
    size = sum(p.stat().st_size for p in hit.rglob("*") if p.is_file())
    return {"folder": fmt, "cache": str(hit), "key": key, "cached": cached,
            "seconds": round(time.perf_counter() - started, 2), "size_mb": round(size / 2**20, 1)}


def _convert(cfg, fmt: str, adapter: Path, built: dict, tmp: Path) -> None:
    if fmt == "merged":
        from voicetune.export.merged import build_merged

        build_merged(cfg, adapter, tmp)
    elif fmt == "gguf":
        from voicetune.export.gguf import build_gguf

        build_gguf(cfg, Path(built["merged"]["cache"]), tmp)
    elif fmt == "mlx_q4":
        from voicetune.export.mlx import build_mlx

        build_mlx(cfg, Path(built["merged"]["cache"]), tmp)


def write_folder_files(cfg, fmt: str, folder: Path, inputs: dict) -> None:
    """What makes an artifact folder self-contained: persona, config that made it, model card."""
    from voicetune.export.card import model_card

    (folder / "persona.txt").write_text(cfg.corpus.persona + "\n")
    (folder / "voicetune.yaml").write_text(OmegaConf.to_yaml(
        OmegaConf.masked_copy(cfg, ["model", "lora", "train", "data", "corpus", "export"]), resolve=True))
    (folder / "README.md").write_text(model_card(cfg, fmt, folder, inputs.get("dataset"), inputs.get("eval")))
