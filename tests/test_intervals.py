"""Bootstrap intervals: the value inside its interval, repeatable, paired differences."""

import random

from voicetune import intervals
from voicetune.intervals import Boot

BOOT = Boot(n_boot=2000, seed=0)


def sample(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(1.0, 0.3) for _ in range(n)]


def test_mean_and_median_lie_inside_their_intervals():
    values = sample(40)
    for est in (intervals.mean(values, BOOT), intervals.median(values, BOOT)):
        lo, hi = est["ci"]
        assert lo < est["value"] < hi and est["n"] == 40
        assert 0.05 < hi - lo < 0.5  # about 4 standard errors of 0.3 / sqrt(40) = 0.047


def test_more_drafts_narrow_the_interval():
    def width(n):
        lo, hi = intervals.mean(sample(n), BOOT)["ci"]
        return hi - lo

    assert width(160) < width(40) < width(10)


def test_same_seed_same_interval_other_seed_close():
    values = sample(30)
    assert intervals.mean(values, BOOT) == intervals.mean(values, BOOT)
    other = intervals.mean(values, Boot(n_boot=2000, seed=7))
    assert abs(other["ci"][0] - intervals.mean(values, BOOT)["ci"][0]) < 0.03


def test_a_rate_of_flags():
    est = intervals.mean([True] * 15 + [False] * 5, BOOT)
    assert est["value"] == 0.75 and est["ci"][0] < 0.75 < est["ci"][1] and est["n"] == 20
    assert intervals.mean([True] * 5, BOOT)["ci"] == [1.0, 1.0]


def test_pooled_rate_per_1k_words():
    est = intervals.pooled([2, 0, 4], [100, 200, 100], BOOT, scale=1000)
    assert est["value"] == 15.0  # 6 per 400 words
    assert est["ci"][0] <= 15.0 <= est["ci"][1]


def test_nothing_to_estimate_is_none():
    assert intervals.mean([], BOOT) == {"value": None, "ci": None, "n": 0}
    assert intervals.pooled([0, 0], [0, 0], BOOT)["value"] is None


def test_paired_difference_keeps_its_sign_where_unpaired_intervals_overlap():
    base = sample(20)  # wide draft-to-draft spread (sd 0.3) ...
    tuned = [b + 0.1 + 0.02 * ((i % 3) - 1) for i, b in enumerate(base)]  # ... but tuned is 0.1 above on each
    diff = intervals.paired_mean(tuned, base, BOOT)
    assert abs(diff["value"] - 0.1) < 0.005 and diff["ci"][0] > 0.05
    a, b = intervals.mean(tuned, BOOT), intervals.mean(base, BOOT)
    assert a["ci"][0] < b["ci"][1]  # unpaired, the two models' intervals overlap
    assert intervals.paired_median(base, tuned, BOOT)["ci"][1] < 0  # b - a: the other sign


def test_paired_pooled_rates():
    diff = intervals.paired_pooled([5, 5, 5], [100, 100, 100], [1, 1, 1], [100, 100, 100], BOOT, scale=1000)
    assert diff == {"value": 40.0, "ci": [40.0, 40.0], "n": 3}
