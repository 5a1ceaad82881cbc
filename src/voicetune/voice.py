"""Voice fidelity of rewrites: does it read like the author, keep the draft's facts, and not copy?

- **Author-likeness**: a classifier trained at eval time on the training papers alone, the
  author's passages against the rough drafts made from them, scores any text with P(author).
  It is trusted only as far as it separates held-out originals from their drafts (ROC AUC on
  papers it never saw); below `eval.likeness_min_auc` no score is reported. A rewrite "moves
  toward the reference" by (score(output) - score(rough)) / (score(reference) - score(rough)):
  0 = still reads like the draft, 1 = reads like the author's own passage.
- **Meaning kept**: every number, statistic and citation marker of the draft is in the output.
- **Memorization**: word 8-grams of the output found in the training split's author texts, and
  the longest span copied from them; the held-out reference is the baseline (it copies nothing).

The classifier learns what separates the author from *these* drafts: with the offline
de-polisher that is partly its stock phrases, so a high score means "none of the draft's
tells, and the author's own n-grams", not a human judgement of voice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from voicetune import intervals, metrics
from voicetune.gates import numbers
from voicetune.intervals import Boot
from voicetune.records import draft, reference

# The texts scored per draft, in the order a rewrite should climb: the draft, the base model's
# and the tuned model's rewrite, the author's own passage.
SOURCES = ("rough", "base", "tuned", "reference")
# Word n-grams that count as copied: 8 words in a row is past shared phrasing ("the results of
# this study show that") and is the unit of the memorization literature's extraction tests.
COPY_N = 8
# A reference scored within 0.1 of its rough draft leaves the classifier no direction to move
# in: the "moved toward the reference" ratio would divide by noise, so that draft is left out.
MIN_GAP = 0.1
# Lower-cased words, punctuation dropped: a copy that only changes case or commas is a copy.
_WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")


# ---------------------------------------------------------------- author-likeness


def fit_likeness(author: list[str], drafts: list[str], seed: int):
    """TF-IDF char 2-5 + word 1-2 n-grams -> logistic regression, author = 1, draft = 0."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    # Characters within words catch spelling, punctuation and morphology habits; words and
    # word pairs catch connectives and phrasing ("Crucially,", "we find"). min_df=2 drops
    # n-grams of one passage only: those are content, shared by a passage and its drafts.
    features = make_union(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=2))
    # Three rough styles per passage: balanced weights keep the prior at even odds.
    model = make_pipeline(features, LogisticRegression(class_weight="balanced", max_iter=2000,
                                                        random_state=seed))
    return model.fit(author + drafts, [1] * len(author) + [0] * len(drafts))


def passages(records: list[dict]) -> tuple[list[str], list[str]]:
    """The distinct author passages (assistant turns) and rough drafts (user turns) of records."""
    return sorted({reference(r) for r in records}), sorted({draft(r) for r in records})


def auc(model, author: list[str], drafts: list[str]) -> float:
    """ROC AUC of the model's P(author) on author passages against drafts."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([1] * len(author) + [0] * len(drafts), score(model, author + drafts)))


def score(model, texts: list[str]) -> list[float]:
    """P(author) of each text."""
    return [round(float(p), 4) for p in model.predict_proba(texts)[:, 1]] if texts else []


@dataclass
class Judge:
    """The likeness classifier with its held-out check; `reason` says why its scores are withheld."""

    model: Any
    auc: float | None
    min_auc: float
    trained_on: dict
    tested_on: dict
    reason: str | None = None

    def scores(self, texts: list[str]) -> list[float | None]:
        """P(author) per text, or None for each when the classifier failed its check."""
        return [None] * len(texts) if self.reason else score(self.model, texts)

    def card(self) -> dict:
        """What eval.json says about the classifier."""
        return {"auc": None if self.auc is None else round(self.auc, 4), "min_auc": self.min_auc,
                "usable": self.reason is None, "reason": self.reason,
                "trained_on": self.trained_on, "tested_on": self.tested_on,
                "features": "tf-idf char_wb 2-5 + word 1-2 -> logistic regression"}


def judge(train: list[dict], held_out: list[dict], min_auc: float, seed: int) -> Judge:
    """Fit on the training papers' records, check on held-out ones; refuse below min_auc."""
    author, drafts = passages(train)
    test_author, test_drafts = passages(held_out)
    counts = {"author": len(author), "drafts": len(drafts)}
    tested = {"author": len(test_author), "drafts": len(test_drafts)}
    if not (author and drafts and test_author and test_drafts):
        return Judge(None, None, min_auc, counts, tested,
                     "no author passages or drafts to train or test the classifier on")
    model = fit_likeness(author, drafts, seed)
    value = auc(model, test_author, test_drafts)
    reason = None if value >= min_auc else (
        f"held-out ROC AUC {value:.3f} < eval.likeness_min_auc {min_auc}: the classifier cannot "
        "tell the author's unseen passages from their drafts, so its scores would not mean voice")
    return Judge(model, value, min_auc, counts, tested, reason)


