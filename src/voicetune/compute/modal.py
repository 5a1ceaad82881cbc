"""`compute=modal`: run a stage the pipeline placed there (compute.stages) on a Modal GPU.

The pipeline keeps the cheap, cached stages here and hands this runner the stage's declaration,
its config view and its input folders. The call's argument carries the input files, the view
(YAML, secrets removed) and the stage function's import path. In the container, `execute()`
writes them onto the `runs` volume under a key made from that payload and calls the function;
its output folder lives on the volume, so a retried or preempted call resumes from the last
checkpoint. Outputs come back file by file from the volume listing
(`modal volume get` flattens nested folders). `modal` is imported only inside functions: this
module imports with no token and no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Callable

from voicetune.cache import COMPLETE, digest
from voicetune.errors import UserError

APP_NAME = "voicetune"
# Where each compute.volumes entry is mounted in the container.
MOUNTS = {"hf_cache": "/cache/huggingface", "runs": "/runs"}
# Sent as a Modal secret when set in the local environment: names here, values never in a file.
ENV_SECRETS = ("WANDB_API_KEY", "HF_TOKEN")
# USD per GPU-hour from modal.com/pricing (2025, GPU only; CPU and memory add ~$0.05-0.20/h).
# The seed's 18 min on an A100-40GB: 0.3 h x $2.10 = $0.63 of GPU time.
GPU_PRICE_PER_HOUR = {"T4": 0.59, "L4": 0.80, "A10G": 1.10, "L40S": 1.95, "A100-40GB": 2.10,
                      "A100-80GB": 2.50, "H100": 3.95, "H200": 4.54, "B200": 6.25}
# Export format -> the `export` extra's packages it needs where it runs.
FORMAT_TOOLS = {"gguf": ("llama-cpp-python",), "mlx_q4": ("mlx-lm", "mlx")}
LINUX_EXPORT = {"sys_platform": "linux", "platform_system": "Linux", "extra": "export"}
PORTABLE_LLAMA_CPP = "-DGGML_NATIVE=OFF"
NO_TOKEN = "compute=modal: no Modal token; run `modal setup` (or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)"


def run_remote(spec, ctx, compute, tracking: dict) -> dict:
    """Run the stage on a Modal GPU; its outputs land in `ctx.out`, its metrics gain a `remote` record."""
    from voicetune.tracking import replay_history

    require_token()
    body = build_payload(spec, ctx, compute, tracking)
    result, remote = launch(compute, body, export_packages(ctx.cfg) if spec.name == "export" else [])
    copy_back(runs_volume(compute), f"{body['key']}/out", ctx.out)
    tracker = ctx.tracker
    if tracker is not None:
        if not result["tracked"] and (ctx.out / "history.json").is_file():
            replay_history(tracker, json.loads((ctx.out / "history.json").read_text()))
        tracker.summary({f"remote/{k}": v for k, v in remote.items()})
    return {**result["metrics"], "remote": remote}


# ---------------------------------------------------------------- local side


def has_token() -> bool:
    """A Modal token in MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or the active ~/.modal.toml profile."""
    from modal.config import config

    return bool(config.get("token_id") and config.get("token_secret"))


def require_token() -> None:
    """Fail in one line before anything is uploaded (a bad token would hang ~60 s instead)."""
    if not has_token():
        raise UserError(NO_TOKEN)


def build_payload(spec, ctx, compute, tracking: dict) -> dict:
    """The call's argument: the input files' bytes, the stage's view as YAML without secrets,
    the function to call, how to track it (voicetune.tracking.remote_settings) and the volume key."""
    from omegaconf import OmegaConf

    from voicetune.tracking import safe_config

    files = {f"{name}/{p.relative_to(folder).as_posix()}": p.read_bytes()
             for name, folder in ctx.inputs.items()
             for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name != COMPLETE}
    config = OmegaConf.to_yaml(OmegaConf.create(safe_config(ctx.cfg)))
    # Same stage, config and inputs -> same folder on the volume: a rerun resumes there.
    key = digest({"stage": spec.name, "config": config,
                  "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}})
    return {"stage": spec.name, "function": spec.function, "tracked": spec.tracked,
            "key": f"{spec.name}-{key[:16]}", "config": config, "files": files,
            "tracking": tracking, "runs_volume": compute.volumes.runs}


def launch(compute, body: dict, tools: list[str]) -> tuple[dict, dict]:
    """Spawn the call on an ephemeral app (its image with `tools` added), wait for it; its result
    and the manifest's remote record."""
    import modal

    app, fn = build_app(compute, tools)
    with modal.enable_output(), app.run():
        started = time.perf_counter()
        call = fn.spawn(body)
        app_id = app.app_id
        print(f"modal: app {app_id}, call {call.object_id} on {compute.gpu}", file=sys.stderr)
        result = call.get()
        # Spawn to result: queue, container start, training and any retries (billed time, roughly).
        seconds = time.perf_counter() - started
    return result, remote_record(app_id, call.object_id, compute.gpu, seconds)


