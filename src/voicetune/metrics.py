"""Pure metrics behind the `eval` stage: length, stopping, shape and style of generated rewrites.

Each generation is compared with the author's original: the seed's failure was a model that
writes one sentence and stops (length ratio near 0, `early_stop`), the opposite one a model
that never emits its end-of-turn token (`runaway`). Style signals are rates per 1k words, so
texts of any length compare; `style_distance` puts a model's rates next to the author's.
"""

from __future__ import annotations

import re

from voicetune.gates import PARAGRAPH_BREAK, paragraphs
from voicetune.shapes import split_sentences
from voicetune.shapes import word_count as words

__all__ = ["words", "sample_metrics", "shape_match", "summarize", "style_signals", "style_counts",
           "style_rates", "total", "style_distance", "chrf", "chrf_stats", "chrf_from_stats",
           "abstract_labels"]

# Under half the reference's words is the seed's "one sentence and stop" failure.
EARLY_STOP_RATIO = 0.5

# Hedges: modal verbs, epistemic adverbs and tentative reporting verbs. Academic authors
# hedge a lot, so both too few (overclaiming) and too many (mush) move away from the author.
HEDGES = (
    "may", "might", "could", "possibly", "perhaps", "probably", "presumably", "likely",
    "unlikely", "apparently", "potentially", "plausibly", "conceivably", "arguably",
    "suggest", "suggests", "suggested", "suggesting",
    "appear", "appears", "appeared", "seem", "seems", "seemed",
    "somewhat", "relatively", "tend to", "tends to", "tended to",
    "to some extent", "to some degree", "it is possible that",
)

# Phrases that mark text as machine-written. Domain words ("landscape" in ecology) also count,
# which is fine: style_distance compares with the author's own rate, so their use cancels out.
CLICHES = (
    # Inflated importance: the generic model's favourite way to say "matters".
    "plays a crucial role", "plays a pivotal role", "plays a key role", "crucial", "pivotal",
    "paramount", "a testament to",
    # Throat-clearing openers that add no content.
    "it is important to note", "it is worth noting", "it should be noted", "in today's",
    # Stock connectives chat models put at the head of every paragraph.
    "furthermore", "moreover", "additionally", "in conclusion", "overall,",
    # Ornamental metaphors.
    "delve", "delves", "delved", "delving", "in the realm of", "navigate the complexities",
    "rich tapestry", "tapestry", "paving the way", "shed light on", "sheds light on",
    "landscape", "journey",
    # Buzzwords: vague verbs and adjectives standing in for a specific claim.
    "underscore", "underscores", "underscored", "underscoring", "multifaceted", "intricate",
    "leverage", "leverages", "leveraging", "harness", "harnessing", "foster", "fosters",
    "fostering", "robust", "seamless", "seamlessly", "comprehensive", "nuanced", "showcase",
    "showcases", "holistic", "cutting-edge", "ever-evolving",
)

# Only unambiguous contractions: a bare "'s" is usually a possessive ("the author's"), so
# "'s" counts only in it's/that's/there's/what's/let's.
CONTRACTIONS = (
    "it's", "that's", "there's", "what's", "let's", "we're", "they're", "you're", "i'm",
    "we've", "they've", "i've", "can't", "don't", "doesn't", "isn't", "aren't", "wasn't",
    "weren't", "won't", "wouldn't", "couldn't", "shouldn't", "didn't", "hasn't", "haven't",
    "hadn't", "we'll", "they'll", "i'll", "it'll", "we'd", "they'd", "i'd",
)

RATES = ("hedging_per_1k", "cliches_per_1k", "contractions_per_1k", "mean_sentence_words")
# Each rate as (count, per what, scale): style_rates divides them, intervals resample them.
RATE_PARTS = {"hedging_per_1k": ("hedges", "words", 1000), "cliches_per_1k": ("cliches", "words", 1000),
              "contractions_per_1k": ("contractions", "words", 1000),
              "mean_sentence_words": ("words", "sentences", 1)}


def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern:
    """One whole-word, case-insensitive alternation; longest first so a phrase counts once."""
    alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![\w'])(?:{alternatives})(?![\w'])", re.IGNORECASE)


_HEDGE_RE = _phrase_pattern(HEDGES)
_CLICHE_RE = _phrase_pattern(CLICHES)
_CONTRACTION_RE = _phrase_pattern(CONTRACTIONS)
# Word processors and chat models write ’ (U+2019) where the lists have '.
_CURLY = str.maketrans({"\u2019": "'", "\u2018": "'"})

# A label candidate: up to 6 words then a colon, at the start of a line or after a sentence end.
# Spaces, not \s, between words: "Abstract\nBackground:" must not read as one label.
_LABEL_RE = re.compile(r"(?:^|(?<=[.!?]\s))[ \t]*([A-Z][\w-]*(?:,?[ \t]+[\w&-]+){0,5}):", re.MULTILINE)
# Lower-case words a title-case label may contain ("Design, Setting, and Participants").
_CONNECTORS = {"a", "an", "and", "&", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "vs", "with"}


def abstract_labels(text: str) -> list[str]:
    """Inline section labels ("Background:", "Conclusions and Relevance:") in order of appearance."""
    # Chat models often bold labels ("**Methods:**"); the label is still kept.
    plain = text.replace("**", "").replace("__", "")
    found = []
    for match in _LABEL_RE.finditer(plain):
        label = " ".join(match.group(1).split())
        # Title case rules out a sentence that merely holds a colon ("The results were clear:").
        if all(w[0].isupper() or w in _CONNECTORS for w in label.replace(",", "").split()):
            found.append(label)
    return found


