"""Content-addressed, atomic artifact store: the only code that names paths in the cache dir.

A stage's output folder is built under `<cache>/tmp/` and renamed into
`<cache>/stages/<stage>/<key>/` only when complete (rename is atomic on one filesystem), so
a run killed at any moment leaves nothing a later run would trust. A miss reserves its entry
with a lock file (`<cache>/locks/`), so concurrent sweep members compute each stage once: the
second waits for the first and then hits.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
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
        # Lock file -> its open fd, for the entries this cache is computing. One Cache serves a
        # whole run (the pipeline hands it to every stage), so a reserved entry is never waited
        # on by its own holder.
        self._held: dict[Path, int] = {}

    def __del__(self):
        # A miss reserved by get() belongs to this Cache until its put(); a dropped Cache lets go.
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()

    def stage_dir(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / key[:16]

    def get(self, stage: str, key: str) -> Path | None:
        """The finished output folder, or None when absent (then reserved for this caller's put)."""
        path = self.stage_dir(stage, key)
        if (path / COMPLETE).exists():
            return path
        self._reserve(stage, key)  # waits while another process computes this entry
        if (path / COMPLETE).exists():
            self._release(stage, key)
            return path
        return None

    @contextmanager
    def put(self, stage: str, key: str, resumable: bool = False) -> Iterator[Path]:
        """Yield a work folder; on success it becomes the stage's cached output.

        A resumable stage (training) gets the same folder back after a crash, with its
        checkpoints; any other stage starts from an empty one.
        """
        self._reserve(stage, key)
        try:
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
        finally:
            self._release(stage, key)

    def _reserve(self, stage: str, key: str) -> None:
        """Hold the entry's lock; a killed holder's lock goes with its process (flock)."""
        path = self._lock_path(stage, key)
        if path in self._held:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"stage {stage}: another run is computing {key[:12]}; waiting for it", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks (some NFS mounts): concurrent runs may both compute
            os.close(fd)
            return
        self._held[path] = fd

    def _release(self, stage: str, key: str) -> None:
        fd = self._held.pop(self._lock_path(stage, key), None)
        if fd is not None:
            os.close(fd)  # closing the file drops its flock

    def _lock_path(self, stage: str, key: str) -> Path:
        return self.root / "locks" / f"{stage}-{key[:16]}.lock"

    def journal(self, name: str) -> Path:
        """An append-only JSONL file shared across runs (e.g. paid API responses)."""
        path = self.root / "journals" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def models(self, name: str) -> Path:
        """Folder for a converted model (e.g. the GGUF dequantised to safetensors)."""
        return self.root / "models" / name


def save_pretrained_atomic(obj, folder: Path) -> None:
    """save_pretrained into a temp folder, then rename, so a killed run leaves nothing half-written."""
    tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:6]}")
    obj.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy across disks) every file of src into dst: an 8B GGUF is not stored twice."""
    for path in sorted(Path(src).rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue  # cache markers are not artifact files
        target = Path(dst) / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
