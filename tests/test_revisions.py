"""Revision pairs: units that hold the author's tracked edits, their gates, the word diff."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from voicetune.config import DataConfig, GateConfig, RevisionConfig
from voicetune.revisions import KIND, changed_words, diff, revision_pairs, revision_units

A = "We measured the effect in 40 mice and found it was large and robust across every strain."
A_BEFORE = "We looked at the effect in 40 mice and it was big across the strains."
B = "The second paragraph was never edited by anyone at all, so it stays as it is here."
C = "Typos happen in drafts written late at night before the deadline of the journal."
C_BEFORE = "Typos hapen in drafts written late at night before the deadline of the journal."


def paper() -> dict:
    return {"id": "p1", "sections": [{"name": "results", "title": "Results", "paragraphs": [A, B, C]}],
            "revisions": [{"section": "results", "before": A_BEFORE, "after": A},
                          {"section": "results", "before": C_BEFORE, "after": C}]}


def data_cfg(**revisions):
    return OmegaConf.structured(DataConfig(name="t", gates=GateConfig(), revisions=RevisionConfig(**revisions)))


def test_units_of_each_shape_hold_the_before_text_of_edited_paragraphs():
    units = revision_units(paper(), ["paragraph", "section", "sentence"])
    by_shape = {}
    for u in units:
        by_shape.setdefault(u["shape"], []).append(u)
    assert set(by_shape) == {"paragraph", "section"}  # sentences cannot be aligned
    assert sorted(u["rough"] for u in by_shape["paragraph"]) == sorted([A_BEFORE, C_BEFORE])
    (section,) = by_shape["section"]
    assert section["text"] == "\n\n".join([A, B, C])
    assert section["rough"] == "\n\n".join([A_BEFORE, B, C_BEFORE])  # the unedited paragraph as it is
    assert all(u["kind"] == KIND for u in units)


def test_revision_unit_ids_differ_from_the_depolish_unit_of_the_same_text():
    from voicetune.shapes import candidates

    depolish = {u["id"] for u in candidates(paper(), "paragraph")}
    assert not depolish & {u["id"] for u in revision_units(paper(), ["paragraph"])}


def test_no_revisions_no_units():
    assert revision_units({**paper(), "revisions": []}, ["paragraph"]) == []


def test_small_edits_are_rejected_substantive_ones_kept():
    units = revision_units(paper(), ["paragraph"])
    pairs, rejected = revision_pairs(units, data_cfg(min_changed_words=3))
    assert [p["rough"] for p in pairs] == [A_BEFORE]
    assert pairs[0]["original"] == A and pairs[0]["kind"] == KIND and pairs[0]["generator"] == "author"
    assert [(r["reason"], r["rough"]) for r in rejected] == [("small_edit", C_BEFORE)]
    pairs, rejected = revision_pairs(units, data_cfg(min_changed_words=1))
    assert len(pairs) == 2 and not rejected


def test_length_ratio_gate_applies_numbers_gate_does_not():
    longer = " ".join([A] * 3)
    units = [{"id": "u1", "paper": "p", "section": "s", "shape": "paragraph", "text": longer, "rough": A_BEFORE},
             {"id": "u2", "paper": "p", "section": "s", "shape": "paragraph",
              "text": A, "rough": A_BEFORE.replace("40", "42")}]  # the author corrected a number
    pairs, rejected = revision_pairs(units, data_cfg())
    assert [p["unit_id"] for p in pairs] == ["u2"]
    assert rejected[0]["reason"] == "length_ratio"


def test_diff_rebuilds_both_sides_and_counts_changed_words():
    ops = diff(A_BEFORE, A)
    assert "".join(t for op, t in ops if op != "+") == A_BEFORE
    assert "".join(t for op, t in ops if op != "-") == A
    assert {op for op, _ in ops} == {"=", "-", "+"}
    assert diff("over two short weeks", "over six long weeks") == [
        ["=", "over "], ["-", "two short"], ["+", "six long"], ["=", " weeks"]]
    assert changed_words(C_BEFORE.split(), C.split()) == 1 and changed_words(B.split(), B.split()) == 0
    assert changed_words(A_BEFORE.split(), A.split()) >= 5


# ---------------------------------------------------------------- a real corpus, end to end


def tracked_corpus(folder):
    """Three Word papers; the first has one substantive tracked edit and one typo fix."""
    from docx_factory import dele, heading, ins, make_docx, p, prose, r, title

    edited = p(r("We measured "), dele("thirty"), ins(r("forty")), r(" mice over "), dele("two short"),
               ins(r("six long")), r(" weeks in " + prose("Measured", 50)))
    typo = p(r("The data "), dele("is"), ins(r("are")), r(" " + prose("Shown", 80)))
    for i, name in enumerate(["alpha", "beta", "gamma"]):
        body = (title(f"Paper {name}") + heading("Introduction") + p(prose(f"Intro{name} text"))
                + p(prose(f"Context{name} text")) + heading("Methods"))
        body += (edited + typo) if i == 0 else p(prose(f"Methods{name} text")) + p(prose(f"Design{name} text"))
        make_docx(folder / f"{name}.docx", body)
    return folder


@pytest.fixture
def revision_run(cfg_factory, tmp_path):
    from voicetune.pipeline import run

    corpus = tracked_corpus(tmp_path / "corpus")
    cfg = cfg_factory(["corpus=dir", f"corpus.path={corpus}", "stages=[dataset]",
                       "data.sources=[depolish,revisions]", "data.revisions.weight=2.0",
                       "data.valid_fraction=0.34", "data.max_tokens=4096"])  # filler words are token-heavy
    run(cfg, tmp_path / "run")
    return tmp_path / "run"


def test_tracked_edits_become_revision_pairs_in_the_dataset(revision_run):
    import json

    from voicetune.records import read_jsonl

    papers = read_jsonl(revision_run / "extract/papers.jsonl")
    revisions = [rv for pp in papers for rv in pp["revisions"]]
    assert len(revisions) == 2 and {rv["section"] for rv in revisions} == {"methods"}  # both edits kept
    pairs = [pr for pr in read_jsonl(revision_run / "pairs/pairs.jsonl") if pr["kind"] == KIND]
    rejected = [rj for rj in read_jsonl(revision_run / "pairs/rejected.jsonl") if rj.get("kind") == KIND]
    paragraph = [pr for pr in pairs if pr["shape"] == "paragraph"]
    assert [pr["rough"][:44] for pr in paragraph] == ["We measured thirty mice over two short weeks"]
    assert paragraph[0]["original"].startswith("We measured forty mice over six long weeks")
    assert {rj["reason"] for rj in rejected} == {"small_edit"}  # the typo fix
    assert {pr["shape"] for pr in pairs} == {"paragraph", "section"}
    records = read_jsonl(revision_run / "dataset/train.jsonl") + read_jsonl(revision_run / "dataset/valid.jsonl")
    revised = [rec for rec in records if rec["kind"] == KIND]
    assert len(revised) == len(pairs) and all(rec["weight"] == 2.0 for rec in revised)  # methods 1.0 x 2.0
    card = json.loads((revision_run / "dataset/card.json").read_text())
    assert card["counts"]["kind"][KIND] == len(pairs) and card["counts"]["kind"]["depolish"] > 0


@pytest.mark.slow
def test_the_viewer_highlights_the_authors_edits_and_filters_by_kind(revision_run, tmp_path):
    from browser import chrome
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    page = (revision_run / "dataset/viewer/index.html").resolve()
    with chrome(tmp_path / "profile") as browser:
        browser.get(page.as_uri())
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "counter").text != "0 / 0")
        Select(browser.find_element(By.ID, "filter-kind")).select_by_value(KIND)
        Select(browser.find_element(By.ID, "filter-shape")).select_by_value("paragraph")
        assert browser.find_element(By.ID, "counter").text == "1 / 1"
        deleted = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#rough del")]
        inserted = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#original ins")]
        assert deleted == ["thirty", "two short"] and inserted == ["forty", "six long"]
        assert browser.find_element(By.ID, "rough").text.startswith("We measured thirty mice")
        assert not browser.find_elements(By.CSS_SELECTOR, "#rough ins, #original del")
        Select(browser.find_element(By.ID, "filter-kind")).select_by_value("depolish")
        assert not browser.find_elements(By.CSS_SELECTOR, "#rough del, #original ins")
