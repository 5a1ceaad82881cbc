"""experiments/ablation_table.py on two member run folders: one likeness classifier for both,
paired member differences with intervals, and a refusal when the members saw different drafts."""

import importlib.util
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from test_voice import OBJECTS, TOPICS, author_text, corpus, draft_text, record
from voicetune.config import EvalConfig
from voicetune.records import write_jsonl

SCRIPT = Path(__file__).parents[1] / "experiments/ablation_table.py"


def table_module():
    spec = importlib.util.spec_from_file_location("ablation_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def member(root: Path, name: str, held: list[dict], writes_author: bool, runs_away: bool) -> Path:
    """A finished run folder as the pipeline leaves it, with the files the script reads."""
    run = root / name
    for folder in ("eval", "dataset", "heldout"):
        (run / folder).mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"data": {"name": name}, "eval": OmegaConf.structured(EvalConfig)}),
                   run / "config.yaml")
    (run / "run.json").write_text(json.dumps({"stages": [{"name": "train", "metrics": {"real_tokens": 74000,
                                                                                     "steps": 36}}]}))
    write_jsonl(run / "dataset/train.jsonl", corpus(TOPICS[:10]))
    write_jsonl(run / "heldout/heldout.jsonl", held)
    samples = []
    for r in held:
        ref, rough = r["messages"][-1]["content"], r["messages"][-2]["content"]
        text = ref if writes_author else rough
        ratio = len(text.split()) / len(ref.split())
        tuned = {"text": text, "length_ratio": ratio, "early_stop": ratio < 0.5, "runaway": runs_away}
        samples.append({"id": r["id"], "shape": r["shape"],
                        "outputs": {"tuned": tuned, "base": {**tuned, "text": rough, "runaway": True}}})
    author = {"cliches_per_1k": 1.0, "hedging_per_1k": 4.0}
    (run / "eval/eval.json").write_text(json.dumps({"samples": samples, "author": author}))
    return run


def held_out(n: int) -> list[dict]:
    return [{**record(author_text(TOPICS[10 + i % 6], OBJECTS[i % 8], 30 + i),
                      draft_text(TOPICS[10 + i % 6], OBJECTS[i % 8], 30 + i)), "id": f"d{i}"} for i in range(n)]


def test_members_are_compared_per_draft_with_one_classifier(tmp_path):
    held = held_out(12)
    member(tmp_path, "0_sentence", held, writes_author=False, runs_away=True)
    member(tmp_path, "1_shape_mix", held, writes_author=True, runs_away=False)
    md = table_module().main([str(tmp_path)])
    assert "Members: 0_sentence, 1_shape_mix." in md and "74,000 in 36 steps" in md
    assert "held-out ROC AUC 1.0 (usable)" in md
    assert "30 author passages vs 30 drafts" in md  # both members' splits, each passage once
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in md.splitlines() if line.startswith("| ")}
    # Every sentence-member output runs away and copies the draft; the other writes the author's text.
    assert "| 1.00 [1.00, 1.00] | yes |" in rows[("all", "12", "runaway")]
    likeness = rows[("all", "12", "author-likeness")].split("|")
    assert float(likeness[4].split()[0]) < 0.5 < float(likeness[5].split()[0]) and likeness[-2].strip() == "yes"
    assert rows[("all", "12", "length ratio (median)")].split("|")[-2].strip() == "yes"  # drafts are longer


def test_members_on_different_drafts_are_refused(tmp_path):
    member(tmp_path, "0_sentence", held_out(6), writes_author=False, runs_away=True)
    member(tmp_path, "1_shape_mix", held_out(7), writes_author=True, runs_away=False)
    with pytest.raises(SystemExit, match="different held-out drafts"):
        table_module().main([str(tmp_path)])