def moved(output: float | None, rough: float | None, ref: float | None) -> float | None:
    """(output - rough) / (reference - rough): 0 = as the draft, 1 = as the reference; None if flat."""
    if output is None or rough is None or ref is None or abs(ref - rough) < MIN_GAP:
        return None
    return round((output - rough) / (ref - rough), 4)


# ---------------------------------------------------------------- meaning kept


def markers_kept(rough: str, output: str) -> tuple[int, int]:
    """(markers in the draft, how many of them the output has): numbers, statistics, citations."""
    wanted = numbers(rough)
    return len(wanted), len(wanted & numbers(output))


# ---------------------------------------------------------------- memorization


def tokens(text: str) -> list[str]:
    """Lower-cased words without punctuation."""
    return _WORD.findall(text.lower())


class CopyIndex:
    """The training split's author texts, to find what an output copies from them."""

    def __init__(self, texts: list[str], n: int = COPY_N):
        docs = [tokens(t) for t in texts]
        self.n = n
        self.grams = {tuple(d[i: i + n]) for d in docs for i in range(len(d) - n + 1)}
        # One line per text, words between spaces: a span matches whole words in one text only.
        self.joined = "\n".join(" " + " ".join(d) + " " for d in docs)

    def _occurs(self, span: list[str]) -> bool:
        if len(span) >= self.n and tuple(span[-self.n:]) not in self.grams:
            return False  # cheap reject: a longer copy holds only copied n-grams
        return " " + " ".join(span) + " " in self.joined

    def longest(self, words: list[str]) -> int:
        """Length in words of the longest span of `words` found verbatim in one training text."""
        best = end = 0
        for start in range(len(words)):
            # words[start:end] occurs whenever words[start-1:end] did: end never moves back.
            end = max(end, start)
            while end < len(words) and self._occurs(words[start: end + 1]):
                end += 1
            best = max(best, end - start)
        return best

    def copied(self, text: str) -> dict:
        """The text's word n-grams, how many are in the training texts, its longest copied span."""
        words = tokens(text)
        grams = [tuple(words[i: i + self.n]) for i in range(len(words) - self.n + 1)]
        return {"ngrams": len(grams), "copied_ngrams": sum(g in self.grams for g in grams),
                "longest_copied_span": self.longest(words)}


# ---------------------------------------------------------------- per draft and summaries


def draft_rows(texts: list[str], records: list[dict], judge: Judge, copies: CopyIndex | None) -> list[dict]:
    """Per-draft measures of one text source; meaning and memorization only with `copies`."""
    rows = []
    for text, record, likeness in zip(texts, records, judge.scores(texts)):
        row = {"shape": record["shape"], "likeness": likeness, **metrics.style_counts(text)}
        if copies is not None:
            n, kept = markers_kept(draft(record), text)
            row.update(markers=n, markers_kept=kept, **copies.copied(text))
        rows.append(row)
    return rows


def add_moved(rows: list[dict], rough: list[dict], ref: list[dict]) -> None:
    """Each output row's move from its draft's likeness toward its reference's."""
    for row, r, f in zip(rows, rough, ref):
        row["moved_toward_reference"] = moved(row["likeness"], r["likeness"], f["likeness"])


