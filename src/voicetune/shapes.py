"""Cutting extracted papers into units of a response shape, within word limits and a token budget.

Shapes: `sentence`, `paragraph`, `section` (two or more consecutive paragraphs of one
section) and `abstract`. The seed's lesson: a model trained only on sentences writes one
sentence and stops, so the shape mix decides how long the tuned model writes.
"""

from __future__ import annotations

import random
import re

from voicetune.cache import digest
from voicetune.records import chat_messages

# Split after . ! ? followed by space + capital/digit/quote/bracket, but not after common
# abbreviations ("et al.", "e.g.", "Fig.") that would cut a sentence in two.
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9“\"(\[])")
_ABBREV = re.compile(r"(\bet al|\be\.g|\bi\.e|\bvs|\bFig|\bFigs|\bEq|\bRef|\bNo|\bca|\bcf|\bapprox|\b[A-Z])\.$")


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph (abbreviation-aware, no NLP model needed)."""
    parts, current = [], ""
    for piece in _SENT_END.split(paragraph.strip()):
        current = f"{current} {piece}" if current else piece
        if not _ABBREV.search(current):
            parts.append(current)
            current = ""
    if current:
        parts.append(current)
    return parts


def word_count(text: str) -> int:
    return len(text.split())


def _unit(paper: str, section: str, shape: str, paragraphs: list[str]) -> dict:
    text = "\n\n".join(paragraphs)
    return {
        "id": digest([paper, section, shape, text])[:16],
        "paper": paper, "section": section, "shape": shape, "text": text,
        "words": word_count(text), "paragraphs": len(paragraphs),
    }


def candidates(paper: dict, shape: str) -> list[dict]:
    """Every unit of `shape` one paper offers, before limits and budgets."""
    out = []
    for section in paper["sections"]:
        name, paras = section["name"], section["paragraphs"]
        if shape == "abstract":
            if name == "abstract" and paras:
                out.append(_unit(paper["id"], name, shape, paras))
        elif name == "abstract":
            continue  # abstracts are their own shape; their paragraphs stay out of the others
        elif shape == "paragraph":
            out += [_unit(paper["id"], name, shape, [p]) for p in paras]
        elif shape == "section" and len(paras) >= 2:
            out.append(_unit(paper["id"], name, shape, paras))
        elif shape == "sentence":
            out += [_unit(paper["id"], name, shape, [s]) for p in paras for s in split_sentences(p)]
    return out


class Budget:
    """Token budget of one training record: persona + instruction + rough draft + original."""

    def __init__(self, cfg, count_tokens, count_text):
        self.max_tokens = cfg.data.max_tokens or cfg.train.seq_len
        # The rough draft may be up to max_length_ratio x the original (1.6 by default).
        self.ratio = cfg.data.gates.max_length_ratio
        self.count_text = count_text
        self.overhead = count_tokens(chat_messages(cfg.corpus.persona, cfg.data.instruction, "", ""))

    def fits(self, tokens: int) -> bool:
        return self.overhead + tokens * (1 + self.ratio) <= self.max_tokens


def split_to_fit(unit: dict, paragraphs: list[str], budget: Budget) -> list[dict]:
    """Cut a too-long section into runs of >= 2 whole paragraphs that fit the budget."""
    chunks, run = [], []
    for para in paragraphs:
        trial = run + [para]
        if run and not budget.fits(budget.count_text("\n\n".join(trial))):
            chunks.append(run)
            run = [para]
        else:
            run = trial
    chunks.append(run)
    return [_unit(unit["paper"], unit["section"], "section", c) for c in chunks if len(c) >= 2]


def within_limits(units: list[dict], shape: str, cfg, budget: Budget, dropped: list) -> list[dict]:
    """Apply per-shape word limits and the token budget; record every drop with its reason."""
    lim = cfg.data.limits.get(shape)
    kept = []
    for unit in units:
        if lim and unit["words"] < lim.min_words:
            dropped.append({**unit, "reason": f"under {lim.min_words} words"})
            continue
        unit["tokens"] = budget.count_text(unit["text"])
        if budget.fits(unit["tokens"]) and not (lim and unit["words"] > lim.max_words):
            kept.append(unit)
        elif shape == "section":
            parts = split_to_fit(unit, unit["text"].split("\n\n"), budget)
            for part in parts:
                part["tokens"] = budget.count_text(part["text"])
            kept += [p for p in parts if not lim or lim.min_words <= p["words"] <= lim.max_words]
            if not parts:
                dropped.append({**unit, "reason": "too long: no split into 2+ whole paragraphs fits the budget"})
        else:
            dropped.append({**unit, "reason": f"too long: {unit['tokens']} tokens, over the budget of "
                            f"{budget.max_tokens}" if not budget.fits(unit["tokens"]) else f"over {lim.max_words} words"})
    return kept


def targets(shapes: dict, max_units: int) -> dict[str, int]:
    """Units wanted per shape: a value <= 1 is a fraction of max_units, > 1 a count."""
    return {s: int(round(v * max_units)) if v <= 1 else int(v) for s, v in shapes.items() if v > 0}


def select(pool: list[dict], want: int, seed: int) -> list[dict]:
    """A seeded sample of `want` units (all of them when the corpus has fewer)."""
    if len(pool) <= want:
        return pool
    return sorted(random.Random(seed).sample(pool, want), key=lambda u: u["id"])


def build_units(cfg, papers: list[dict], count_tokens, count_text,
                wants: dict[str, int]) -> tuple[list[dict], list[dict], dict]:
    """Up to `wants[shape]` units of each shape, the dropped ones, and per-shape counts."""
    budget = Budget(cfg, count_tokens, count_text)
    units, dropped, report = [], [], {}
    for shape, want in wants.items():
        pool = [u for p in papers for u in candidates(p, shape)]
        pool = within_limits(pool, shape, cfg, budget, dropped)
        chosen = select(pool, want, cfg.data.seed)
        units += chosen
        report[shape] = {"wanted": want, "available": len(pool), "chosen": len(chosen)}
    return units, dropped, report
