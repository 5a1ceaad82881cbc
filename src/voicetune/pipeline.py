"""Stage order, machine-dependent choices, cache keys, placement and the run manifest.

A stage's cache key is the hash of its name, version, the config view it sees (voicetune.contract),
its inputs' keys and its source files, nothing else, so a sweep over `train.epochs` reuses one set
of pairs. Where a stage runs (this machine or compute.target) is decided here; stages never know.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from voicetune import __version__
from voicetune.cache import Cache, digest
from voicetune.config import STAGES as ORDER
from voicetune.contract import Context, Services, StageSpec, view, view_digest
from voicetune.errors import DryRun, UserError
from voicetune.stages import STAGES

# Bump when a stage's output format or logic changes, so old cache entries are not trusted.
STAGE_VERSION = 3


def plan(requested: list[str]) -> list[str]:
    """Requested stages plus the upstream stages they need, in pipeline order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in wanted:
            wanted.add(name)
            for need in STAGES[name].needs:
                add(need)

    for name in requested:
        add(str(name))
    return [n for n in ORDER if n in wanted]


def placement(cfg: DictConfig, name: str) -> str:
    """Where a stage runs: compute.target for the stages compute.stages lists, else here."""
    target = str(cfg.compute.target)
    return target if target != "local" and name in [str(s) for s in cfg.compute.stages] else "local"


def resolve_choices(cfg: DictConfig, planned: list[str]) -> tuple[DictConfig, dict]:
    """Replace every `auto` a planned stage can see with what it means where that stage runs;
    the choices, for run.json."""
    cfg = copy.deepcopy(cfg)
    chosen = {key: resolve(cfg, planned) for key, resolve in CHOICES.items()
              if any(_sees(STAGES[name], key) for name in planned)}
    for key, value in chosen.items():
        OmegaConf.update(cfg, key, value)
    return cfg, chosen


def _sees(spec: StageSpec, key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in spec.reads)


def _backend(cfg: DictConfig, planned: list[str]) -> str:
    """auto -> unsloth when CUDA and unsloth are where train runs, mlx on Apple Silicon, else hf."""
    from voicetune import backends

    choice = backends.resolve(str(cfg.train.backend), placement(cfg, "train") != "local")
    if choice == "unsloth" and "export" in planned and placement(cfg, "export") != placement(cfg, "train"):
        raise UserError("compute.stages: train.backend resolves to unsloth, so export must run where train runs "
                        "(list both in compute.stages, or set train.backend=hf)")
    return choice


def _precision(cfg: DictConfig, planned: list[str]) -> str:
    """auto -> bf16 on a CUDA card that has it (a remote GPU has) and for mlx on a Mac, else fp32."""
    choice = str(cfg.train.precision)
    if choice != "auto":
        return choice
    if placement(cfg, "train") != "local":
        return "bf16"
    if "train" in planned and _backend(cfg, planned) == "mlx":
        from voicetune.backends import mlx

        return mlx.precision()
    if "train" not in planned:
        return "fp32"  # nothing trains in this run: no reason to import torch to find out
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def _mlx_dtype(cfg: DictConfig, planned: list[str]) -> str:
    """auto -> float16 on a Mac; float32 on Linux, where mlx[cpu] 0.32 never finished a float16
    forward pass of the 4-bit model (see MlxExport)."""
    choice = str(cfg.export.mlx.dtype)
    if choice != "auto":
        return choice
    here = platform.system() == "Darwin" and placement(cfg, "export") == "local"
    return "float16" if here else "float32"


def _lmstudio_source(cfg: DictConfig, planned: list[str]) -> str:
    """auto -> MLX on macOS (LM Studio's fastest engine there), GGUF elsewhere; LM Studio runs here."""
    choice = str(cfg.export.lmstudio.source)
    if choice != "auto":
        return choice
    return "mlx" if platform.system() == "Darwin" else "gguf"


