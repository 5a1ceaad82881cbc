"""Content-addressed, atomic artifact store: the only code that names paths in the cache dir.

A stage's output folder is built under `<cache>/tmp/` and renamed into
`<cache>/stages/<stage>/<key>/` only when complete (rename is atomic on one filesystem), so
a run killed at any moment leaves nothing a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

COMPLETE = ".complete"


def digest(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Cache:
    """Stage outputs keyed by the hash of their inputs and the config keys they read."""

    def __init__(self, root: str | Path):
        self.root = Path(os.path.expanduser(str(root))).resolve()

    def stage_dir(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / key[:16]

    def get(self, stage: str, key: str) -> Path | None:
        """The finished output folder, or None when absent or never completed."""
        path = self.stage_dir(stage, key)
        return path if (path / COMPLETE).exists() else None

    @contextmanager
    def put(self, stage: str, key: str, resumable: bool = False) -> Iterator[Path]:
        """Yield a work folder; on success it becomes the stage's cached output.

        A resumable stage (training) gets the same folder back after a crash, with its
        checkpoints; any other stage starts from an empty one.
        """
        name = f"{stage}-{key[:16]}" if resumable else f"{stage}-{uuid.uuid4().hex[:8]}"
        tmp = self.root / "tmp" / name
        tmp.mkdir(parents=True, exist_ok=resumable)
        try:
            yield tmp
        except BaseException:
            if not resumable:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / COMPLETE).write_text(key)
        final = self.stage_dir(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # an earlier run died between its rename and this one
            shutil.rmtree(final)
        os.replace(tmp, final)

    def journal(self, name: str) -> Path:
        """An append-only JSONL file shared across runs (e.g. paid API responses)."""
        path = self.root / "journals" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def models(self, name: str) -> Path:
        """Folder for a converted model (e.g. the GGUF dequantised to safetensors)."""
        return self.root / "models" / name
