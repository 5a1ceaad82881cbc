"""Shared fixtures: the real composed config, pointed at a temp cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from voicetune.config import register_configs, register_resolvers

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

register_configs()
register_resolvers()


def make_cfg(overrides: list[str] | None = None, cache_dir: Path | None = None):
    """Compose the project's real config with overrides (what run.py would run)."""
    extra = [f"cache_dir={cache_dir}"] if cache_dir else []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=(overrides or []) + extra)


@pytest.fixture
def cfg_factory(tmp_path):
    """cfg_factory(['data=sentence']) -> a composed config whose cache lives in tmp_path."""
    return lambda overrides=None: make_cfg(overrides, tmp_path / "cache")


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600):
    """Run `python run.py ARGS` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# The end-to-end run shared by test_train_e2e and test_export_e2e: 2 training steps, then every
# export format, LM Studio into the temp dir, one parity probe per runtime.
# eval=default: the 4-probe panel (2 paragraphs, a section, an abstract) that the tests check at
# every training eval; the default run's eval=quick keeps only the paragraphs.
E2E = ["eval=default", "train.max_steps=2", "train.eval_steps=2", "train.save_steps=2", "eval.loss_records=4",
       "train.batch_size=2", "train.grad_accum=1", "eval.samples_per_shape=1"]
# The stop gate at 0: a 2-step model may not stop yet, and LM Studio installs only what passed parity
# (the gate itself: test_parity_gate, the refused install: test_export).
EXPORT = ["export=[merged,gguf,mlx_q4,lmstudio]", "export.gguf.quantize=Q4_K_M", "export.parity_probes=1",
          "export.parity_min_stop_rate=0", "export.name=e2e-voice"]


@pytest.fixture(scope="session")
def e2e_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e-cache")


@pytest.fixture(scope="session")
def e2e_run(e2e_cache, tmp_path_factory):
    from voicetune.pipeline import run

    run_dir = tmp_path_factory.mktemp("run")
    lms = tmp_path_factory.mktemp("lmstudio") / "models"
    manifest = run(make_cfg(E2E + EXPORT + [f"export.lmstudio.models_dir={lms}", "stages=[export]"], e2e_cache), run_dir)
    return run_dir, manifest


def killed_and_rerun(args: list[str], cache: Path, cwd: Path, checkpoint: int) -> dict:
    """`run.py ARGS` killed (SIGKILL) once its checkpoint-N is written, then run again to the end: its
    train/history.json. The subprocess imports this checkout's package, not an installed one."""
    import json
    import signal
    import time

    cmd = [sys.executable, str(ROOT / "run.py"), *args, f"cache_dir={cache}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not list(cache.glob(f"tmp/train-*/checkpoints/checkpoint-{checkpoint}/voicetune_history.json")):
        assert proc.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    (history_file,) = (cwd / "outputs").rglob("train/history.json")
    return json.loads(history_file.read_text())
