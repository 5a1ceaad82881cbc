"""The same paper in two files (a .docx draft beside its published PDF): found by shared text.

Two files are one paper when most word 4-grams of the shorter one occur in the other. Distinct
papers share few exact 4-grams (the 7 demo papers, 21 pairs: at most 14%, for two Manubot
papers sharing template text; the other 20 under 0.5%), while a draft and its published
version share most of theirs: with 8% of its words changed and a fifth of its paragraphs cut,
a demo paper still shares 67% (a changed word breaks 4 grams: 0.92^4 = 0.72). The threshold,
50%, sits between the two (it is reached at ~16% of the words changed).
The better source is kept: one that states its structure (Word, ODT, LaTeX, Markdown) over
a PDF whose layout had to be reconstructed, then the one with more prose.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicetune.stages.extract import Paper

GRAM = 4
SAMPLE = 4  # keep 1 in SAMPLE 4-grams by hash: 4x less work, the same estimate on 1,000+ grams
SAME_PAPER = 0.5
# lower = better source
SOURCE_RANK = {".docx": 0, ".docm": 0, ".odt": 1, ".tex": 2, ".md": 3, ".markdown": 3, ".qmd": 3,
               ".pdf": 4}
_WORD = re.compile(r"\w+")


def grams(paper: Paper) -> frozenset[int]:
    """A hash sample of the word 4-grams of the paper's prose."""
    words = _WORD.findall(" ".join(t for s in paper.sections for t in s.paragraphs).lower())
    hashed = (hash(tuple(words[i:i + GRAM])) for i in range(len(words) - GRAM + 1))
    return frozenset(h for h in hashed if h % SAMPLE == 0)


def overlap(a: frozenset, b: frozenset) -> float:
    """|a & b| / min(|a|, |b|): how much of the shorter text the longer one holds."""
    return len(a & b) / min(len(a), len(b)) if a and b else 0.0


def rank(paper: Paper) -> tuple[int, int]:
    """Sort key: better source first, then more words."""
    suffix = "." + paper.source.rsplit(".", 1)[-1].lower()
    return (SOURCE_RANK.get(suffix, len(SOURCE_RANK)), -paper.words)


def same_papers(papers: list[Paper]) -> dict[str, tuple[Paper, float]]:
    """paper id -> (the paper kept instead, overlap) for every paper that repeats a better one."""
    order = sorted(papers, key=rank)
    kept: list[tuple[Paper, frozenset]] = []
    dropped = {}
    for paper in order:
        mine = grams(paper)
        match = max(((other, overlap(mine, theirs)) for other, theirs in kept),
                    key=lambda m: m[1], default=(None, 0.0))
        if match[1] >= SAME_PAPER:
            dropped[paper.id] = match
        else:
            kept.append((paper, mine))
    return dropped
