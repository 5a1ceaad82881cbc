"""Stage order, cache keys and the run manifest.

A stage's cache key is the hash of its own inputs and of the config keys it reads, nothing
else, so a sweep over `train.epochs` reuses one set of pairs.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from voicetune import __version__
from voicetune.cache import Cache, digest, file_digest
from voicetune.errors import DryRun, UserError

# Bump when a stage's output format or logic changes, so old cache entries are not trusted.
STAGE_VERSION = 1


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]
    reads: tuple[str, ...]  # config keys that decide the output
    tracked: bool = False  # logs to W&B: gets the run's tracker
    module: str = ""  # voicetune.<module>; default: the stage's name

    @property
    def import_path(self) -> str:
        return f"voicetune.{self.module or self.name}"


GENERATOR = ("generator.backend", "generator.model", "generator.base_url", "generator.api_version",
             "generator.temperature", "generator.max_output_tokens", "generator.seed",
             "data.rough_styles", "data.prompt", "data.gates")
TOKENIZER = ("model.name_or_path", "model.gguf_file", "model.chat_template")
RECORDS = ("corpus.persona", "data.instruction", "data.section_weights") + TOKENIZER
BUDGET = ("data.max_tokens", "data.limits", "data.seed", "data.instruction", "data.gates.max_length_ratio",
          "corpus.persona", "train.seq_len") + TOKENIZER

STAGES = {
    s.name: s
    for s in [
        Stage("extract", (), ("corpus.sections", "corpus.excluded", "corpus.end_markers",
                              "corpus.max_heading_chars")),
        Stage("units", ("extract",), ("data.shapes", "data.max_units") + BUDGET),
        Stage("pairs", ("units",), GENERATOR),
        Stage("dataset", ("pairs",), ("data.valid_fraction", "data.seed") + RECORDS),
        # Depends on the papers, not on data.shapes: one held-out set per experiment.
        Stage("heldout", ("extract",), ("data.valid_fraction", "train.eval_samples") + BUDGET + GENERATOR + RECORDS),
        Stage("train", ("dataset", "heldout"), ("model", "lora", "train", "data.seed", "compute.target"),
              tracked=True),
        Stage("eval", ("train", "dataset", "heldout"), ("model", "data.seed", "train.eval_records",
                                                        "train.seq_len", "train.batch_size"),
              tracked=True, module="evaluate"),
        # The card in each artifact folder summarises the dataset and the eval.
        Stage("export", ("train", "heldout", "dataset", "eval"), ("export", "model", "data.seed")),
    ]
}


def _select(cfg: DictConfig, key: str):
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def source_digest(cfg: DictConfig, stage: Stage) -> list:
    """What a stage reads from outside the cache: for `extract`, the corpus files' bytes."""
    if stage.name != "extract":
        return []
    from voicetune.extract import corpus_files

    root = Path(cfg.corpus.path).expanduser()
    return [[str(p.relative_to(root)), file_digest(p)] for p in corpus_files(cfg.corpus)]


def stage_key(cfg: DictConfig, stage: Stage, upstream: dict[str, str]) -> str:
    """Hash of the stage's name, version, config keys it reads and its inputs' keys."""
    return digest({
        "stage": stage.name, "version": STAGE_VERSION,
        "config": {k: _select(cfg, k) for k in stage.reads},
        "inputs": {n: upstream[n] for n in stage.needs},
        "sources": source_digest(cfg, stage),
    })