def remote_record(app_id: str, call_id: str, gpu: str, seconds: float) -> dict:
    """What run.json keeps about a remote call, with its GPU cost estimate."""
    minutes = seconds / 60
    return {"app_id": app_id, "call_id": call_id, "gpu": gpu, "minutes": round(minutes, 2),
            "cost_usd_estimate": round(minutes / 60 * GPU_PRICE_PER_HOUR[gpu], 2)}


def copy_back(volume, prefix: str, out: Path) -> list[str]:
    """Download each file under `prefix` on the volume into `out`, keeping nested folders."""
    from modal.types import FileEntryType
    from tqdm import tqdm

    entries = [e for e in volume.listdir(prefix, recursive=True) if e.type == FileEntryType.FILE]
    copied = []
    for entry in tqdm(entries, desc="modal: outputs", unit="file"):
        rel = PurePosixPath(entry.path.lstrip("/")).relative_to(prefix)
        if rel.parts[0] == "checkpoints":
            continue  # resumable state of an unfinished run, not an output
        dest = out.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as f:
            for chunk in volume.read_file(entry.path):
                f.write(chunk)
        copied.append(rel.as_posix())
    return copied


# ---------------------------------------------------------------- the app


def build_app(compute, tools: list[str] = ()):
    """The Modal app and its one function, configured from the `compute` group."""
    import modal

    app = modal.App(APP_NAME)
    return app, app.function(**function_options(compute, tools))(container_main)


def function_options(compute, tools: list[str] = ()) -> dict:
    """`@app.function` arguments: GPU, timeout and retries from config, volumes, secrets, image."""
    return {"image": build_image(tools), "gpu": compute.gpu, "timeout": compute.timeout,
            "retries": compute.retries, "memory": compute.memory_mb, "volumes": volumes(compute), "secrets": secrets(compute)}


def build_image(tools: list[str] = ()):
    """Debian + the pinned CUDA stack + voicetune's other dependencies (+ the export `tools`) + the
    local voicetune source. Each is its own layer, so a new export format reuses the torch layer."""
    import modal

    image = modal.Image.debian_slim(python_version="3.11").uv_pip_install(*image_packages())
    if any(requirement_name(t) == "llama-cpp-python" for t in tools):
        # llama-cpp-python builds from source: a compiler, and a build for any x86-64 CPU, not the builder's.
        image = image.apt_install("build-essential", "cmake").env({"CMAKE_ARGS": PORTABLE_LLAMA_CPP})
    if tools:
        image = image.uv_pip_install(*tools)
    return image.env({"HF_HOME": MOUNTS["hf_cache"]}).add_local_python_source("voicetune")


def export_packages(view) -> list[str]:
    """The `export` extra's packages the stage's formats need in a Linux container: llama.cpp for
    GGUF (convert, quantize, parity), mlx-lm with mlx[cpu] for MLX; LM Studio takes its source's."""
    from packaging.requirements import Requirement

    formats = {f for f, on in view.export.formats.items() if on}
    if "lmstudio" in formats:
        formats.add("mlx_q4" if str(view.export.lmstudio.source) == "mlx" else "gguf")
    wanted = {name for f in formats for name in FORMAT_TOOLS.get(f, ())}
    found = []
    for text in extra_requirements("export"):
        req = Requirement(text)
        if requirement_name(text) in wanted and (req.marker is None or req.marker.evaluate(LINUX_EXPORT)):
            req.marker = None
            found.append(str(req))
    return found


def extra_requirements(extra: str) -> list[str]:
    """An optional-dependency list of voicetune: from pyproject.toml in a source tree, else the metadata."""
    from importlib.metadata import requires

    from voicetune.backends.unsloth import source_project

    project = source_project()
    if project is not None:
        return list(project.get("optional-dependencies", {}).get(extra, []))
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in requires("voicetune") or []]
    return [str(r) for r in reqs if r.marker is not None and r.marker.evaluate({**LINUX_EXPORT, "extra": extra})
            and not r.marker.evaluate({**LINUX_EXPORT, "extra": ""})]


