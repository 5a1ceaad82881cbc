"""Tracked changes in real .docx files: headings that carry them, and the author's revisions."""

from __future__ import annotations

import pytest
from docx_factory import (
    DELETED_MARK, INSERTED_MARK, MOVED_FROM_MARK, MOVED_TO_MARK, dele, heading, ins, make_docx,
    move_from, move_to, p, ppr_change, prose, r, rpr_change, title,
)
from omegaconf import OmegaConf

from voicetune.config import CorpusConfig
from voicetune.stages.extract import Rules, extract_paper
from voicetune.revisions import changed_words
from voicetune.stages.extract.document import Revision
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


# ------------------------------------------------------------------ revisions

def read(tmp_path, body: str, **kw):
    return read_document(make_docx(tmp_path / "rev.docx", title("T") + heading("Introduction")
                                   + body), **kw)


def test_only_the_substantive_edit_is_a_revision(tmp_path):
    substantive = p(r("We measured "), dele("thirty"), ins(r("forty")), r(" mice over "),
                    dele("two short"), ins(r("six long")), r(" weeks."))
    tiny = p(r("The data "), dele("is"), ins(r("are")), r(" shown in the first figure."))
    formatting = p(r("A sentence made bold ", rpr="<w:b/>" + rpr_change()),
                   r("and one made italic.", rpr="<w:i/>" + rpr_change("<w:b/>")),
                   ppr=ppr_change('<w:jc w:val="center"/>'))
    doc = read(tmp_path, substantive + tiny + formatting + p("An unedited paragraph."), min_changed_words=3)
    assert [x.text for x in doc.paragraphs[2:]] == [
        "We measured forty mice over six long weeks.", "The data are shown in the first figure.",
        "A sentence made bold and one made italic.", "An unedited paragraph."]
    assert doc.revisions == [Revision("We measured thirty mice over two short weeks.",
                                      "We measured forty mice over six long weeks.", 2)]
    low = read(tmp_path, substantive + tiny + formatting)  # extraction's default: every changed word
    assert [x.para_index for x in low.revisions] == [2, 3]


def test_revision_keeps_its_section(tmp_path, rules):
    edited = p(r("Mice were housed "), dele("in pairs at room temperature"),
               ins(r("alone at 22 C")), r(" for a week."))
    path = make_docx(tmp_path / "s.docx", title("T") + heading("Introduction") + p(INTRO)
                     + heading("Methods") + edited)
    doc = read_document(path)
    [rev] = doc.revisions
    assert rev.before == "Mice were housed in pairs at room temperature for a week."
    assert rev.after == "Mice were housed alone at 22 C for a week."
    assert doc.paragraphs[rev.para_index].text == rev.after
    assert doc.paragraphs[rev.para_index - 1].text == "Methods"


def test_paragraphs_inserted_or_deleted_whole_are_not_revisions(tmp_path):
    inserted = p(ins(r("A paragraph the author added in this round of edits.")), ppr=INSERTED_MARK)
    deleted = p(dele("A paragraph the author removed in this round of edits."), ppr=DELETED_MARK)
    doc = read(tmp_path, inserted + deleted + p("The paragraph that stays."))
    assert [x.text for x in doc.paragraphs[2:]] == [
        "A paragraph the author added in this round of edits.", "The paragraph that stays."]
    assert doc.revisions == []


def test_moved_paragraph_is_not_a_revision(tmp_path):
    moved = "A paragraph moved further down by the author."
    body = (p(move_from(moved), ppr=MOVED_FROM_MARK) + p("First paragraph stays here.")
            + p("Second paragraph stays too.") + p(move_to(moved), ppr=MOVED_TO_MARK))
    doc = read(tmp_path, body)
    assert [x.text for x in doc.paragraphs[2:]] == [
        "First paragraph stays here.", "Second paragraph stays too.", moved]
    assert doc.revisions == []


def test_moved_sentence_changes_both_paragraphs(tmp_path):
    sentence = " Both groups were weighed every week."
    body = (p(r("Mice were fed daily."), move_from(sentence))
            + p(r("Weights were recorded."), move_to(sentence)))
    doc = read(tmp_path, body)
    assert [(x.before, x.after) for x in doc.revisions] == [
        ("Mice were fed daily. Both groups were weighed every week.", "Mice were fed daily."),
        ("Weights were recorded.", "Weights were recorded. Both groups were weighed every week.")]


def test_deleted_paragraph_mark_joins_two_paragraphs(tmp_path):
    joined = p("The first half of a thought,", ppr=DELETED_MARK) + p("and its second half.")
    assert read(tmp_path, joined).revisions == []  # words unchanged: no revision
    edited = (p("The first half of a thought,", ppr=DELETED_MARK)
              + p(r("and "), dele("then its second"), ins(r("its very last")), r(" half.")))
    doc = read(tmp_path, edited)
    assert doc.paragraphs[-1].text == "The first half of a thought, and its very last half."
    assert doc.revisions == [Revision("The first half of a thought, and then its second half.",
                                      "The first half of a thought, and its very last half.", 2)]


def test_file_without_tracked_changes_has_no_revisions(tmp_path):
    assert read(tmp_path, p(INTRO) + p(METHODS)).revisions == []


@pytest.mark.parametrize("old,new,count", [
    ("a b c d", "a b c d", 0), ("a b c d", "a x c d", 1), ("a b c d", "x b c y", 2),
    ("a b c d", "a b c d e f", 2), ("a b c d", "c d", 2), ("a b", "", 2),
    ("we saw two mice", "we saw three large rats", 3)])
def test_changed_words(old, new, count):
    assert changed_words(old.split(), new.split()) == count
