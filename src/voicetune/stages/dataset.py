"""dataset stage: (rough, original) pairs -> ChatML train/valid records, a card and a viewer.

Every record is `{"messages": [system, user, assistant], id, paper, section, shape, style,
weight, tokens}`: one fixed persona system prompt, the user turn is the instruction plus the
rough draft, the assistant turn is the author's original verbatim. Papers never straddle the
split, so valid loss measures the voice on unseen papers rather than memorised paragraphs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from voicetune.chat import chat_token_counter
from voicetune.errors import UserError
from voicetune.revisions import KIND, diff
from voicetune.records import PAIR_FIELDS, chat_record, section_weight, read_json, read_jsonl, read_split, write_jsonl
# Word 3-gram shingles: long enough that two different paragraphs on one topic share few,
# short enough that a one-word edit in a 100-word paragraph changes only ~3 of ~98 shingles.
SHINGLE = 3
NEAR_DUP_JACCARD = 0.9


def run(ctx) -> dict:
    """Build the dataset from the pairs and the paper split into `ctx.out`; return the summary."""
    from voicetune import dataset_card, viewer

    cfg, out, pairs_dir = ctx.cfg, ctx.out, ctx.inputs["pairs"]
    pairs = read_jsonl(pairs_dir / "pairs.jsonl", required=PAIR_FIELDS)
    rejected = read_jsonl(pairs_dir / "rejected.jsonl", missing_ok=True)
    stats = read_json(pairs_dir / "stats.json", missing_ok=True)
    kept, removed = dedup(pairs)
    valid_papers = read_split(ctx.inputs["split"])["valid"]
    count = chat_token_counter(ctx.tokenizer())
    weights = dict(cfg.data.section_weights)
    revision_weight = cfg.data.revisions.weight
    records = [chat_record(p, cfg.corpus.persona, cfg.data.instruction,
                           section_weight(p["section"], weights) * (revision_weight if p["kind"] == KIND else 1.0),
                           count)
               for p in kept]
    splits = {
        "train": [r for r in records if r["paper"] not in valid_papers],
        "valid": [r for r in records if r["paper"] in valid_papers],
    }
    _require_both(splits, valid_papers)
    write_splits(splits, out)
    info = dataset_card.write(out, splits, removed, rejected, stats,
                              styles=[s.name for s in cfg.data.rough_styles])
    viewer.write(out / "viewer", viewer_data(kept, valid_papers, records, rejected, info))
    summary = {
        "train": len(splits["train"]), "valid": len(splits["valid"]),
        "papers_train": len(info["papers"]["train"]), "papers_valid": len(info["papers"]["valid"]),
        "dedup_removed": len(removed), "rejected": len(rejected),
    }
    print_summary(summary, info)
    return summary


def _require_both(splits: dict[str, list[dict]], valid_papers: set[str]) -> None:
    """Both sides need records: the split is fixed by the papers, so say which side is empty."""
    for name, rows in splits.items():
        if not rows:
            papers = ", ".join(sorted(valid_papers)) if name == "valid" else "every other paper"
            raise UserError(f"dataset: no {name} pairs left after the gates and dedup ({name} papers: {papers}); "
                            "see the pairs stage's rejected.jsonl, or change data.valid_fraction / data.seed")


# ---------------------------------------------------------------- dedup


def normalize(text: str) -> str:
    """Lower case, whitespace collapsed: the identity used for exact duplicates."""
    return " ".join(text.lower().split())


def shingles(text: str) -> frozenset:
    """Word 3-gram set of a text (the whole word tuple when shorter than 3 words)."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < SHINGLE:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b|."""
    return len(a & b) / len(a | b) if a or b else 1.0


