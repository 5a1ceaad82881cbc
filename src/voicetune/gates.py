"""Quality gates for (original, rough) pairs: pure functions, each rejection named by its gate.

Gate order matters only for which reason a pair gets when several fail: cheap, decisive
checks (empty, truncated, refusal) come before the ones that compare the two texts.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, NamedTuple, Optional

REASONS = (
    "empty", "truncated", "refusal", "length_ratio", "paragraph_count", "numbers_missing",
    "too_similar",
)

PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Citation markers: [12], [3, 4], [1-3], [2–5].
CITATION = re.compile(r"\[\d+(?:\s*[-–,]\s*\d+)*\]")
# 0.05, 95%, 1,240, .001 (as in p < .001), 3.2e-4, 2019; not the digits of a word like "H2O".
NUMBER = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?<=\d)(?:[eE][-+]?\d+)?%?(?![\w])"
)
# Meta-text a model adds instead of (or around) the rewrite. Checked at the start of the draft
# and anywhere for the "as an AI" family.
REFUSAL_START = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry[,!.]|i can'?t|i cannot|i can not|i won'?t|i'?m unable|"
    r"i am unable|sure[,!.]|certainly[,!.]|of course[,!.]|absolutely[,!.]|here is|here'?s|"
    r"below is|the rewritten|rewritten (text|version))",
    re.IGNORECASE,
)
REFUSAL_ANYWHERE = re.compile(r"as an ai\b|as a language model|i hope this helps", re.IGNORECASE)


class Verdict(NamedTuple):
    reason: str
    detail: str


def words(text: str) -> list[str]:
    """Whitespace-separated words."""
    return text.split()


def paragraphs(text: str) -> int:
    """Number of non-empty blank-line-separated paragraphs."""
    return sum(1 for p in PARAGRAPH_BREAK.split(text.strip()) if p.strip())


def numbers(text: str) -> set[str]:
    """Numbers, statistics and citation markers, normalised so 1,240 == 1240 and 0.05 == .05."""
    found = {re.sub(r"\s+", "", m) for m in CITATION.findall(text)}
    for match in NUMBER.finditer(CITATION.sub(" ", text)):
        token = match.group(0).replace(",", "").rstrip("%")
        found.add(token[1:] if token.startswith("0.") else token)
    return found


def similarity(original: str, rough: str, floor: float = 1.0) -> float:
    """difflib ratio on lower-cased words (1.0 = identical); an upper bound if that is <= floor."""
    matcher = difflib.SequenceMatcher(None, original.lower().split(), rough.lower().split(),
                                      autojunk=False)
    # quick_ratio is an O(n) upper bound; the exact ratio is O(n^2) on 2,000-word sections.
    bound = matcher.quick_ratio()
    return bound if bound <= floor else matcher.ratio()


def evaluate(original: str, rough: Optional[str], finish_reason: Optional[str],
             gates: Any) -> Optional[Verdict]:
    """The first failing gate as (reason, detail), or None when the pair is accepted."""
    if not rough or not rough.strip():
        return Verdict("empty", "the model returned no text")
    if finish_reason == "length":
        return Verdict("truncated", "finish_reason=length (hit the request's token cap)")
    if gates.reject_refusals and (REFUSAL_START.search(rough) or REFUSAL_ANYWHERE.search(rough)):
        return Verdict("refusal", rough.strip()[:80])
    return _compare(original, rough, gates)


def _compare(original: str, rough: str, gates: Any) -> Optional[Verdict]:
    ratio = len(words(rough)) / max(1, len(words(original)))
    if not gates.min_length_ratio <= ratio <= gates.max_length_ratio:
        return Verdict("length_ratio", f"{ratio:.2f} outside [{gates.min_length_ratio}, "
                                       f"{gates.max_length_ratio}]")
    if gates.same_paragraph_count and paragraphs(rough) != paragraphs(original):
        return Verdict("paragraph_count", f"{paragraphs(original)} -> {paragraphs(rough)}")
    if gates.keep_numbers:
        missing = sorted(numbers(original) - numbers(rough))
        if missing:
            return Verdict("numbers_missing", ", ".join(missing[:10]))
    score = similarity(original, rough, floor=gates.max_similarity)
    if score > gates.max_similarity:
        return Verdict("too_similar", f"similarity {score:.3f} > {gates.max_similarity}")
    return None


def check(original: str, rough: Optional[str], finish_reason: Optional[str],
          gates: Any) -> Optional[str]:
    """The reason the pair is rejected, or None when every gate passes."""
    verdict = evaluate(original, rough, finish_reason, gates)
    return verdict.reason if verdict else None
