"""Revision pairs: units that hold the author's tracked edits, their gates, the word diff."""

from __future__ import annotations

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
    assert changed_words(C_BEFORE.split(), C.split()) == 1 and changed_words(B.split(), B.split()) == 0
    assert changed_words(A_BEFORE.split(), A.split()) >= 5
