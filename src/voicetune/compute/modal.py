"""`compute=modal`: run the train stage (or another GPU stage) on a Modal GPU.

The local machine keeps the cheap, cached stages and sends the stage's input files and the
config (YAML, secrets removed) as the call's argument. In the container, `execute()` writes
them onto the `runs` volume under a key made from that payload and runs the same stage with
compute.target=local; its output folder lives on the volume, so a retried or preempted call
resumes from the last checkpoint. Outputs come back file by file from the volume listing
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
NO_TOKEN = "compute=modal: no Modal token; run `modal setup` (or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)"


def run_remote(cfg, inputs: dict[str, Path], out: Path, tracker=None, stage: str = "train") -> dict:
    """Run `stage` on a Modal GPU; its outputs land in `out`, its metrics gain a `remote` record."""
    require_token()
    body = build_payload(cfg, inputs, stage)
    result, remote = launch(cfg.compute, body)
    copy_back(runs_volume(cfg.compute), f"{body['key']}/out", out)
    if tracker is not None:
        if not result["tracked"] and (out / "history.json").is_file():
            replay_history(tracker, json.loads((out / "history.json").read_text()))
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


def build_payload(cfg, inputs: dict[str, Path], stage: str) -> dict:
    """The call's argument: the input files' bytes, the config as YAML without secrets, the volume key."""
    from omegaconf import OmegaConf

    from voicetune.tracking import redact, run_name, safe_config

    files = {f"{name}/{p.relative_to(folder).as_posix()}": p.read_bytes()
             for name, folder in inputs.items()
             for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name != COMPLETE}
    config = OmegaConf.to_yaml(OmegaConf.create(safe_config(cfg)))
    # Same stage, config and inputs -> same folder on the volume: a rerun resumes there.
    key = digest({"stage": stage, "config": config,
                  "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}})
    return {"stage": stage, "key": f"{stage}-{key[:16]}", "config": config, "files": files,
            "run_name": redact(run_name(cfg)), "runs_volume": cfg.compute.volumes.runs}


def launch(compute, body: dict) -> tuple[dict, dict]:
    """Spawn the call on an ephemeral app, wait for it; its result and the manifest's remote record."""
    import modal

    app, fn = build_app(compute)
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


def replay_history(tracker, history: dict) -> None:
    """Log a remote run's losses and probe generations to the local W&B run, in step order."""
    from voicetune.train.callbacks import GENERATION_COLUMNS

    rows = [(r["step"], {"train/loss": r["loss"], "train/learning_rate": r["learning_rate"]})
            for r in history["train"]]
    rows += [(r["step"], {"eval/loss": r["eval_loss"]}) for r in history["eval"]]
    for step, metrics in sorted(rows, key=lambda r: r[0]):
        tracker.log({**metrics, "train/global_step": step})
    for step in sorted({g["step"] for g in history["generations"]}):
        tracker.table("eval/generations", GENERATION_COLUMNS,
                      [[g[c] for c in GENERATION_COLUMNS] for g in history["generations"] if g["step"] == step])
    tracker.summary({f"train/{k}": v for k, v in history["summary"].items()})


# ---------------------------------------------------------------- the app


def build_app(compute):
    """The Modal app and its one function, configured from the `compute` group."""
    import modal

    app = modal.App(APP_NAME)
    return app, app.function(**function_options(compute))(container_main)


def function_options(compute) -> dict:
    """`@app.function` arguments: GPU, timeout and retries from config, volumes, secrets, image."""
    return {"image": build_image(), "gpu": compute.gpu, "timeout": compute.timeout,
            "retries": compute.retries, "volumes": volumes(compute), "secrets": secrets(compute)}


def build_image():
    """Debian + the pinned CUDA stack + voicetune's other dependencies + the local voicetune source."""
    import modal

    return (modal.Image.debian_slim(python_version="3.11")
            .uv_pip_install(*image_packages())
            .env({"HF_HOME": MOUNTS["hf_cache"]})
            .add_local_python_source("voicetune"))


def image_packages() -> list[str]:
    """The CUDA pins as written (one place: pyproject's `cuda` extra), then voicetune's own deps they leave open."""
    pins = cuda_requirements()
    pinned = {requirement_name(p) for p in pins}
    return pins + [r for r in base_requirements() if requirement_name(r) not in pinned]


def cuda_requirements() -> list[str]:
    """The pinned CUDA training stack, as the unsloth backend reads it."""
    from voicetune.train.unsloth import cuda_requirements as pins

    return pins()


def base_requirements() -> list[str]:
    """voicetune's own dependencies: pyproject.toml of a source tree, else the installed metadata."""
    from importlib.metadata import requires

    from voicetune.train.unsloth import source_project

    project = source_project()
    if project is not None:
        return list(project["dependencies"])
    return [r for r in requires("voicetune") or [] if "extra ==" not in r]


def requirement_name(requirement: str) -> str:
    """`unsloth[cu128-torch270]==2025.7.8` -> `unsloth` (PEP 503 normalised)."""
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


def execute(body: dict, runs_root: Path, runner: Callable | None = None,
            commit: Callable[[], None] = lambda: None) -> dict:
    """Write the inputs under the run's key, run the stage into <key>/out, record its result."""
    work = runs_root / body["key"]
    done = work / "result.json"
    if done.is_file():  # the same call again after success: its outputs are already there
        return json.loads(done.read_text())
    cfg = container_config(body["config"], runs_root)
    inputs = write_inputs(body["files"], work / "inputs")
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)  # kept across attempts: the checkpoints to resume from
    tracker = start_tracker(cfg, work, body)
    try:
        extra = {"tracker": tracker} if tracked(body["stage"]) else {}
        metrics = (runner or stage_runner(body["stage"]))(cfg, inputs, out, **extra)
    finally:
        if tracker is not None:
            tracker.finish()
    result = {"metrics": metrics or {}, "tracked": tracker is not None}
    done.write_text(json.dumps(result, default=str))
    commit()  # Modal also commits in the background; this makes the outputs visible before return
    return result


def container_config(text: str, runs_root: Path):
    """The shipped config, typed by the schema, run here, with the model cache on the volume."""
    from omegaconf import OmegaConf

    from voicetune.config import Config

    cfg = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(text))
    cfg.compute.target = "local"
    cfg.cache_dir = str(runs_root / "cache")
    return cfg


def write_inputs(files: dict[str, bytes], root: Path) -> dict[str, Path]:
    """Recreate the input folders from the payload; stage name -> folder."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {name: root / name for name in sorted({rel.split("/", 1)[0] for rel in files})}


def start_tracker(cfg, work: Path, body: dict):
    """Live W&B logging from the GPU for a tracked stage when tracking is online (key from a secret)."""
    if cfg.tracking.mode != "online" or not tracked(body["stage"]):
        return None  # offline runs are replayed into the local W&B run after the call
    from voicetune import tracking

    return tracking.start(cfg, work / "wandb", job_type=body["stage"], name=body["run_name"])


def tracked(stage: str) -> bool:
    """Whether the stage logs to W&B (takes a tracker)."""
    from voicetune.pipeline import STAGES

    return STAGES[stage].tracked


def stage_runner(stage: str) -> Callable:
    """The stage's `run(cfg, inputs, out, tracker)`."""
    import importlib

    from voicetune.pipeline import STAGES

    return importlib.import_module(STAGES[stage].import_path).run
