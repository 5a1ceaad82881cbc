"""Tracked changes in real .docx files: headings that carry them."""

from __future__ import annotations

import pytest
from docx_factory import (
    DELETED_MARK, INSERTED_MARK, dele, heading, ins, make_docx, p, ppr_change, prose, r,
    rpr_change, title,
)
from omegaconf import OmegaConf

from voicetune.config import CorpusConfig
from voicetune.stages.extract import Rules, extract_paper
from voicetune.stages.extract.ooxml import read_document

INTRO = prose("Introduction text")
METHODS = prose("Methods text")
NUMPR = '<w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr>'

# Every way a heading is written: p() keywords, run properties, typed prefix, typed in caps.
FORMS = {
    "styled": ({"style": "Heading1"}, "", "", False),
    "numbered": ({}, "", "2. ", False),
    "auto-numbered": ({"ppr": NUMPR}, "", "", False),
    "bold": ({}, "<w:b/>", "", False),
    "caps-typed": ({}, "", "", True),
    "w:caps": ({}, "<w:caps/>", "", False),
}
# (old heading, new heading, canonical section of the new one): the accepted text decides.
RENAMES = [("Method", "Methods", "methods"), ("Results", "Findings", "results"),
           ("Discussion", "Conclusions", "conclusion")]


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.from_config(OmegaConf.structured(CorpusConfig(path=".")))


def tracked_heading(form: str, parts: list[tuple[str, str]], ppr: str = "", rpr: str = "") -> str:
    """A heading paragraph in `form` from ("keep"|"ins"|"del", text) parts."""
    kw, form_rpr, prefix, upper = FORMS[form]
    rpr = form_rpr + rpr
    runs = [r(prefix, rpr=rpr)] if prefix else []
    for kind, text in parts:
        text = text.upper() if upper else text
        runs.append({"keep": lambda: r(text, rpr=rpr), "ins": lambda: ins(r(text, rpr=rpr)),
                     "del": lambda: dele(text, rpr=rpr)}[kind]())
    return p(*runs, style=kw.get("style"), ppr=kw.get("ppr", "") + ppr)


def headed(tmp_path, rules, heading_xml: str):
    """(paper, paragraphs) of Introduction + the heading under test + one Methods paragraph."""
    path = make_docx(tmp_path / "h.docx", title("T") + heading("Introduction") + p(INTRO)
                     + heading_xml + p(METHODS))
    return extract_paper(path, rules), read_document(path).paragraphs


def assert_heading(paper, paras, form: str, text: str, section: str) -> None:
    shown = ("2. " if form == "numbered" else "") + (text.upper() if form == "caps-typed" else text)
    assert [s.name for s in paper.sections] == ["introduction", section]
    assert paper.sections[1].title == shown and paper.sections[1].paragraphs == [METHODS]
    para = next(x for x in paras if x.text == shown)
    assert para.level == (1 if form == "styled" else None)
    assert para.bold == (form == "bold")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("old,new,section", RENAMES, ids=[x[1] for x in RENAMES])
def test_renamed_heading(tmp_path, rules, form, old, new, section):
    xml = tracked_heading(form, [("del", old), ("ins", new)])
    assert_heading(*headed(tmp_path, rules, xml), form, new, section)


@pytest.mark.parametrize("form", FORMS)
def test_heading_renamed_by_an_inserted_letter(tmp_path, rules, form):
    xml = tracked_heading(form, [("keep", "Method"), ("ins", "s")])
    assert_heading(*headed(tmp_path, rules, xml), form, "Methods", "methods")


@pytest.mark.parametrize("form", FORMS)
def test_inserted_heading_with_inserted_paragraph_mark(tmp_path, rules, form):
    xml = tracked_heading(form, [("ins", "Methods")], ppr=INSERTED_MARK)
    assert_heading(*headed(tmp_path, rules, xml), form, "Methods", "methods")


@pytest.mark.parametrize("form,ppr", [("styled", ppr_change()),
                                      ("auto-numbered", ppr_change())])
def test_tracked_paragraph_property_change(tmp_path, rules, form, ppr):
    """Normal -> Heading 1 (or numbering added) as a tracked change: the new properties count."""
    xml = tracked_heading(form, [("keep", "Methods")], ppr=ppr)
    assert_heading(*headed(tmp_path, rules, xml), form, "Methods", "methods")


def test_tracked_style_change_away_from_heading(tmp_path, rules):
    xml = p("Datasets", ppr=ppr_change('<w:pStyle w:val="Heading1"/>'))
    _, paras = headed(tmp_path, rules, xml)
    assert next(x for x in paras if x.text == "Datasets").level is None


@pytest.mark.parametrize("form,rpr", [("bold", rpr_change()), ("w:caps", rpr_change()),
                                      ("bold", rpr_change("<w:i/>"))])
def test_tracked_run_property_change(tmp_path, rules, form, rpr):
    """Formatting made bold or caps as a tracked change: the heading is read as it now shows."""
    xml = tracked_heading(form, [("del", "Method"), ("ins", "Methods")], rpr=rpr)
    assert_heading(*headed(tmp_path, rules, xml), form, "Methods", "methods")


def test_unlisted_bold_sub_heading_with_tracked_rename(tmp_path, rules):
    xml = tracked_heading("bold", [("keep", "Data "), ("del", "source"), ("ins", "sources")])
    paper, paras = headed(tmp_path, rules, xml)
    assert next(x for x in paras if x.text == "Data sources").bold
    assert paper.sections[0].paragraphs == [INTRO, METHODS]  # a sub-heading, not prose


def test_bold_removed_by_tracked_change_is_not_bold(tmp_path, rules):
    xml = p(r("Data sources", rpr=rpr_change("<w:b/>")))
    _, paras = headed(tmp_path, rules, xml)
    assert not next(x for x in paras if x.text == "Data sources").bold


@pytest.mark.parametrize("form", FORMS)
def test_heading_with_deleted_paragraph_mark_joins_the_next(tmp_path, rules, form):
    """Accepting a deleted mark merges the heading into the prose after it, as Word shows it."""
    xml = tracked_heading(form, [("del", "Method"), ("ins", "Methods")], ppr=DELETED_MARK)
    paper, paras = headed(tmp_path, rules, xml)
    shown = (("2. " if form == "numbered" else "")
             + ("METHODS" if form == "caps-typed" else "Methods"))
    assert [s.name for s in paper.sections] == ["introduction"]
    assert paper.sections[0].paragraphs == [INTRO, f"{shown} {METHODS}"]
    assert paras[-1].level is None and not paras[-1].bold

