"""bench/gpu_check.sh, the prepared device check, in its `tiny` mode on this CPU: the same lines
(pipeline, placement report, 8B-shaped table in tiny form) with a 1-step training on a corpus of
three short papers, so every generation is short."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_device_check_runs_in_tiny_mode_and_reports_where_each_stage_ran(tmp_path):
    from docx_factory import short_papers

    corpus = short_papers(tmp_path / "corpus")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": str(ROOT / "src"),
           "GPU_CHECK_ARGS": f"corpus=dir corpus.path={corpus} data.valid_fraction=0.34"}
    done = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh"), "tiny"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    summary = (tmp_path / "out/summary.txt").read_text()
    assert done.returncode == 0, summary + done.stdout[-3000:] + done.stderr[-3000:]
    assert "every model-loading stage ran on cpu" in summary
    for line in ("train: cpu torch.float32", "eval: cpu torch.float32", "export (parity): cpu torch.float32"):
        assert line in summary
    assert "pipeline: " in summary
    table = (tmp_path / "out/gpu_train.md").read_text()
    assert "| padded |" in table and "packed-sdpa" in table


def test_the_report_fails_when_a_stage_ran_off_the_device(tmp_path):
    import json

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    stages = [{"name": "train", "status": "miss", "seconds": 1,
               "metrics": {"device": "cpu", "base_dtype": "torch.float32"}},
              {"name": "export", "status": "miss", "seconds": 1,
               "metrics": {"parity_placement": {"device": "cuda", "dtype": "torch.bfloat16"}}}]
    (run / "run.json").write_text(json.dumps({"stages": stages, "resolved": {}}))
    (run / "eval/eval.json").write_text(json.dumps({"placement": {"device": "cuda:0", "dtype": "torch.bfloat16"}}))
    done = subprocess.run([sys.executable, str(ROOT / "bench/gpu_check_report.py"), str(run), "cuda"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "FAILED: train did not run on cuda" in done.stdout