def _mlx_bits(cfg: DictConfig, planned: list[str]) -> int:
    """null -> 8 bits under 1B parameters, where 4 bits broke SmolLM2-135M (see MlxExport), else 4."""
    if cfg.export.mlx.q_bits is not None:
        return int(cfg.export.mlx.q_bits)
    params_b = cfg.model.params_b
    return 8 if params_b is not None and params_b < 1 else 4


# Every machine- or model-dependent choice: resolved once, before any stage runs, into the keys stages see.
CHOICES = {"train.backend": _backend, "train.precision": _precision, "export.mlx.dtype": _mlx_dtype,
           "export.mlx.q_bits": _mlx_bits, "export.lmstudio.source": _lmstudio_source}


def stage_key(spec: StageSpec, seen: DictConfig, upstream: dict[str, str]) -> str:
    """Hash of the stage's name, version, the config it sees, its inputs' keys and its sources."""
    return digest({
        "stage": spec.name, "version": STAGE_VERSION,
        "config": view_digest(seen, spec.located),
        "inputs": {n: upstream[n] for n in spec.needs},
        "sources": spec.call("sources", seen) if spec.sources else [],
    })


def plan_keys(cfg: DictConfig) -> dict[str, str]:
    """The cache key every planned stage would have, computed without running anything."""
    planned = plan([str(s) for s in cfg.stages])
    cfg, _ = resolve_choices(cfg, planned)
    keys: dict[str, str] = {}
    for name in planned:
        keys[name] = stage_key(STAGES[name], view(cfg, STAGES[name].reads), keys)
    return keys


class UndeclaredRead(RuntimeError):
    """A stage read a config key its declaration does not list: a bug in the stage or its reads."""


class PipelineRun:
    """One pipeline run: executes stages through the cache and keeps the manifest."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.requested = [str(s) for s in cfg.stages]
        self.planned = plan(self.requested)
        self.cfg, resolved = resolve_choices(cfg, self.planned)
        self.services = Services(Cache(cfg.cache_dir))
        self.keys: dict[str, str] = {}
        self.tracker = None
        self.outputs: dict[str, Path] = {}
        self.manifest = {"voicetune": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                         "versions": versions(), "resolved": resolved, "stages": []}

    def execute(self) -> dict:
        """Run the requested stages (and missing upstream ones); write run.json."""
        from rich.console import Console

        console = Console(stderr=True)
        try:
            self._check()
            for name in self.planned:
                self._stage(STAGES[name], name in self.requested, console)
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

    def _check(self) -> None:
        """Each planned stage's own checks (missing packages, an occupied folder) before any work."""
        for name in self.planned:
            spec = STAGES[name]
            if spec.check and placement(self.cfg, name) == "local":
                spec.call("check", view(self.cfg, spec.reads))
            if spec.deliver_check:
                spec.call("deliver_check", view(self.cfg, spec.deliver_reads))

    def _report(self) -> bool:
        """report.html in the run dir once a model was trained: `voicetune compare` of this run."""
        if "train" not in self.outputs:
            return False
        from voicetune.compare import build_report

        self.manifest["report"] = str(build_report([self.run_dir], self.run_dir / "report.html"))
        return True

    def _stage(self, spec: StageSpec, requested: bool, console) -> None:
        seen = view(self.cfg, spec.reads)
        key = stage_key(spec, seen, self.keys)
        started = time.perf_counter()
        cache = self.services.cache
        hit = cache.get(spec.name, key)
        where = placement(self.cfg, spec.name)
        if where != "local" and not hit and self.cfg.compute.dry_run:
            from voicetune.compute.plan import describe

            remote = [n for n in self.planned[self.planned.index(spec.name):] if placement(self.cfg, n) != "local"]
            raise DryRun(describe(self.cfg, self.outputs, remote))
        record = {"name": spec.name, "key": key, "status": "hit" if hit else "miss", "placement": where,
                  "reads": list(spec.reads)}
        if hit:
            console.print(f"[green]stage {spec.name}[/]: cached ({key[:12]})")
            record["metrics"] = json.loads((hit / "metrics.json").read_text())
            out = hit
        else:
            console.rule(f"stage {spec.name}" + ("" if requested else " (needed upstream)")
                         + ("" if where == "local" else f" on {where}"))
            out, record["metrics"] = self._compute(spec, seen, key, where)
        if spec.deliver:
            record["delivered"] = spec.call("deliver", self._context(spec, view(self.cfg, spec.deliver_reads), out))
        record.update(seconds=round(time.perf_counter() - started, 3), output=str(out))
        self.keys[spec.name], self.outputs[spec.name] = key, out
        self.manifest["stages"].append(record)
        self._link(spec.name, out)

    def _context(self, spec: StageSpec, seen: DictConfig, out: Path) -> Context:
        inputs = {n: self.outputs[n] for n in spec.needs}
        return Context(seen, inputs, out, self.services, self._tracker() if spec.tracked else None)

    def _compute(self, spec: StageSpec, seen: DictConfig, key: str, where: str) -> tuple[Path, dict]:
        from omegaconf.errors import ConfigAttributeError, ConfigKeyError

        cache = self.services.cache
        with cache.put(spec.name, key, resumable=spec.tracked) as tmp:
            ctx = self._context(spec, seen, tmp)
            try:
                metrics = run_placed(spec, ctx, self.cfg, where) or {}
            except (ConfigAttributeError, ConfigKeyError) as exc:
                raise UndeclaredRead(f"stage {spec.name} read {exc.full_key or exc.key!s}, which it does not declare: "
                                     "add the key to its reads in voicetune/stages/__init__.py") from exc
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        return cache.get(spec.name, key), metrics

    def _tracker(self):
        """The run's W&B tracker, started when the first tracked stage needs it."""
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
        from voicetune.redaction import redact
        from voicetune.tracking import safe_config

        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(safe_config(self.cfg))))
        # shapes=False: the manifest is made of cache keys (64 hex digits, shaped like a key); what a
        # secret could reach it through (an env value, a URL's credentials) is still cut out.
        (self.run_dir / "run.json").write_text(json.dumps(redact(self.manifest, shapes=False), indent=2,
                                                          default=str))


