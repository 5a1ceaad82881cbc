"""bench/train.py --quick: both contenders train on the real model and report padding efficiency.

Efficiency is deterministic (seeded draws, packing and sampler); speed is not, so nothing
here asserts a time or a speedup.
"""

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
OURS, TRL = "voicetune packed", "TRL SFTTrainer defaults"


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """The bench's best-run table, one dict per contender, keyed by column header."""
    cache = tmp_path_factory.mktemp("bench-train-cache")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "train.py"), "--quick", "--cache", str(cache)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(header) and cells[0] in (OURS, TRL):
            table[cells[0]] = dict(zip(header, cells))
    return table


def test_both_contenders_report_real_and_computed_tokens(rows):
    assert set(rows) == {OURS, TRL}
    for row in rows.values():
        real, computed = (int(row[k].replace(",", "")) for k in ("real tokens", "computed tokens"))
        assert 0 < real <= computed
        assert float(row["padding efficiency"]) == pytest.approx(real / computed, abs=1e-3)
        assert 0 < float(row["epoch padding efficiency"]) <= 1
        assert row["timed steps"] == "1"


def test_packed_rows_waste_under_5_percent_and_padded_batches_waste_more(rows):
    ours, trl = rows[OURS], rows[TRL]
    assert float(ours["padding efficiency"]) >= 0.95
    assert float(ours["epoch padding efficiency"]) >= 0.95
    # Random batches of 4 records of 190-940 tokens pad to their longest: ~0.66 over an epoch.
    assert float(trl["epoch padding efficiency"]) < 0.8
    # Ours computes 4 rows of up to 1,024 tokens per step; TRL 4 records padded to the longest.
    assert int(ours["computed tokens"].replace(",", "")) <= 4 * 1024