def image_packages() -> list[str]:
    """The CUDA lock as written (one place: pyproject's `cuda` extra), then voicetune's own deps it leaves open."""
    pins = cuda_requirements()
    pinned = {requirement_name(p) for p in pins}
    return pins + [r for r in base_requirements() if requirement_name(r) not in pinned]


def cuda_requirements() -> list[str]:
    """The pinned CUDA training stack, as the unsloth backend reads it."""
    from voicetune.backends.unsloth import cuda_requirements as pins

    return pins()


def base_requirements() -> list[str]:
    """voicetune's own dependencies: pyproject.toml of a source tree, else the installed metadata."""
    from importlib.metadata import requires

    from voicetune.backends.unsloth import source_project

    project = source_project()
    if project is not None:
        return list(project["dependencies"])
    return [r for r in requires("voicetune") or [] if "extra ==" not in r]


def requirement_name(requirement: str) -> str:
    """`unsloth_zoo==2026.10.9` -> `unsloth-zoo` (PEP 503 normalised)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1)).lower()


def volumes(compute) -> dict:
    """Mount path -> Modal Volume, for the HF cache and the runs volume (created on first use)."""
    import modal

    return {MOUNTS[role]: modal.Volume.from_name(name, create_if_missing=True)
            for role, name in compute.volumes.items()}


def runs_volume(compute):
    """The volume holding each remote run's inputs, checkpoints and outputs."""
    import modal

    return modal.Volume.from_name(compute.volumes.runs, create_if_missing=True)


def secrets(compute) -> list:
    """Named Modal secrets from config, plus WANDB_API_KEY / HF_TOKEN from the local env when set."""
    import modal

    found = [modal.Secret.from_name(name) for name in compute.secrets]
    local = [name for name in ENV_SECRETS if os.environ.get(name)]
    if local:
        found.append(modal.Secret.from_local_environ(local))
    return found


# ---------------------------------------------------------------- container side


def container_main(body: dict) -> dict:
    """The Modal function: run the stage on the mounted runs volume, then commit the volume."""
    import modal

    volume = modal.Volume.from_name(body["runs_volume"])
    return execute(body, Path(MOUNTS["runs"]), commit=volume.commit)


def execute(body: dict, runs_root: Path, function: Callable | None = None,
            commit: Callable[[], None] = lambda: None) -> dict:
    """Write the inputs under the run's key, run the stage into <key>/out, record its result."""
    from voicetune.cache import Cache
    from voicetune.contract import Context, Services

    work = runs_root / body["key"]
    done = work / "result.json"
    if done.is_file():  # the same call again after success: its outputs are already there
        return json.loads(done.read_text())
    seen = container_view(body["config"])
    inputs = write_inputs(body["files"], work / "inputs")
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)  # kept across attempts: the checkpoints to resume from
    tracker = start_tracker(body, work)
    try:
        ctx = Context(seen, inputs, out, Services(Cache(runs_root / "cache")), tracker)
        metrics = (function or stage_function(body["function"]))(ctx)
    finally:
        if tracker is not None:
            tracker.finish()
    result = {"metrics": metrics or {}, "tracked": tracker is not None}
    done.write_text(json.dumps(result, default=str))
    commit()  # Modal also commits in the background; this makes the outputs visible before return
    return result


def container_view(text: str):
    """The stage's view as shipped: read-only and struct-mode, as the pipeline built it."""
    from voicetune.contract import frozen

    return frozen(text)


def write_inputs(files: dict[str, bytes], root: Path) -> dict[str, Path]:
    """Recreate the input folders from the payload; stage name -> folder."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {name: root / name for name in sorted({rel.split("/", 1)[0] for rel in files})}


def start_tracker(body: dict, work: Path):
    """Live W&B logging from the GPU for a tracked stage when tracking is online (key from a secret)."""
    if body["tracking"]["mode"] != "online" or not body["tracked"]:
        return None  # offline runs are replayed into the local W&B run after the call
    from voicetune import tracking

    return tracking.start_remote(body["tracking"], work / "wandb", job_type=body["stage"])


def stage_function(path: str) -> Callable:
    """The stage's `run(ctx)` from its declared "module:function" path."""
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