def run_placed(spec: StageSpec, ctx: Context, cfg: DictConfig, where: str) -> dict:
    """Call the stage here, or hand its function, view and inputs to the remote runner."""
    if where == "local":
        return spec.call("function", ctx)
    from voicetune.compute.modal import run_remote
    from voicetune.tracking import remote_settings

    return run_remote(spec, ctx, cfg.compute, remote_settings(cfg))


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
    for s in manifest["stages"]:  # what a stage built but marked failed (export: parity), one line each
        for line in (s.get("metrics") or {}).get("failed", []):
            console.print(f"[red]{s['name']}[/]: {line}", soft_wrap=True)
        if (s.get("delivered") or {}).get("refused"):
            console.print(f"[red]{s['name']}[/]: {s['delivered']['refused']}", soft_wrap=True)
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
    return PipelineRun(cfg, run_dir).execute()


def run_stage(name: str, cfg: DictConfig, inputs: dict[str, Path], out: Path, cache: Cache | None = None,
              tracker=None) -> dict:
    """One stage on given input folders, through its declared view (tests, notebooks, benches)."""
    import shutil

    spec, out = STAGES[name], Path(out)
    cfg, _ = resolve_choices(cfg, [name])
    services = Services(cache or Cache(cfg.cache_dir))
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return spec.call("function", Context(view(cfg, spec.reads), dict(inputs), out, services, tracker))
    except BaseException:
        if fresh:  # like a cache entry: a stage that failed (or only estimated) leaves nothing
            shutil.rmtree(out, ignore_errors=True)
        raise


def main(cfg: DictConfig) -> None:
    """Hydra entry: run into Hydra's output dir; a user mistake prints one line and exits 2."""
    from hydra.core.hydra_config import HydraConfig

    from voicetune import redaction

    hydra_cfg = HydraConfig.get()
    redaction.redact_logs()
    if hydra_cfg.output_subdir is not None:  # Hydra saved its own copies before calling us
        redaction.redact_files(Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir)
    try:
        run(cfg, Path(hydra_cfg.runtime.output_dir))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
