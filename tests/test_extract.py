"""extract stage: real .docx files built by docx_factory, one construct per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from docx_factory import (
    DELETED_MARK, complex_field, dele, heading, ins, make_docx, move_from, move_to, p, paper,
    prose, r, simple_field, table, text_box, title,
)
from omegaconf import OmegaConf

from voicetune.config import CorpusConfig
from voicetune.errors import UserError
from voicetune.cache import Cache
from voicetune.pipeline import run_stage
from voicetune.stages.extract import Rules, corpus_files, extract_paper, slug
from voicetune.stages.extract.document import ReadError

INTRO = prose("Introduction text")
METHODS = prose("Methods text")


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.from_config(OmegaConf.structured(CorpusConfig(path=".")))


def extract(tmp_path: Path, rules: Rules, body: str, name: str = "paper.docx", **kw):
    return extract_paper(make_docx(tmp_path / name, body, **kw), rules)


def text_of(paper) -> str:
    return "\n".join(x for s in paper.sections for x in s.paragraphs)


def names(paper) -> list[str]:
    return [s.name for s in paper.sections]


# ------------------------------------------------------------------ runs and revisions

def test_tracked_changes_are_accepted(tmp_path, rules):
    body = paper([("Introduction", [p(r("We measured "), ins(r("forty")), dele("thirty"),
                                       r(" mice "), move_to("quickly"), move_from("slowly"),
                                       r(" today."))])])
    text = text_of(extract(tmp_path, rules, body))
    assert "We measured forty mice quickly today." in text
    assert "thirty" not in text and "slowly" not in text


def test_deleted_paragraph_mark_merges_with_next(tmp_path, rules):
    body = paper([("Introduction", [p("First half of a sentence", ppr=DELETED_MARK),
                                    p("second half of it."), p("Separate paragraph.")])])
    paras = extract(tmp_path, rules, body).sections[0].paragraphs
    assert paras == ["First half of a sentence second half of it.", "Separate paragraph."]


def test_comments_and_note_references_never_appear(tmp_path, rules):
    comment = ('<w:commentRangeStart w:id="0"/>' + r("flagged words")
               + '<w:commentRangeEnd w:id="0"/>'
               + '<w:r><w:commentReference w:id="0"/></w:r>')
    note = ('<w:r><w:rPr><w:rStyle w:val="FootnoteReference"/></w:rPr>'
            '<w:footnoteReference w:id="1"/></w:r>')
    typed_note = r("7", style="FootnoteReference")  # a hand-typed superscript number
    body = paper([("Introduction", [p("Some ", comment, " stay", note, " here", typed_note, ".")])])
    text = text_of(extract(tmp_path, rules, body))
    assert text == "Some flagged words stay here."
    assert "COMMENT" not in text and "FOOTNOTE" not in text


def test_field_codes_dropped_results_kept(tmp_path, rules):
    body = paper([("Introduction", [p("As shown ", complex_field('REF _Ref1 \\h', "above"),
                                       " and in ", simple_field("CITATION Smi20", "(Smith 2020)"),
                                       ".")])])
    text = text_of(extract(tmp_path, rules, body))
    assert text == "As shown above and in (Smith 2020)."


def test_nested_field_code_is_dropped(tmp_path, rules):
    nested = ('<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
              + '<w:r><w:instrText>IF </w:instrText></w:r>'
              + complex_field("MERGEFIELD x", "INNER RESULT")
              + '<w:r><w:fldChar w:fldCharType="separate"/></w:r>' + r("outer")
              + '<w:r><w:fldChar w:fldCharType="end"/></w:r>')
    text = text_of(extract(tmp_path, rules, paper([("Introduction", [p("An ", nested, " one.")])])))
    assert text == "An outer one."


def test_wrappers_keep_text_placeholders_do_not(tmp_path, rules):
    link = f'<w:hyperlink r:id="rId9">{r("linked")}</w:hyperlink>'
    smart = f'<w:smartTag w:element="place">{r("Boston")}</w:smartTag>'
    inline_sdt = f"<w:sdt><w:sdtPr/><w:sdtContent>{r('controlled')}</w:sdtContent></w:sdt>"
    placeholder = ("<w:sdt><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent>"
                   f"{r('Click here to enter text.')}</w:sdtContent></w:sdt>")
    block_sdt = f"<w:sdt><w:sdtPr/><w:sdtContent>{p('Block control paragraph.')}</w:sdtContent></w:sdt>"
    body = paper([("Introduction", [p("A ", link, " ", smart, " ", inline_sdt, " word.",
                                      placeholder), block_sdt])])
    paras = extract(tmp_path, rules, body).sections[0].paragraphs
    assert paras == ["A linked Boston controlled word.", "Block control paragraph."]


def test_tabs_breaks_and_pretty_printed_xml(tmp_path, rules):
    body = paper([("Introduction", [p(r("one"), "<w:r><w:tab/></w:r>", r("two"),
                                      "<w:r><w:br/></w:r>", r("three."))])])
    pretty = body.replace("><w:r>", ">\n    <w:r>").replace("</w:p>", "\n  </w:p>\n")
    for name, xml in (("flat.docx", body), ("pretty.docx", pretty)):
        assert text_of(extract(tmp_path, rules, xml, name)) == "one two three."


def test_text_boxes_tables_equations_kept_out(tmp_path, rules):
    display = '<m:oMathPara><m:oMath><m:r><m:t>E=mc^2</m:t></m:r></m:oMath></m:oMathPara>'
    body = paper([("Introduction", [p("Before box.", text_box("BOXED words")),
                                    table(["CELL one", "CELL two"]), p(display),
                                    p("After table.")])])
    text = text_of(extract(tmp_path, rules, body))
    assert text == "Before box.\nAfter table."


# ------------------------------------------------------------------ what is not prose

def test_captions_kept_out(tmp_path, rules):
    body = paper([("Results", [p("Figure 1: Mice grew.", style="Caption"),
                               p("Figure 2: Rats shrank."), p("Fig. 3. A plot."),
                               p("Table 1: Counts by group."), p(INTRO)])])
    assert text_of(extract(tmp_path, rules, body)) == INTRO


def test_front_matter_kept_out_title_recorded(tmp_path, rules):
    body = "".join([
        title("Deep Mice"), p("Ada Lovelace1, Charles Babbage2"),
        p("1 Department of Biology, University of Somewhere, Somecity, Country."),
        p("Correspondence: ada@example.org"), p("Received 3 May 2021; accepted 9 June 2021"),
        p("Keywords: mice, depth, learning"), heading("Introduction"), p(INTRO)])
    paper_ = extract(tmp_path, rules, body)
    assert paper_.title == "Deep Mice"
    assert text_of(paper_) == INTRO and names(paper_) == ["introduction"]


def test_title_falls_back_to_first_paragraph(tmp_path, rules):
    body = p("An Untitled Styled Title") + heading("Introduction") + p(INTRO)
    paper_ = extract(tmp_path, rules, body)
    assert paper_.title == "An Untitled Styled Title" and text_of(paper_) == INTRO


def test_references_end_the_paper_excluded_sections_dropped(tmp_path, rules):
    body = paper([("Introduction", [INTRO]),
                  ("Acknowledgements", ["We thank the ACK people for their help."]),
                  ("Methods", [METHODS]),
                  ("Funding", ["FUNDER grant 123 paid for this work entirely."]),
                  ("References", ["1. Smith J. REFERENCE ENTRY. 2020."]),
                  ("Discussion", ["AFTER REFERENCES text is supplementary."])])
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["introduction", "methods"]
    assert "ACK" not in text_of(paper_) and "FUNDER" not in text_of(paper_)
    assert "REFERENCE" not in text_of(paper_)


def test_inline_excluded_label_paragraph_dropped(tmp_path, rules):
    body = paper([("Discussion", [INTRO, "Funding: NIH grant R01 supported this work fully."])])
    assert text_of(extract(tmp_path, rules, body)) == INTRO


# Real journal headings -> what the default whitelist makes of them, as a plain (unstyled)
# line: ("section", canonical), "excluded", "end", or None (unknown).
HEADING_MEANINGS = {
    "Limitations": "limitations", "Strengths and limitations": "limitations",
    "Study limitations": "limitations", "Limitations of the study": "limitations",
    "5.3 Limitations of this study": "limitations",
    "Background": "introduction", "Related work": "introduction",
    "Literature review": "introduction", "Statement of need": "introduction",
    "Methods": "methods", "Materials and Methods": "methods", "Material and methods": "methods",
    "Patients and Methods": "methods", "Subjects and Methods": "methods",
    "Methodology": "methods", "Experimental": "methods", "Experimental Section": "methods",
    "Data and methods": "methods",
    "Results": "results", "Findings": "results", "Case presentation": "results",
    "Case report": "results",
    "Interpretation": "discussion", "Results and Discussion": "discussion",
    "Discussion": "discussion",
    "Conclusions": "conclusion", "Concluding remarks": "conclusion", "Outlook": "conclusion",
    "Conclusions and Relevance": "conclusion",  # JAMA's last abstract label: kept there
    "Summary": "abstract", "Abstract": "abstract",
    "Objective": None, "Importance": None, "Design, Setting, and Participants": None,
    "Main Outcomes and Measures": None,
    "Research in context": "excluded", "Evidence before this study": "excluded",
    "Added value of this study": "excluded",
    "Implications of all the available evidence": "excluded",
    "Data availability": "excluded", "Code availability": "excluded",
    "Availability of data and materials": "excluded", "Author contributions": "excluded",
    "Authors' contributions": "excluded", "CRediT authorship contribution statement": "excluded",
    "Competing interests": "excluded", "Declaration of interests": "excluded",
    "Ethics": "excluded", "Ethics approval and consent to participate": "excluded",
    "Funding": "excluded", "Role of the funding source": "excluded",
    "Acknowledgements": "excluded", "Acknowledgments": "excluded",
    "Supplementary material": "excluded", "Abbreviations": "excluded",
    "References": "end", "Bibliography": "end", "Literature cited": "end",
    "Works cited": "end", "Reference list": "end",
}


@pytest.mark.parametrize("text,expected", HEADING_MEANINGS.items(), ids=list(HEADING_MEANINGS))
def test_default_heading_meanings(rules, text, expected):
    meaning = rules.meaning(text, styled=False)
    kind = meaning and (meaning[1] if meaning[0] == "section" else meaning[0])
    assert kind == expected


def test_plain_limitations_heading_is_its_own_section(tmp_path, rules):
    body = (title("T") + heading("Discussion") + p(INTRO) + p(r("Limitations", bold=True))
            + p(METHODS) + p("CONCLUSIONS") + p(prose("Conclusion text")))
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["discussion", "limitations", "conclusion"]
    assert paper_.sections[1].paragraphs == [METHODS]


def test_research_in_context_panel_is_left_out(tmp_path, rules):
    panel = [p(r("Research in context", bold=True)),
             p(r("Evidence before this study", bold=True)), p("We searched PubMed for PANEL terms."),
             p(r("Added value of this study", bold=True)), p("PANEL text on what it adds.")]
    body = (title("T") + heading("Abstract") + p(prose("Abstract text")) + "".join(panel)
            + heading("Introduction") + p(INTRO))
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["abstract", "introduction"] and "PANEL" not in text_of(paper_)


# ------------------------------------------------------------------ headings

def test_heading_styles_resolved_through_styles_xml(tmp_path, rules):
    body = "".join([
        title("T"), p("Introduction", style="MyChapter"), p(INTRO),  # basedOn Heading1
        p("Datasets", style="berschrift2"), p(METHODS),  # localized id, name "heading 2"
        p("Results", ppr='<w:outlineLvl w:val="0"/>'), p(prose("Results text"))])
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["introduction", "results"]
    assert paper_.sections[0].paragraphs == [INTRO, METHODS]  # the sub-heading is not prose


@pytest.mark.parametrize("line", ["2. Methods", "2 Methods", "II. METHODS", "IV) Methods",
                                  "METHODS", "Materials and Methods"])
def test_plain_text_headings(tmp_path, rules, line):
    body = title("T") + p("1. Introduction") + p(INTRO) + p(line) + p(METHODS)
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["introduction", "methods"]
    assert paper_.sections[1].title == line and paper_.sections[1].paragraphs == [METHODS]


def test_bold_heading_and_synonyms(tmp_path, rules):
    body = (title("T") + p(r("Background", bold=True)) + p(INTRO)
            + p(r("Conclusions", bold=True)) + p(METHODS))
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["introduction", "conclusion"]
    assert [s.title for s in paper_.sections] == ["Background", "Conclusions"]


def test_joss_layout(tmp_path, rules):
    body = paper([("Summary", [prose("Summary text")]), ("Statement of need", [INTRO]),
                  ("Features", [prose("Feature text")])], level=1)
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["abstract", "introduction", "unknown"]
    assert paper_.sections[2].title == "Features"
    assert any("unknown sections: Features" in w for w in paper_.warnings)


def test_manubot_layout_sub_headings_stay_inside(tmp_path, rules):
    body = "".join([
        title("T"), p("Author Name", style="Author"),
        heading("Abstract", 2), p(prose("Abstract text")),
        heading("Introduction", 2), p(INTRO),
        heading("Methods", 2), heading("Datasets", 3), p(METHODS),
        heading("Results obtained here", 4), p(prose("Sub text")),
        heading("Conclusion", 2), p(prose("Conclusion text")),
        heading("Acknowledgements", 3), p("We thank ACK people."),
        heading("Funding", 4), p("FUNDER money."),
        heading("References", 2), p("REF list")])
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["abstract", "introduction", "methods", "conclusion"]
    assert paper_.sections[2].paragraphs == [METHODS, prose("Sub text")]
    text = text_of(paper_)
    assert "Datasets" not in text and "ACK" not in text and "FUNDER" not in text


def test_structured_abstract_stays_one_section(tmp_path, rules):
    labels = ["Importance:", "Objective:", "Design, Setting, and Participants:",
              "Results:", "Conclusions and Relevance:"]
    abstract = [p(r(label, bold=True), r(f" {prose('Abstract part')}")) for label in labels]
    body = (title("T") + heading("Abstract") + "".join(abstract)
            + p(r("Results", bold=True)) + p(prose("More abstract"))
            + heading("Introduction") + p(INTRO))
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["abstract", "introduction"]
    assert len(paper_.sections[0].paragraphs) == 7
    assert paper_.sections[0].paragraphs[0].startswith("Importance: Abstract part")


def test_inline_abstract_label_before_first_heading(tmp_path, rules):
    body = title("T") + p(f"Abstract: {prose('We show')}") + heading("Introduction") + p(INTRO)
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["abstract", "introduction"]
    assert paper_.sections[0].paragraphs == [prose("We show")]


def test_research_letter_without_headings_is_one_body(tmp_path, rules):
    body = title("A Letter") + p("Ada Lovelace", style="Author") + p(INTRO) + p(METHODS)
    paper_ = extract(tmp_path, rules, body)
    assert names(paper_) == ["body"] and paper_.sections[0].paragraphs == [INTRO, METHODS]
    assert "no headings found: one body section" in paper_.warnings
    assert any(w.startswith("very short paper") for w in paper_.warnings)


# ------------------------------------------------------------------ bad input

BAD = {
    "empty.docx": (b"", "empty file"),
    "notzip.docx": (b"this is plain text", "not a .docx (not a zip archive)"),
    "legacy.doc": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504, "encrypted or legacy .doc"),
    "locked.docx": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504, "encrypted or legacy .doc"),
    "~$paper.docx": (b"\x06Ada    ", "Word lock file"),
}


def _bad_files(folder: Path) -> dict[str, str]:
    """Write every kind of bad input; return file name -> expected reason fragment."""
    expected = {}
    for name, (data, reason) in BAD.items():
        (folder / name).write_bytes(data)
        expected[name] = reason
    make_docx(folder / "malformed.docx", "", document_xml="<w:document><w:body><w:p>")
    expected["malformed.docx"] = "malformed XML in word/document.xml"
    make_docx(folder / "nodoc.docx", "", omit=("word/document.xml",))
    expected["nodoc.docx"] = "zip without word/document.xml"
    return expected


def test_bad_files_get_error_rows_and_the_rest_is_processed(tmp_path, capsys):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    corpus.mkdir(), out.mkdir()
    expected = _bad_files(corpus)
    make_docx(corpus / "sub" / "Good Paper.DOCX",
              paper([("Introduction", [INTRO] * 6), ("Methods", [METHODS] * 2)]))
    summary = run_stage("extract", OmegaConf.create({"corpus": CorpusConfig(path=str(corpus))}), {}, out,
                    cache=Cache(tmp_path / "cache"))
    rows = {Path(row["file"]).name: row for row in json.loads((out / "report.json").read_text())}
    for name, reason in expected.items():
        assert rows[name]["status"] == "error" and reason in rows[name]["reason"], name
        assert "\n" not in rows[name]["reason"]
    assert rows["Good Paper.DOCX"]["file"] == "sub/Good Paper.DOCX"  # relative to corpus.path
    assert rows["Good Paper.DOCX"]["status"] == "ok"
    assert rows["Good Paper.DOCX"]["sections"] == ["introduction", "methods"]
    assert summary == {"files": 8, "ok": 1, "warning": 0, "error": 7, "duplicate": 0, "included": 0, "papers": 1,
                       "words": 8 * 62}
    assert "extract report" in capsys.readouterr().out


def test_no_paper_extracted_is_a_user_error(tmp_path):
    (tmp_path / "a.docx").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match="corpus.path=.*no paper could be extracted"):
        run_stage("extract", OmegaConf.create({"corpus": CorpusConfig(path=str(tmp_path))}), {}, out,
                    cache=Cache(tmp_path / "cache"))


def test_docx_error_for_paper_with_only_front_matter(tmp_path, rules):
    with pytest.raises(ReadError, match="no prose found"):
        extract(tmp_path, rules, title("Only a Title") + p("Ada Lovelace"))


# ------------------------------------------------------------------ outputs

def test_outputs_markdown_jsonl_report(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    body = paper([("Introduction", [INTRO, INTRO]), ("Materials and Methods", [METHODS])],
                 title_text="Mice: A Study")
    make_docx(corpus / "My Paper (v2).docx", body)
    other = paper([("Introduction", [prose("Other text")]), ("Methods", [prose("Other methods")])])
    make_docx(corpus / "my-paper-v2.docx", other)  # same slug: gets a suffix
    out.mkdir()
    run_stage("extract", OmegaConf.create({"corpus": CorpusConfig(path=str(corpus))}), {}, out,
                    cache=Cache(tmp_path / "cache"))
    records = [json.loads(x) for x in (out / "papers.jsonl").read_text().splitlines()]
    assert [rec["id"] for rec in records] == ["my-paper-v2", "my-paper-v2-2"]
    rec = records[0]
    assert rec["title"] == "Mice: A Study" and rec["source"] == "My Paper (v2).docx"
    assert len(rec["sha256"]) == 64 and rec["words"] == 3 * 62
    assert rec["sections"][1] == {"name": "methods", "title": "Materials and Methods",
                                  "paragraphs": [METHODS]}
    md = (out / "papers" / "my-paper-v2.md").read_text()
    _, front, rest = md.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["title"] == "Mice: A Study" and meta["words"] == 186
    assert meta["sections"][0] == {"name": "introduction", "title": "Introduction", "words": 124}
    assert rest.strip().split("\n\n") == ["## Introduction", INTRO, INTRO,
                                          "## Materials and Methods", METHODS]


def test_the_same_paper_twice_is_one_paper_the_better_source_kept(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    full = [prose(f"Claim {i} holds") for i in range(4)]
    make_docx(corpus / "a_draft.docx", paper([("Introduction", full[:3])]))  # a shorter draft
    make_docx(corpus / "b_final.docx", paper([("Introduction", full)]))
    make_docx(corpus / "c_other.docx", paper([("Introduction", [prose("Unrelated work")])]))
    out.mkdir()
    summary = run_stage("extract", OmegaConf.create({"corpus": CorpusConfig(path=str(corpus))}), {},
                        out, cache=Cache(tmp_path / "cache"))
    rows = {r["file"]: r for r in json.loads((out / "report.json").read_text())}
    ids = [json.loads(x)["id"] for x in (out / "papers.jsonl").read_text().splitlines()]
    assert ids == ["b_final", "c_other"]  # same format: the one with more prose wins
    assert rows["a_draft.docx"]["status"] == "duplicate"
    assert rows["a_draft.docx"]["reason"].startswith("the same paper as b_final.docx (100% ")
    assert {rows["b_final.docx"]["status"], rows["c_other.docx"]["status"]} == {"warning"}  # short, kept
    assert summary["duplicate"] == 1 and summary["papers"] == 2


def test_corpus_files_recursive_case_insensitive_sorted(tmp_path):
    for name in ["b.DOCX", "a/c.docm", "d.doc", "~$lock.docx", "notes.txt", "e.pdf"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [f.relative_to(tmp_path).as_posix() for f in corpus_files(CorpusConfig(path=str(tmp_path)))]
    assert found == ["a/c.docm", "b.DOCX", "d.doc", "e.pdf", "~$lock.docx"]


def test_slug():
    assert slug("My Paper (v2)") == "my-paper-v2" and slug("JOSS_2020.final") == "joss_2020-final"