def plan(requested: list[str]) -> list[str]:
    """Requested stages plus the upstream stages they need, in pipeline order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in wanted:
            wanted.add(name)
            for need in STAGES[name].needs:
                add(need)

    for name in requested:
        add(name)
    return [n for n in STAGES if n in wanted]


class Run:
    """One pipeline run: executes stages through the cache and keeps the manifest."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cache = Cache(cfg.cache_dir)
        self.keys: dict[str, str] = {}
        self.tracker = None
        self.outputs: dict[str, Path] = {}
        self.manifest = {"voicetune": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                         "versions": versions(), "stages": []}

    def execute(self) -> dict:
        """Run the requested stages (and missing upstream ones); write run.json."""
        from rich.console import Console

        console = Console(stderr=True)
        requested = list(self.cfg.stages)
        try:
            for name in plan(requested):
                self._stage(STAGES[name], name in requested, console)
        except DryRun as dry:
            console.print(f"[yellow]dry run[/]: {dry}")
            self.manifest["dry_run"] = str(dry)
        finally:
            if self.tracker is not None:
                self.tracker.finish()
            self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            self._write_manifest()
        if self._report():
            self._write_manifest()
        print_run(self.manifest, self.run_dir)
        return self.manifest

    def _report(self) -> bool:
        """report.html in the run dir once a model was trained: `voicetune compare` of this run."""
        if "train" not in self.outputs:
            return False
        from voicetune.compare import build_report

        self.manifest["report"] = str(build_report([self.run_dir], self.run_dir / "report.html"))
        return True

    def _stage(self, stage: Stage, requested: bool, console) -> None:
        key = stage_key(self.cfg, stage, self.keys)
        started = time.perf_counter()
        hit = self.cache.get(stage.name, key)
        record = {"name": stage.name, "key": key, "status": "hit" if hit else "miss"}
        if hit:
            console.print(f"[green]stage {stage.name}[/]: cached ({key[:12]})")
            record["metrics"] = json.loads((hit / "metrics.json").read_text())
            out = hit
        else:
            console.rule(f"stage {stage.name}" + ("" if requested else " (needed upstream)"))
            out, record["metrics"] = self._compute(stage, key)
        record.update(seconds=round(time.perf_counter() - started, 3), output=str(out))
        self.keys[stage.name], self.outputs[stage.name] = key, out
        self.manifest["stages"].append(record)
        self._link(stage.name, out)

    def _compute(self, stage: Stage, key: str) -> tuple[Path, dict]:
        module = importlib.import_module(stage.import_path)
        inputs = {n: self.outputs[n] for n in stage.needs}
        extra = {"tracker": self._tracker()} if stage.tracked else {}
        with self.cache.put(stage.name, key, resumable=stage.tracked) as tmp:
            metrics = module.run(self.cfg, inputs, tmp, **extra) or {}
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        return self.cache.get(stage.name, key), metrics

    def _tracker(self):
        """The run's W&B tracker, started when the first tracked stage computes."""
        if self.tracker is None:
            from voicetune import tracking

            self.tracker = tracking.start(self.cfg, self.run_dir)
        return self.tracker

    def _link(self, name: str, target: Path) -> None:
        """run_dir/<stage> -> the cached output, so a run dir shows everything it used."""
        link = self.run_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)

    def _write_manifest(self) -> None:
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        (self.run_dir / "run.json").write_text(json.dumps(self.manifest, indent=2, default=str))


def print_run(manifest: dict, run_dir: Path) -> None:
    """One table for the whole run, and where to look next."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {run_dir}")
    for col in ("stage", "status", "seconds", "cache key"):
        table.add_column(col)
    for s in manifest["stages"]:
        table.add_row(s["name"], s["status"], str(s.get("seconds", "")), s.get("key", "")[:12])
    console = Console(stderr=True)
    console.print(table)
    done = {s["name"] for s in manifest["stages"] if s["status"] in ("hit", "miss")}
    if "dataset" in done:
        console.print(f"pairs viewer:   voicetune view {run_dir}")
    if manifest.get("report"):
        console.print(f"report:         {manifest['report']}  (several runs: voicetune compare DIR...)")


def versions() -> dict:
    """Versions of Python and the libraries whose behaviour decides the outputs."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("hydra-core", "lxml", "openai", "transformers", "torch", "peft", "datasets", "wandb"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate the config, then run the pipeline; user mistakes raise UserError."""
    from voicetune.config import validate

    validate(cfg)
    return Run(cfg, run_dir).execute()


def main(cfg: DictConfig) -> None:
    """Hydra entry: run into Hydra's output dir; a user mistake prints one line and exits 2."""
    from hydra.core.hydra_config import HydraConfig

    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
