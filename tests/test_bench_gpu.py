"""bench/gpu_train.py --tiny: every configuration gets a row; those that run on a CPU report sane figures.

Speed on a tiny CPU model means nothing, so nothing here asserts a time or a speedup; the GPU
figures come from a lent GPU (bench/results/gpu_train.md).
"""

import subprocess
import sys

import pytest

from conftest import ROOT

BENCH = ROOT / "bench" / "gpu_train.py"
CPU_CONFIGS = ("padded", "grouped-sdpa", "packed-sdpa")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The bench's table (one dict per configuration) and the results file it appended to."""
    out = tmp_path_factory.mktemp("bench-gpu") / "gpu_train.md"
    done = subprocess.run([sys.executable, str(BENCH), "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows, out


@pytest.mark.slow  # the tiny bench: ~1 min on 2 cores, three trainings plus imports
def test_every_configuration_has_a_row(run):
    rows, _ = run
    assert list(rows) == ["padded", "grouped-sdpa", "packed-sdpa", "packed-flex", "unsloth-grouped", "unsloth-packed"]
    assert rows["packed-flex"]["status"].startswith("skipped")  # no CPU backward
    assert rows["unsloth-grouped"]["status"] == "skipped: needs CUDA and unsloth"


@pytest.mark.slow
def test_cpu_configurations_report_positive_speed_and_efficiency_within_bounds(run):
    rows, _ = run
    for name in CPU_CONFIGS:
        row = rows[name]
        assert row["status"] == "ok"
        assert float(row["real tok/s"].replace(",", "")) > 0
        assert float(row["computed tok/s"].replace(",", "")) >= float(row["real tok/s"].replace(",", ""))
        assert 0 < float(row["efficiency"]) <= 1 and 0 < float(row["epoch efficiency"]) <= 1
        assert float(row["minutes, 2 epochs"].replace(",", "")) > 0
    assert rows["padded"]["vs padded"] == "1.00"
    assert rows["padded"]["packed isolation"] == "-"  # padded batches never share a row


@pytest.mark.slow
def test_packing_fills_rows_and_stays_isolated(run):
    rows, _ = run
    # Seed-like lengths in random batches of 4 pad to ~0.55; packed rows fill > 0.9 of their width.
    assert float(rows["padded"]["epoch efficiency"]) < 0.75 < float(rows["packed-sdpa"]["epoch efficiency"])
    # An example packed behind another moves its logits by < 1% of what attending to it would.
    assert float(rows["packed-sdpa"]["packed isolation"]) < 0.01


@pytest.mark.slow
def test_results_section_is_appended(run):
    _, out = run
    text = out.read_text()
    assert text.startswith("\n## ") and "CPU:" in text and "| padded | ok |" in text


def test_refuses_a_cpu_run_without_tiny(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH), "--out", str(tmp_path / "x.md")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "--tiny" in done.stderr
    assert not (tmp_path / "x.md").exists()
