"""dataset stage: (rough, original) pairs -> ChatML train/valid records, a card and a viewer.

Every record is `{"messages": [system, user, assistant], id, paper, section, shape, style,
weight, tokens}`: one fixed persona system prompt, the user turn is the instruction plus the
rough draft, the assistant turn is the author's original verbatim. Papers never straddle the
split, so valid loss measures the voice on unseen papers rather than memorised paragraphs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

from voicetune.errors import UserError

CountTokens = Callable[[list[dict[str, str]]], int]

PAIR_FIELDS = ("id", "unit_id", "paper", "section", "shape", "style", "rough", "original")
# Word 3-gram shingles: long enough that two different paragraphs on one topic share few,
# short enough that a one-word edit in a 100-word paragraph changes only ~3 of ~98 shingles.
SHINGLE = 3
NEAR_DUP_JACCARD = 0.9


def run(cfg, inputs: dict[str, Path], out: Path, count_tokens: CountTokens | None = None) -> dict:
    """Build the dataset from `inputs["pairs"]` into `out`; return the summary dict."""
    from voicetune import card, viewer

    pairs_dir = Path(inputs["pairs"])
    pairs = read_jsonl(pairs_dir / "pairs.jsonl", required=PAIR_FIELDS)
    rejected = read_jsonl(pairs_dir / "rejected.jsonl", missing_ok=True)
    stats = read_stats(pairs_dir / "stats.json")
    kept, removed = dedup(pairs)
    valid_papers = split_papers(kept, cfg.data.valid_fraction, cfg.data.seed)
    count = count_tokens or model_token_counter(cfg)
    records = [to_record(p, cfg, count) for p in kept]
    splits = {
        "train": [r for r in records if r["paper"] not in valid_papers],
        "valid": [r for r in records if r["paper"] in valid_papers],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_splits(splits, out)
    info = card.write(out, splits, removed, rejected, stats,
                      styles=[s.name for s in cfg.data.rough_styles])
    viewer.write(out / "viewer", viewer_data(kept, valid_papers, records, rejected, info))
    summary = {
        "train": len(splits["train"]), "valid": len(splits["valid"]),
        "papers_train": len(info["papers"]["train"]), "papers_valid": len(info["papers"]["valid"]),
        "dedup_removed": len(removed), "rejected": len(rejected),
    }
    print_summary(summary, info)
    return summary


# ---------------------------------------------------------------- reading


def read_jsonl(path: Path, required: Iterable[str] = (), missing_ok: bool = False) -> list[dict]:
    """Rows of a JSONL file; a bad line or a missing field is a one-line UserError."""
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
        absent = [k for k in required if k not in row]
        if absent:
            raise UserError(f"{path}:{lineno}: missing field(s) {', '.join(absent)}")
        rows.append(row)
    return rows


def read_stats(path: Path) -> dict:
    """Generation stats (cost, tokens); a hand-made pairs folder may lack them."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg})") from None


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
    repeated (unit, style) row.
    """
    exact: dict[str, str] = {}
    by_shape: dict[str, list[tuple[str, frozenset]]] = defaultdict(list)
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
    key = normalize(pair["original"])
    if key in exact:
        return {"reason": "exact", "duplicate_of": exact[key], "similarity": 1.0}
    mine = shingles(pair["original"])
    for other_id, theirs in by_shape[pair["shape"]]:
        # Jaccard <= min/max of the set sizes: skip pairs that cannot reach the threshold.
        if min(len(mine), len(theirs)) < NEAR_DUP_JACCARD * max(len(mine), len(theirs)):
            continue
        sim = jaccard(mine, theirs)
        if sim >= NEAR_DUP_JACCARD:
            return {"reason": "near", "duplicate_of": other_id, "similarity": round(sim, 3)}
    exact[key] = pair["unit_id"]
    by_shape[pair["shape"]].append((pair["unit_id"], mine))
    return None


# ---------------------------------------------------------------- split


def split_papers(pairs: list[dict], valid_fraction: float, seed: int) -> set[str]:
    """The valid papers of these pairs (see valid_papers)."""
    papers = sorted({p["paper"] for p in pairs})
    if len(papers) < 2:
        raise UserError(
            f"dataset: {len(papers)} paper(s) after dedup; a paper-level train/valid split "
            "needs at least 2 papers"
        )
    return valid_papers(papers, valid_fraction, seed)


def valid_papers(papers: list[str], valid_fraction: float, seed: int) -> set[str]:
    """The papers with the smallest seeded hash: the same split for every data option.

    It depends only on the paper ids, so `data=sentence` and `data=shape_mix` hold out the
    same papers and their evaluations compare like with like.
    """
    # At least one paper on each side: 7 papers x 0.1 -> 1 valid, 6 train.
    n_valid = min(max(1, round(valid_fraction * len(papers))), len(papers) - 1)
    ranked = sorted(papers, key=lambda pid: hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest())
    return set(ranked[:n_valid])


# ---------------------------------------------------------------- records


def section_weight(section: str, weights: dict[str, float]) -> float:
    """The sampling weight of a section; unlisted sections get the 'unknown' weight."""
    # An empty map means uniform sampling.
    return float(weights.get(section, weights.get("unknown", 1.0)))


def to_record(pair: dict, cfg, count_tokens: CountTokens) -> dict:
    """One ChatML training record for a pair."""
    messages = [
        {"role": "system", "content": cfg.corpus.persona},
        {"role": "user", "content": cfg.data.instruction + "\n\n" + pair["rough"]},
        {"role": "assistant", "content": pair["original"]},
    ]
    return {
        "messages": messages, "id": pair["id"], "paper": pair["paper"],
        "section": pair["section"], "shape": pair["shape"], "style": pair["style"],
        "weight": section_weight(pair["section"], dict(cfg.data.section_weights)),
        "tokens": count_tokens(messages),
    }


def model_token_counter(cfg) -> CountTokens:
    """Token count of a whole record rendered with the model's chat template."""
    from voicetune.cache import Cache
    from voicetune.modelio import chat_token_counter, load_tokenizer

    return chat_token_counter(load_tokenizer(cfg.model, Cache(cfg.cache_dir)))


# ---------------------------------------------------------------- writing


def write_splits(splits: dict[str, list[dict]], out: Path) -> None:
    """train.jsonl, valid.jsonl and the `datasets` DatasetDict under hf/."""
    from datasets import Dataset, DatasetDict

    for name, rows in splits.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
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
            "shape": pair["shape"], "style": pair["style"],
            "split": "valid" if pair["paper"] in valid_papers else "train",
            "rough": pair["rough"], "original": pair["original"],
            "words_rough": len(pair["rough"].split()),
            "words_original": len(pair["original"].split()),
            "tokens": record["tokens"], "weight": record["weight"],
        })
    keep = ("unit_id", "paper", "section", "shape", "style", "reason", "detail", "rough")
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
