"""The paper split is computed once, from the extracted papers, and every stage obeys it.

The failing case of the old design: `dataset` split the papers that still had pairs, `heldout`
all extracted papers. With 15 papers x valid_fraction 0.1, round(1.5) = 2 papers are held out;
when one training paper loses every pair, the remaining 14 give round(1.4) = 1, so a paper that
`eval` called held-out sat in the training split.
"""

from __future__ import annotations

import json
import random

import pytest

from voicetune.pipeline import run_stage
from voicetune.records import read_jsonl, read_split
from voicetune.stages.split import valid_papers

WORDS = ("model data voice sample paper method result effect cohort signal analysis measure estimate "
         "variance bias error trial score rate group dose outcome study factor level").split()


def prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def paper(pid: str, rng: random.Random) -> dict:
    sections = [{"name": "abstract", "title": "Abstract", "paragraphs": [prose(rng, 120)]},
                {"name": "methods", "title": "Methods", "paragraphs": [prose(rng, 70) for _ in range(3)]}]
    return {"id": pid, "title": pid, "source": f"{pid}.docx", "sha256": "0" * 64, "words": 330,
            "warnings": [], "sections": sections}


def pairs_of(papers: list[dict]) -> list[dict]:
    rows = []
    for p in papers:
        for i, text in enumerate(p["sections"][1]["paragraphs"]):
            uid = f"{p['id']}-u{i}"
            rows.append({"id": f"{uid}/loose_draft", "unit_id": uid, "paper": p["id"], "section": "methods",
                         "shape": "paragraph", "style": "loose_draft", "kind": "depolish", "rough": text.lower(), "original": text})
    return rows


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    papers = [paper(f"paper{i:02d}", rng) for i in range(15)]
    extract = tmp_path / "extract"
    extract.mkdir()
    (extract / "papers.jsonl").write_text("".join(json.dumps(p) + "\n" for p in papers))
    return papers, extract


def test_a_paper_that_loses_every_pair_changes_nothing_about_the_held_out_papers(corpus, cfg_factory, e2e_cache,
                                                                               tmp_path):
    papers, extract = corpus
    cfg = cfg_factory([f"cache_dir={e2e_cache}", "eval.samples_per_shape=2"])
    ids = [p["id"] for p in papers]
    valid = valid_papers(ids, cfg.data.valid_fraction, cfg.data.seed)
    lost = next(pid for pid in ids if pid not in valid)  # a training paper whose pairs were all rejected
    assert len(valid) == 2 and len(valid_papers([i for i in ids if i != lost], 0.1, 0)) == 1  # the old leak

    run_stage("split", cfg, {"extract": extract}, tmp_path / "split")
    assert read_split(tmp_path / "split")["valid"] == valid
    kept = tmp_path / "pairs"
    kept.mkdir()
    (kept / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs_of(papers) if r["paper"] != lost))
    run_stage("dataset", cfg, {"pairs": kept, "split": tmp_path / "split"}, tmp_path / "dataset")
    run_stage("heldout", cfg, {"extract": extract, "split": tmp_path / "split"}, tmp_path / "heldout")

    train = {r["paper"] for r in read_jsonl(tmp_path / "dataset/train.jsonl")}
    dataset_valid = {r["paper"] for r in read_jsonl(tmp_path / "dataset/valid.jsonl")}
    heldout = {r["paper"] for r in read_jsonl(tmp_path / "heldout/heldout.jsonl")}
    assert dataset_valid == valid and lost not in train
    assert heldout and heldout <= dataset_valid and not heldout & train
