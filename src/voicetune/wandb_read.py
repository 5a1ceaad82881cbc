"""Read an offline W&B run back from disk: config, history, summary and tables.

wandb 0.31 offline runs keep history, summary and config only in `run-*.wandb` (no
wandb-summary.json, no config.yaml) and wandb no longer ships a scanner for it, so this
module reads the file itself: a 7-byte file header, then LevelDB-log framing of
`wandb_internal_pb2.Record` messages. Table values point at JSON files under `files/`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

from voicetune.errors import UserError

FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version 0
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, payload length, chunk type
BLOCK = 32 * 1024  # chunks never straddle a 32 KiB block; a tail < 7 bytes is zero padding
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# Bookkeeping wandb adds to every step and to the summary.
INTERNAL_KEYS = ("_wandb", "_runtime", "_timestamp")


def read_run(path: Path) -> dict:
    """{"id", "name", "group", "tags", "project", "config", "history", "summary", "tables"} of one run."""
    wandb_file = find_wandb_file(Path(path))
    files_dir = wandb_file.parent / "files"
    out: dict = {"id": None, "name": None, "group": None, "tags": [], "project": None,
                 "config": {}, "history": [], "summary": {}, "tables": {}}
    for record in records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _read_run_record(record.run, out)
        elif kind == "config":
            _apply(out["config"], record.config.update, record.config.remove)
        elif kind == "summary":
            _apply(out["summary"], record.summary.update, record.summary.remove)
        elif kind == "history":
            row = _apply({}, record.history.item, [])
            out["history"].append(_resolve_tables(row, files_dir, out["tables"]))
    out["summary"] = _resolve_tables(out["summary"], files_dir, {})
    return out


def find_wandb_file(path: Path) -> Path:
    """The .wandb file of a run dir (newest offline run), an offline-run dir, or the file."""
    if path.is_file():
        return path
    candidates = sorted(path.glob("run-*.wandb")) or sorted(
        path.glob("wandb/offline-run-*/run-*.wandb"), key=lambda p: p.parent.name)
    if not candidates:
        raise UserError(f"{path}: no W&B run here (expected wandb/offline-run-*/run-*.wandb)")
    return candidates[-1]


def records(wandb_file: Path) -> Iterator[Any]:
    """Every Record in the file, in the order wandb wrote them."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = wandb_file.read_bytes()
    ident, _, _ = FILE_HEADER.unpack_from(data)
    if ident != b":W&B":
        raise UserError(f"{wandb_file}: not a W&B run file")
    for payload in _payloads(data, FILE_HEADER.size):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _payloads(data: bytes, pos: int) -> Iterator[bytes]:
    """Reassemble FULL / FIRST..MIDDLE..LAST chunks into whole payloads."""
    parts: list[bytes] = []
    while pos + CHUNK_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER.size:
            pos += left
            continue
        _, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        start = pos + CHUNK_HEADER.size
        pos = start + length
        if kind == 0:  # zero fill: the writer stopped mid-block (run still open or killed)
            break
        if kind in (FULL, FIRST):
            parts = []
        parts.append(data[start:pos])
        if kind in (FULL, LAST):
            yield b"".join(parts)


def _read_run_record(run: Any, out: dict) -> None:
    out.update(id=run.run_id, name=run.display_name, group=run.run_group,
               tags=list(run.tags), project=run.project)
    _apply(out["config"], run.config.update, [])


def _apply(target: dict, updates: Any, removes: Any) -> dict:
    """Set (and delete) `key` / `nested_key` items whose values are JSON strings."""
    for item in updates:
        path = list(item.nested_key) or [item.key]
        if path[0] in INTERNAL_KEYS:
            continue
        *parents, last = path
        node = target
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = json.loads(item.value_json)
    for item in removes:
        *parents, last = list(item.nested_key) or [item.key]
        node = target
        for key in parents:
            node = node.get(key, {})
        node.pop(last, None)
    return target


def _resolve_tables(row: dict, files_dir: Path, tables: dict) -> dict:
    """Replace table references by {"columns", "data"} read from files/; remember the last."""
    for key, value in row.items():
        if isinstance(value, dict) and value.get("_type") == "table-file":
            table = json.loads((files_dir / value["path"]).read_text())
            row[key] = tables[key] = {"columns": table["columns"], "data": table["data"]}
    return row