def shape_match(output: str, reference: str, shape: str) -> bool:
    """Whether the output keeps the reference's structure (paragraph count, abstract labels)."""
    out_paras, ref_paras = paragraphs(output), paragraphs(reference)
    if shape == "section":
        return abs(out_paras - ref_paras) <= 1 and (ref_paras < 2 or out_paras >= 2)
    if shape == "abstract":
        kept = {label.casefold() for label in abstract_labels(output)}
        labels_ok = all(label.casefold() in kept for label in abstract_labels(reference))
        return labels_ok and (ref_paras <= 1 or out_paras == ref_paras)
    if shape in ("sentence", "paragraph"):
        return out_paras == ref_paras
    raise ValueError(f"shape {shape!r}: allowed are sentence, paragraph, section, abstract")


def sample_metrics(output: str, reference: str, shape: str, ended: bool) -> dict:
    """Length, stopping and shape metrics of one generation against its reference."""
    out_words, ref_words = words(output), words(reference)
    if ref_words == 0:
        raise ValueError("empty reference: every held-out unit has text")
    ratio = out_words / ref_words
    return {
        "output_words": out_words,
        "reference_words": ref_words,
        "length_ratio": ratio,
        "early_stop": ratio < EARLY_STOP_RATIO,
        "runaway": not ended,
        "shape_match": shape_match(output, reference, shape),
    }


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default, statistics' inclusive)."""
    pos = q * (len(values) - 1)
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def _rate(samples: list[dict], key: str) -> float | None:
    """Share of samples whose flag `key` is set; None for no samples."""
    return sum(bool(s[key]) for s in samples) / len(samples) if samples else None


def _stats(samples: list[dict]) -> dict:
    """Length-ratio quartiles and flag rates of a group of samples; None where n is 0."""
    ratios = sorted(s["length_ratio"] for s in samples)
    q1, median, q3 = (_quantile(ratios, q) if ratios else None for q in (0.25, 0.5, 0.75))
    return {
        "n": len(samples),
        "length_ratio_median": median,
        "length_ratio_q1": q1,
        "length_ratio_q3": q3,
        "early_stop_rate": _rate(samples, "early_stop"),
        "runaway_rate": _rate(samples, "runaway"),
        "shape_match_rate": _rate(samples, "shape_match"),
    }


def summarize(samples: list[dict]) -> dict:
    """Per-shape and overall stats of sample_metrics rows that also carry their `shape`."""
    shapes = sorted({s["shape"] for s in samples})
    return {
        "per_shape": {shape: _stats([s for s in samples if s["shape"] == shape]) for shape in shapes},
        "overall": _stats(samples),
    }


def style_counts(text: str) -> dict:
    """Words, sentences, hedges, clichés and contractions of one text: what style rates divide."""
    text = text.translate(_CURLY)
    return {
        "words": words(text),
        "sentences": sum(len(split_sentences(p)) for p in PARAGRAPH_BREAK.split(text) if p.strip()),
        "hedges": len(_HEDGE_RE.findall(text)),
        "cliches": len(_CLICHE_RE.findall(text)),
        "contractions": len(_CONTRACTION_RE.findall(text)),
    }


def style_rates(counts: dict) -> dict:
    """Rates per 1k words and mean sentence length from (summed) style_counts."""
    return {"words": counts["words"],
            **{key: counts[n] * scale / counts[per] if counts[per] else 0.0
               for key, (n, per, scale) in RATE_PARTS.items()}}


def total(counts: list[dict]) -> dict:
    """Key-wise sum of count dicts (texts pooled: a rate over all their words)."""
    keys = ("words", "sentences", "hedges", "cliches", "contractions")
    return {k: sum(c[k] for c in counts) for k in keys}


def style_signals(texts: list[str]) -> dict:
    """Hedging, cliché and contraction rates per 1k words and mean sentence length of the texts."""
    # Counts add up over texts (no phrase spans a paragraph break), so pooling counts is the
    # same as counting the texts joined by blank lines.
    return style_rates(total([style_counts(t) for t in texts]))


def style_distance(signals: dict, author: dict) -> float:
    """Mean Canberra distance |a-b| / (|a|+|b|) over the 4 style rates: 0 same style, 1 at most."""
    # Each term is in [0, 1] whatever the unit (per 1k words or words per sentence), and a rate
    # the author never uses (0 contractions) gives 1 instead of a division blow-up; 0/0 is 0.
    terms = [abs(signals[k] - author[k]) / (abs(signals[k]) + abs(author[k]) or 1.0) for k in RATES]
    return sum(terms) / len(terms)


def chrf_stats(outputs: list[str], references: list[str]) -> list[list[int]]:
    """Per-sample chrF n-gram statistics: summed over any subset, they give that subset's chrF."""
    from sacrebleu.metrics import CHRF

    if len(outputs) != len(references):
        raise ValueError(f"chrf: {len(outputs)} outputs but {len(references)} references")
    # sacrebleu's own paired bootstrap (sacrebleu.significance) resamples these statistics.
    return [list(map(int, s)) for s in CHRF()._extract_corpus_statistics(outputs, [references])]


def chrf_from_stats(stats: list[list[int]]) -> float:
    """Corpus chrF (0-100) of summed chrf_stats rows."""
    from sacrebleu.metrics import CHRF

    if not stats:
        return 0.0
    return CHRF()._compute_score_from_stats([sum(col) for col in zip(*stats)]).score


def chrf(outputs: list[str], references: list[str]) -> float:
    """Corpus chrF (0-100) of outputs against one reference each, via sacrebleu."""
    return chrf_from_stats(chrf_stats(outputs, references))
