"""W&B tracking: one run per pipeline run, offline by default, files inside the run dir.

`start(cfg, run_dir)` returns a Tracker. While it is open `wandb.run` is set, so the HF
Trainer (report_to="wandb") logs into the same run: its WandbCallback reuses an active run
and leaves it open at the end of training, hence `Tracker.finish()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from voicetune.errors import UserError
from voicetune.redaction import redact

# The columns of the generations table logged at every training eval.
GENERATION_COLUMNS = ["probe_id", "shape", "prompt", "output", "reference", "output_words",
                      "reference_words", "length_ratio", "ended"]


class Tracker:
    """Logs metrics, tables, images and files to one wandb run; `finish()` is idempotent."""

    def __init__(self, run: Any = None):
        self._run = run

    @property
    def run(self) -> Any:
        """The underlying wandb run, or None when tracking is disabled or finished."""
        return self._run

    def log(self, metrics: dict, step: int | None = None) -> None:
        """Log scalars (e.g. {"eval/loss": 0.74}) at a step."""
        if self._run is not None:
            # wandb drops a step lower than the run's current one; the HF WandbCallback
            # advances it once per trainer log call, so after training pass step=None.
            self._run.log(dict(metrics), step=step)

    def table(self, key: str, columns: list[str], rows: list[list], step: int | None = None) -> None:
        """Log a table (e.g. the generations of one eval) under `key`."""
        if self._run is not None:
            import wandb

            self._run.log({key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])},
                          step=step)

    def summary(self, metrics: dict) -> None:
        """Set run-level results (e.g. the eval summary)."""
        if self._run is not None:
            self._run.summary.update(dict(metrics))

    def image(self, key: str, png_path: Path, step: int | None = None) -> None:
        """Log a picture such as a loss plot."""
        if self._run is not None:
            import wandb

            self._run.log({key: wandb.Image(str(png_path))}, step=step)

    def save_file(self, path: Path) -> None:
        """Copy one file (e.g. the dataset card) into the run's files so it travels with it."""
        if self._run is not None:
            import shutil

            # A copy, not wandb.save's symlink into the cache: the run dir stays readable
            # after the cache is cleaned, and wandb prints no symlink warning.
            copy = Path(shutil.copy2(path, Path(self._run.dir) / Path(path).name))
            self._run.save(str(copy), base_path=self._run.dir, policy="now")

    def finish(self) -> None:
        """Close the run and flush its files; safe to call twice or after the trainer's callback."""
        if self._run is not None:
            import wandb

            run, self._run = self._run, None
            run.finish()
            # wandb 0.31 returns from finish() before wandb-core has written the .wandb file
            # (seen at 7 bytes right after); teardown waits for it and stops wandb-core,
            # which otherwise outlives the run. The next start() relaunches it (~1 s).
            wandb.teardown()


def start(cfg: DictConfig, run_dir: Path, job_type: str = "train") -> Tracker:
    """Open a wandb run for `cfg` under `run_dir/wandb/` (or a no-op Tracker when disabled)."""
    return start_remote(remote_settings(cfg), run_dir, job_type)


def remote_settings(cfg: DictConfig) -> dict:
    """Everything a W&B run needs from the config, secrets removed: also what a remote stage gets."""
    return redact({"mode": str(cfg.tracking.mode), "project": cfg.tracking.project,
                   "group": cfg.tracking.group or cfg.experiment, "name": run_name(cfg),
                   "tags": run_tags(cfg), "config": safe_config(cfg)})


def start_remote(settings: dict, run_dir: Path, job_type: str = "train") -> Tracker:
    """Open a wandb run from `remote_settings` (here or in a Modal container)."""
    mode = settings["mode"]
    if mode == "disabled":
        return Tracker()
    # Checked before wandb.init so a missing key never costs a network attempt.
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise UserError("tracking=wandb: set WANDB_API_KEY (or use tracking=wandb_offline)")
    import wandb

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        mode=mode, dir=str(run_dir), project=settings["project"], group=settings["group"],
        name=settings["name"], job_type=job_type, tags=settings["tags"], config=settings["config"],
        # Pipeline output stays readable; console="off" also keeps whatever the pipeline
        # prints (paths, prompts) out of the run's files.
        settings=wandb.Settings(silent=True, console="off", save_code=False),
        reinit="finish_previous",
    )
    return Tracker(run)


def run_name(cfg: DictConfig) -> str:
    """Hydra's override string (`data=sentence,lora.r=8`), else the chosen options."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().job.override_dirname:
        return HydraConfig.get().job.override_dirname
    return (f"{cfg.experiment}:data={cfg.data.name},lora.r={cfg.lora.r},"
            f"train={cfg.train.name}")


def run_tags(cfg: DictConfig) -> list[str]:
    """The configured tags plus one per swappable part, for filtering in the W&B UI."""
    return [*cfg.tracking.tags, f"data={cfg.data.name}", f"model={cfg.model.name}",
            f"train={cfg.train.name}"]


def safe_config(cfg: DictConfig) -> dict:
    """The composed config as a plain dict with api_key* keys and secret-looking values removed."""
    return redact(OmegaConf.to_container(cfg, resolve=True))


def replay_history(tracker, history: dict) -> None:
    """Log a remote run's losses and probe generations to the local W&B run, in step order."""
    rows = [(r["step"], {"train/loss": r["loss"], "train/learning_rate": r["learning_rate"]})
            for r in history["train"]]
    rows += [(r["step"], {"eval/loss": r["eval_loss"]}) for r in history["eval"]]
    for step, metrics in sorted(rows, key=lambda r: r[0]):
        tracker.log({**metrics, "train/global_step": step})
    for step in sorted({g["step"] for g in history["generations"]}):
        tracker.table("eval/generations", GENERATION_COLUMNS,
                      [[g[c] for c in GENERATION_COLUMNS] for g in history["generations"] if g["step"] == step])
    tracker.summary({f"train/{k}": v for k, v in history["summary"].items()})
