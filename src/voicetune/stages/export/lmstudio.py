"""Install the MLX or GGUF artifact where LM Studio looks: `<models>/<publisher>/<name>/`.

LM Studio lists every folder two levels under its models directory (`~/.lmstudio/models` since
0.3; the seed used `~/.cache/huggingface/hub/<author>/<name>/`, which LM Studio also scans when
pointed at it). The persona is written next to the weights and as an LM Studio preset; the
exported chat template already makes it the default system prompt.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from voicetune.cache import link_tree
from voicetune.errors import UserError
from voicetune.records import read_json

MARKER = ".voicetune-install.json"


def target_dir(cfg) -> Path:
    lm = cfg.export.lmstudio
    return Path(lm.models_dir).expanduser() / lm.publisher / cfg.export.name


def asked(cfg) -> bool:
    return bool(cfg.export.formats.get("lmstudio"))


def check_target(cfg) -> None:
    """One line if the target folder exists and is not an earlier voicetune install."""
    if not asked(cfg):
        return
    target = target_dir(cfg)
    if target.exists() and not (target / MARKER).is_file():
        raise UserError(f"export.lmstudio: {target} exists; remove it or pick another export.name")


def deliver(ctx) -> dict:
    """The export stage's delivery, on this machine: install the MLX or GGUF folder into LM Studio."""
    from voicetune.stages.export import lmstudio_source

    if not asked(ctx.cfg):
        return {}
    source = lmstudio_source(ctx.cfg)
    failed = failed_parity(ctx.out, source)
    if failed and not ctx.cfg.export.lmstudio.even_if_failed:
        return {"refused": f"LM Studio: {ctx.out / source} not installed, {'; '.join(failed)} FAILED parity "
                           "(export/parity.md says why; export.lmstudio.even_if_failed=true installs it anyway)",
                "from": source}
    built = read_json(ctx.out / "artifacts.json")
    return {"lmstudio": str(install(ctx.cfg, ctx.out / source, built[source]["key"])), "from": source}


# How parity names the artifacts of each format LM Studio can install from.
PARITY_NAMES = {"gguf": "gguf (", "mlx_q4": "mlx ("}


def failed_parity(export_dir: Path, source: str) -> list[str]:
    """The artifacts of `source` that parity failed (none when parity did not run)."""
    table = export_dir / "parity.json"
    failed = read_json(table)["summary"]["failed"] if table.is_file() else {}
    return sorted(name for name in failed if name.startswith(PARITY_NAMES[source]))


def install(cfg, source: Path, key: str) -> Path:
    """Copy (hard-link when possible) the artifact `key` from `source` into LM Studio's folder, atomically."""
    target = target_dir(cfg)
    stamp = {"artifact": key, "format": source.name}
    if target.exists():
        marker = target / MARKER
        if marker.is_file() and json.loads(marker.read_text()) == stamp:
            return target  # this very artifact is installed already
        raise UserError(f"export.lmstudio: {target} exists; remove it or pick another export.name")
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:6]}")
    try:
        link_tree(source, tmp)
        (tmp / "Modelfile").unlink(missing_ok=True)  # Ollama's, not LM Studio's
        (tmp / MARKER).write_text(json.dumps(stamp))
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_preset(cfg, target)
    return target


def write_preset(cfg, target: Path) -> Path:
    """An LM Studio preset holding the persona as system prompt, beside its models folder."""
    presets = Path(cfg.export.lmstudio.models_dir).expanduser().parent / "config-presets"
    presets.mkdir(parents=True, exist_ok=True)
    path = presets / f"{cfg.export.name}.preset.json"
    preset = {"identifier": f"@local:{cfg.export.name}", "name": f"{cfg.export.name} (voicetune)",
              "changed": False,
              "operation": {"fields": [{"key": "llm.prediction.systemPrompt", "value": cfg.corpus.persona},
                                       {"key": "llm.prediction.temperature", "value": 0.3}]},
              "load": {"fields": []}}
    path.write_text(json.dumps(preset, indent=2) + "\n")
    return path
