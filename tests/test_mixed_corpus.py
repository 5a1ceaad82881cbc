"""One corpus folder mixing every input format runs through the pipeline with one report.

Real files: demo papers converted by pandoc (Markdown, LaTeX, ODT) and printed by Chromium (a
two-column PDF), Word files with and without tracked changes, and one paper twice (its .docx and
its PDF), as an author's folder holds them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from voicetune.config import demo_corpus_path
from voicetune.records import read_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from formats import convert, tools_missing  # noqa: E402

DEMO = Path(demo_corpus_path())
AS = {"md": "joss_slix", "tex": "joss_adaptiveresonance", "odt": "manubot_linear_models",
      "pdf": "manubot_rethink_prs"}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    if tools_missing():
        pytest.skip(f"needs {' and '.join(tools_missing())} to convert the demo papers")
    from conftest import make_cfg
    from test_revisions import tracked_corpus

    from voicetune.pipeline import run

    root = tmp_path_factory.mktemp("mixed")
    corpus = root / "papers"
    for fmt, stem in AS.items():
        convert(DEMO / f"{stem}.docx", fmt, corpus / fmt)
    (corpus / "word").mkdir()
    shutil.copy(DEMO / "joss_clustervalidityindices.docx", corpus / "word")
    convert(DEMO / "joss_clustervalidityindices.docx", "pdf", corpus / "published")  # the same paper
    tracked_corpus(corpus / "tracked")  # three Word papers, one with tracked edits
    cfg = make_cfg(["corpus=dir", f"corpus.path={corpus}", "stages=[dataset]", "data.max_tokens=4096",
                    "data.sources=[depolish,revisions]"], root / "cache")
    run(cfg, root / "run")
    return root / "run"


def test_every_format_gets_its_row_in_one_report(mixed_run):
    rows = {r["file"]: r for r in json.loads((mixed_run / "extract/report.json").read_text())}
    for fmt, stem in AS.items():
        assert rows[f"{fmt}/{stem}.{fmt}"]["status"] in ("ok", "warning"), fmt
        assert {"abstract", "introduction"} <= set(rows[f"{fmt}/{stem}.{fmt}"]["sections"]), fmt
    assert rows["published/joss_clustervalidityindices.pdf"]["status"] == "duplicate"
    assert "kept word/joss_clustervalidityindices.docx" in rows["published/joss_clustervalidityindices.pdf"]["reason"]
    sources = {p["source"] for p in read_jsonl(mixed_run / "extract/papers.jsonl")}
    assert sources == {f"{s}.{f}" for f, s in AS.items()} | {"joss_clustervalidityindices.docx",
                                                            "alpha.docx", "beta.docx", "gamma.docx"}


def test_the_mixed_corpus_reaches_the_dataset_with_revision_pairs(mixed_run):
    records = read_jsonl(mixed_run / "dataset/train.jsonl") + read_jsonl(mixed_run / "dataset/valid.jsonl")
    papers = {r["paper"] for r in records}
    assert {"joss_slix", "joss_adaptiveresonance", "manubot_linear_models", "manubot_rethink_prs"} <= papers
    assert {r["kind"] for r in records} == {"depolish", "revision"}
    card = json.loads((mixed_run / "dataset/card.json").read_text())
    assert card["counts"]["kind"]["revision"] >= 1