def _likeness(rows: list[dict], boot: Boot) -> dict | None:
    if rows and rows[0]["likeness"] is None:
        return None  # the classifier was refused: its reason is in voice.classifier
    shapes = sorted({r["shape"] for r in rows})
    return {"overall": intervals.mean([r["likeness"] for r in rows], boot),
            "per_shape": {s: intervals.mean([r["likeness"] for r in rows if r["shape"] == s], boot)
                          for s in shapes}}


def _with_markers(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["markers"]]


def source_summary(rows: list[dict], boot: Boot) -> dict:
    """Likeness (per shape), move toward the reference, meaning kept, memorization of one source."""
    out: dict = {"likeness": _likeness(rows, boot)}
    if rows and "moved_toward_reference" in rows[0]:
        defined = [r["moved_toward_reference"] for r in rows if r["moved_toward_reference"] is not None]
        out["moved_toward_reference_median"] = intervals.median(defined, boot)
    if rows and "markers" in rows[0]:
        marked = _with_markers(rows)
        out["meaning"] = {
            "all_kept_rate": intervals.mean([r["markers_kept"] == r["markers"] for r in marked], boot),
            "markers_kept_share": intervals.pooled([r["markers_kept"] for r in marked],
                                                   [r["markers"] for r in marked], boot)}
        spans = [r["longest_copied_span"] for r in rows]
        out["memorization"] = {
            f"copied_{COPY_N}gram_share": intervals.pooled([r["copied_ngrams"] for r in rows],
                                                         [r["ngrams"] for r in rows], boot),
            "longest_copied_span": {"max": max(spans, default=0), "median": intervals.median(spans, boot)}}
    return out


def paired(a: list[dict], b: list[dict], boot: Boot) -> dict:
    """Model a minus model b on the same drafts: per-draft differences, resampled together."""
    out = {"length_ratio_median": intervals.paired_median(_col(a, "length_ratio"), _col(b, "length_ratio"), boot),
           # |ratio - 1|: how far from the reference's length, whichever way; negative = a closer.
           "length_miss_mean": intervals.paired_mean([abs(x - 1) for x in _col(a, "length_ratio")],
                                                     [abs(x - 1) for x in _col(b, "length_ratio")], boot)}
    for key, count in (("hedging_per_1k", "hedges"), ("cliches_per_1k", "cliches")):
        out[key] = intervals.paired_pooled(_col(a, count), _col(a, "words"), _col(b, count), _col(b, "words"),
                                           boot, scale=1000)
    if a and a[0]["likeness"] is not None:
        out["likeness_mean"] = intervals.paired_mean(_col(a, "likeness"), _col(b, "likeness"), boot)
        both = [(x, y) for x, y in zip(_col(a, "moved_toward_reference"), _col(b, "moved_toward_reference"))
                if x is not None and y is not None]
        out["moved_toward_reference_median"] = intervals.paired_median(*_unzip(both), boot)
    if a and "chrf_stats" in a[0]:
        out["chrf"] = intervals.of_stat(lambda idx: _chrf(a, idx) - _chrf(b, idx), len(a), boot)
    marked = [(x, y) for x, y in zip(a, b) if x["markers"]]
    ma, mb = _unzip(marked)
    out["all_kept_rate"] = intervals.paired_mean([r["markers_kept"] == r["markers"] for r in ma],
                                                 [r["markers_kept"] == r["markers"] for r in mb], boot)
    out["markers_kept_share"] = intervals.paired_pooled(_col(ma, "markers_kept"), _col(ma, "markers"),
                                                        _col(mb, "markers_kept"), _col(mb, "markers"), boot)
    return out


def _chrf(rows: list[dict], idx: list[int]) -> float:
    """Corpus chrF of the drafts at idx (a resample repeats some)."""
    return metrics.chrf_from_stats([rows[i]["chrf_stats"] for i in idx])


def _col(rows: list[dict], key: str) -> list:
    return [r[key] for r in rows]


def _unzip(pairs: list[tuple]) -> tuple[list, list]:
    return [p[0] for p in pairs], [p[1] for p in pairs]
