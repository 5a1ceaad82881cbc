"""The records stages pass each other, and the one JSONL reader and writer.

- unit: a passage of one shape (`id, paper, section, shape, text, words, paragraphs[, tokens]`);
- pair: a unit with a rough draft (`id, unit_id, paper, section, shape, style, rough, original`);
- chat record: `{"messages": [system, user, assistant], id, paper, section, shape, style, weight,
  tokens}`, where the user turn is the instruction, a blank line and the rough draft, and the
  assistant turn is the author's original. Read its parts with the accessors below.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from voicetune.errors import UserError

CountTokens = Callable[[list[dict[str, str]]], int]
PAIR_FIELDS = ("id", "unit_id", "paper", "section", "shape", "style", "kind", "rough", "original")


# ---------------------------------------------------------------- chat records


def chat_messages(persona: str, instruction: str, rough: str, original: str | None = None) -> list[dict]:
    """The training conversation: persona, instruction + draft, and the original when known."""
    messages = [{"role": "system", "content": persona},
                {"role": "user", "content": instruction + "\n\n" + rough}]
    if original is not None:
        messages.append({"role": "assistant", "content": original})
    return messages


def chat_record(pair: dict, persona: str, instruction: str, weight: float, count_tokens: CountTokens) -> dict:
    """One ChatML record for a pair."""
    messages = chat_messages(persona, instruction, pair["rough"], pair["original"])
    return {"messages": messages, "id": pair["id"], "paper": pair["paper"], "section": pair["section"],
            "shape": pair["shape"], "style": pair["style"], "kind": pair["kind"], "weight": weight,
            "tokens": count_tokens(messages)}


def section_weight(section: str, weights: dict[str, float]) -> float:
    """The sampling weight of a section (`data.section_weights`); unlisted sections get 'unknown'."""
    # An empty map means uniform sampling.
    return float(weights.get(section, weights.get("unknown", 1.0)))


def prompt(record: dict) -> list[dict]:
    """The conversation up to where the model writes: system and user turns."""
    return record["messages"][:2]


def user_turn(record: dict) -> str:
    """The user turn: instruction, blank line, rough draft."""
    return record["messages"][1]["content"]


def draft(record: dict) -> str:
    """The rough draft inside the user turn."""
    return user_turn(record).split("\n\n", 1)[-1]


def reference(record: dict) -> str:
    """The author's original: the assistant turn the model should write."""
    return record["messages"][2]["content"]


# ---------------------------------------------------------------- JSONL


def read_jsonl(path: Path, required: Iterable[str] = (), missing_ok: bool = False) -> list[dict]:
    """Rows of a JSONL file; a bad line or a missing field is a one-line UserError."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return []
        raise UserError(f"{path}: not found (an earlier stage writes it)")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        absent = [k for k in required if not isinstance(row, dict) or k not in row]
        if absent:
            raise UserError(f"{path}:{lineno}: missing field(s) {', '.join(absent)}")
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as JSONL atomically: a killed run leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    os.replace(tmp, path)


def read_json(path: Path, missing_ok: bool = False) -> dict:
    """One JSON file (stats, a card); a hand-made folder may lack it when missing_ok."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return {}
        raise UserError(f"{path}: not found (an earlier stage writes it)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg})") from None


# ---------------------------------------------------------------- the paper split

SPLIT_FILE = "split.json"


def write_split(folder: Path, split: dict[str, list[str]]) -> None:
    """The split stage's output: split name -> paper ids."""
    (Path(folder) / SPLIT_FILE).write_text(json.dumps(split, indent=2) + "\n")


def read_split(folder: Path) -> dict[str, set[str]]:
    """The paper split written by the split stage: split name -> paper ids."""
    return {name: set(ids) for name, ids in read_json(Path(folder) / SPLIT_FILE).items()}
