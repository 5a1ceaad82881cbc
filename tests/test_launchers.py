"""Sweeps beyond one process: compute=modal's concurrent launcher, SLURM via submitit, the real CLI.

The CLI sweeps run only the extract stage (seconds): never train here.
"""

import json

from hydra import compose, initialize_config_dir

from conftest import CONF, ROOT, run_cli

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def launcher(overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True).hydra.launcher


def sweep(tmp_path, args):
    """Run `python run.py -m ARGS` from the repo with its cache and sweep dir in tmp_path; the manifests."""
    proc = run_cli(["-m", *args, "stages=[extract]", f"hydra.sweep.dir={tmp_path}/sweep"], cwd=ROOT,
                   env={"VOICETUNE_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").rglob("run.json"))]


def test_compute_modal_runs_sweep_members_at_once():
    modal = launcher(["compute=modal"])
    assert modal._target_ == JOBLIB and modal.n_jobs == 8  # not joblib's -1 = one per local core
    assert launcher(["compute=local"])._target_.endswith("BasicLauncher")
    assert launcher(["compute=modal", "hydra/launcher=basic"])._target_.endswith("BasicLauncher")


def test_slurm_launcher_is_a_filled_in_submitit_config():
    slurm = launcher(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30"])
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (slurm.partition, slurm.gpus_per_node, slurm.timeout_min, slurm.nodes) == ("gpu", 1, 30, 1)


def test_submitit_local_sweep_runs_every_member(tmp_path):
    manifests = sweep(tmp_path, ["hydra/launcher=submitit_local", "corpus.max_heading_chars=70,80"])
    assert len(manifests) == 2
    assert all(m["stages"][0]["name"] == "extract" and m["stages"][0]["status"] == "miss" for m in manifests)
    assert len({m["stages"][0]["key"] for m in manifests}) == 2  # each member its own extraction


def test_concurrent_members_compute_a_shared_stage_once(tmp_path):
    # train.epochs is not read by extract: both members need one entry, at the same moment.
    manifests = sweep(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.epochs=1,2"])
    statuses = sorted(m["stages"][0]["status"] for m in manifests)
    assert statuses == ["hit", "miss"] and len({m["stages"][0]["key"] for m in manifests}) == 1
