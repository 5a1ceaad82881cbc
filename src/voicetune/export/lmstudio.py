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

from voicetune.errors import UserError

MARKER = ".voicetune-install.json"


def target_dir(cfg) -> Path:
    lm = cfg.export.lmstudio
    return Path(lm.models_dir).expanduser() / lm.publisher / cfg.export.name


def check_target(cfg) -> None:
    """One line if the target folder exists and is not an earlier voicetune install."""
    target = target_dir(cfg)
    if target.exists() and not (target / MARKER).is_file():
        raise UserError(f"export.lmstudio: {target} exists; remove it or pick another export.name")


def install(cfg, source: str | Path) -> Path:
    """Copy (hard-link when possible) the artifact into LM Studio's folder, atomically."""
    source, target = Path(source), target_dir(cfg)
    stamp = {"source": str(source), "artifact": source.name}
    if target.exists():
        marker = target / MARKER
        if marker.is_file() and json.loads(marker.read_text()) == stamp:
            return target  # this very artifact is installed already
        raise UserError(f"export.lmstudio: {target} exists; remove it or pick another export.name")
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:6]}")
    try:
        for path in _files(source):
            _link_or_copy(path, tmp / path.relative_to(source))
        (tmp / MARKER).write_text(json.dumps(stamp))
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_preset(cfg, target)
    return target


def _files(source: Path) -> list[Path]:
    """The weights and the files a person reads; not the Modelfile (Ollama's) or cache markers."""
    return [p for p in sorted(source.rglob("*"))
            if p.is_file() and p.name != "Modelfile" and not p.name.startswith(".")]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # an 8B GGUF is 8 GB: no second copy on the same disk
    except OSError:
        shutil.copy2(src, dst)


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