def dedup(pairs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Drop pairs whose unit's original duplicates an earlier unit's; return (kept, removed).

    Several rough styles of one unit share its original on purpose, so duplicates are judged
    per unit: the first unit wins, every pair of a later duplicate unit goes, and so does a
    repeated (unit, style) row. A revision pair's original is the text a de-polished unit
    holds too (a second rough draft of it, by the author), so each kind is judged apart.
    """
    exact: dict[tuple, str] = {}
    by_shape: dict[tuple, list[tuple[str, frozenset]]] = defaultdict(list)
    verdicts: dict[str, dict | None] = {}
    seen_rows: set[tuple[str, str]] = set()
    kept, removed = [], []
    for pair in pairs:
        uid = pair["unit_id"]
        if uid not in verdicts:
            verdicts[uid] = _judge_unit(pair, exact, by_shape)
        verdict = verdicts[uid]
        if verdict is None and (uid, pair["style"]) in seen_rows:
            verdict = {"reason": "repeat", "duplicate_of": uid, "similarity": 1.0}
        if verdict is None:
            seen_rows.add((uid, pair["style"]))
            kept.append(pair)
        else:
            removed.append({"id": pair["id"], "unit_id": uid, "paper": pair["paper"],
                            "shape": pair["shape"], "style": pair["style"], **verdict})
    return kept, removed


def _judge_unit(pair: dict, exact: dict, by_shape: dict) -> dict | None:
    """None when the unit is new (and register it), else why it duplicates an earlier one."""
    key, group = (pair["kind"], normalize(pair["original"])), (pair["kind"], pair["shape"])
    if key in exact:
        return {"reason": "exact", "duplicate_of": exact[key], "similarity": 1.0}
    mine = shingles(pair["original"])
    for other_id, theirs in by_shape[group]:
        # Jaccard <= min/max of the set sizes: skip pairs that cannot reach the threshold.
        if min(len(mine), len(theirs)) < NEAR_DUP_JACCARD * max(len(mine), len(theirs)):
            continue
        sim = jaccard(mine, theirs)
        if sim >= NEAR_DUP_JACCARD:
            return {"reason": "near", "duplicate_of": other_id, "similarity": round(sim, 3)}
    exact[key] = pair["unit_id"]
    by_shape[group].append((pair["unit_id"], mine))
    return None


# ---------------------------------------------------------------- writing


def write_splits(splits: dict[str, list[dict]], out: Path) -> None:
    """train.jsonl, valid.jsonl and the `datasets` DatasetDict under hf/."""
    from datasets import Dataset, DatasetDict

    for name, rows in splits.items():
        write_jsonl(out / f"{name}.jsonl", rows)
    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(
        str(out / "hf")
    )


def viewer_data(pairs: list[dict], valid_papers: set[str], records: list[dict],
                rejected: list[dict], info: dict) -> dict[str, Any]:
    """What the HTML viewer shows: each kept pair with its split, plus the rejected pairs."""
    shown = []
    for pair, record in zip(pairs, records):
        shown.append({
            "id": pair["id"], "paper": pair["paper"], "section": pair["section"],
            "shape": pair["shape"], "style": pair["style"], "kind": pair["kind"],
            "split": "valid" if pair["paper"] in valid_papers else "train",
            "rough": pair["rough"], "original": pair["original"],
            "words_rough": len(pair["rough"].split()),
            "words_original": len(pair["original"].split()),
            "tokens": record["tokens"], "weight": record["weight"],
            # The author's edits, highlighted in the viewer.
            **({"diff": diff(pair["rough"], pair["original"])} if pair["kind"] == KIND else {}),
        })
    keep = ("unit_id", "paper", "section", "shape", "style", "kind", "reason", "detail", "rough")
    return {
        "records": shown,
        "rejected": [{k: r.get(k, "") for k in keep} for r in rejected],
        "counts": info["counts"],
    }


def print_summary(summary: dict, info: dict) -> None:
    """A rich table of the split and what was dropped."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="dataset")
    table.add_column("")
    table.add_column("train", justify="right")
    table.add_column("valid", justify="right")
    table.add_row("records", str(summary["train"]), str(summary["valid"]))
    table.add_row("papers", str(summary["papers_train"]), str(summary["papers_valid"]))
    for shape, per_split in sorted(info["counts"]["shape_by_split"].items()):
        table.add_row(f"  {shape}", str(per_split.get("train", 0)), str(per_split.get("valid", 0)))
    tokens = info["tokens"]
    Console().print(table)
    Console().print(
        f"tokens min/median/max {tokens['min']}/{tokens['median']}/{tokens['max']}; "
        f"dedup removed {summary['dedup_removed']}; rejected by gates {summary['rejected']}"
    )
