"""Percentile bootstrap intervals over the held-out drafts: every eval number gets its 95% range.

The demo holds out one paper (20-40 drafts), so a rate of 0.6 on 20 drafts is really anything
from ~0.4 to ~0.8. Tuned vs base is paired: both models rewrote the same drafts, so each resample
draws the same drafts for both and the difference's interval leaves out draft-to-draft variation.
Every estimate with one `Boot` uses the same resamples, so estimates are comparable with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

# Percentile interval: 2.5th and 97.5th percentile of the resampled statistic.
LEVEL = 0.95


@dataclass(frozen=True)
class Boot:
    """How to resample: `n_boot` resamples of the drafts, drawn from `seed`."""

    n_boot: int
    seed: int


def estimate(stat: Callable, n: int, boot: Boot) -> dict:
    """{"value", "ci", "n"}: stat(indices) on all n items and its percentile interval over resamples."""
    import numpy as np

    value = stat(np.arange(n)) if n else None
    if value is None:
        return {"value": None, "ci": None, "n": n}
    rows = np.random.default_rng(boot.seed).integers(0, n, size=(boot.n_boot, n))
    # A resample can leave a ratio undefined (no markers drawn): it is skipped, not counted as 0.
    draws = [d for d in (stat(row) for row in rows) if d is not None]
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return {"value": _round(value), "ci": [_round(lo), _round(hi)], "n": n}


def _round(x: float) -> float:
    return round(float(x), 4)


def _array(values: Sequence[float]):
    import numpy as np

    return np.asarray(values, dtype=float)


def mean(values: Sequence[float], boot: Boot) -> dict:
    """Mean (a rate, for 0/1 flags) with its interval."""
    v = _array(values)
    return estimate(lambda i: v[i].mean(), len(v), boot)


def median(values: Sequence[float], boot: Boot) -> dict:
    """Median with its interval."""
    import numpy as np

    v = _array(values)
    return estimate(lambda i: np.median(v[i]), len(v), boot)


def pooled(num: Sequence[float], den: Sequence[float], boot: Boot, scale: float = 1.0) -> dict:
    """scale x sum(num) / sum(den) over the drafts (e.g. clichés per 1k words); None if den sums to 0."""
    a, b = _array(num), _array(den)

    def ratio(i):
        d = b[i].sum()
        return scale * a[i].sum() / d if d else None

    return estimate(ratio, len(a), boot)


def paired_mean(a: Sequence[float], b: Sequence[float], boot: Boot) -> dict:
    """Mean per-draft difference a - b (same drafts, same resamples) with its interval."""
    return mean(_array(a) - _array(b), boot)


def paired_median(a: Sequence[float], b: Sequence[float], boot: Boot) -> dict:
    """Median per-draft difference a - b with its interval."""
    return median(_array(a) - _array(b), boot)


def paired_pooled(num_a, den_a, num_b, den_b, boot: Boot, scale: float = 1.0) -> dict:
    """Difference of two pooled ratios (model a minus model b) over the same resampled drafts."""
    na, da, nb, db = map(_array, (num_a, den_a, num_b, den_b))

    def diff(i):
        if not da[i].sum() or not db[i].sum():
            return None
        return scale * (na[i].sum() / da[i].sum() - nb[i].sum() / db[i].sum())

    return estimate(diff, len(na), boot)


def of_stat(stat: Callable[[list[int]], float | None], n: int, boot: Boot) -> dict:
    """Interval of any statistic of a list of draft indices (chrF, style distance)."""
    return estimate(lambda i: stat(i.tolist()), n, boot)
