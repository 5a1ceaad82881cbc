"""extract stage on PDFs: journal-style papers printed by headless Chromium (pdf_factory).

The papers are printed once per session (~2 s with the browser's start); tests that need
them are `slow` like every browser test here, the rest build their PDFs with pypdfium2.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from browser import chrome
from omegaconf import OmegaConf
from pdf_factory import COMPOUNDS, HEADER, PLAIN, Spec, paper_html, print_pdf, words

from voicetune.cache import Cache
from voicetune.config import CorpusConfig
from voicetune.pipeline import run_stage
from voicetune.stages.extract import Rules, extract_paper
from voicetune.stages.extract.document import ReadError
from voicetune.stages.extract.pdf import NO_TEXT, normalize, read_pdf

MARKERS = ("HEADER", "FOOTNOTE", "CAPTION", "CELL", "REFERENCE", "AXIS", "Journal", "LOVELACE")


@pytest.fixture(scope="session")
def layouts(tmp_path_factory) -> dict[str, tuple[Path, Spec]]:
    """name -> (printed PDF, the spec that records its prose): a 4-page two-column journal
    paper, and the same paper in one ragged column with bold body-type headings."""
    folder = tmp_path_factory.mktemp("pdf")
    specs = {"journal": Spec(paragraphs=4), "plain": Spec(paragraphs=4, css=PLAIN),
             "table": Spec(paragraphs=4, long_table=True)}
    with chrome(folder / "profile") as driver:
        return {name: (print_pdf(driver, paper_html(spec), folder / f"{name}.pdf"), spec)
                for name, spec in specs.items()}


@pytest.fixture(scope="session")
def printed(layouts) -> tuple[Path, Spec]:
    return layouts["journal"]


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.from_config(OmegaConf.structured(CorpusConfig(path=".")))


@pytest.fixture(scope="module")
def paper(printed, rules):
    return extract_paper(printed[0], rules)


def prose_of(paper) -> list[str]:
    return [p for s in paper.sections for p in s.paragraphs]


def page_texts(path: Path) -> list[str]:
    """What a plain pypdfium2 reading gives: every page's text as PDFium lays it out."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    try:
        return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()


@pytest.mark.slow
def test_the_printed_paper_has_what_real_papers_have(printed):
    pages = page_texts(printed[0])
    assert len(pages) >= 3
    assert all(HEADER in text for text in pages)  # a running header on every page
    assert sum(text.count("‐\r\n") + text.count("\ufffe") for text in pages) > 20  # hyphenation
    assert "FOOTNOTE" in pages[0] and "Figure 1:" in "".join(pages)


@pytest.mark.slow
def test_sections_title_and_prose_precision(paper, printed):
    _, spec = printed
    assert [s.name for s in paper.sections] == [
        "abstract", "introduction", "methods", "results", "discussion"]
    assert paper.title == "Deep Mice Learn Slowly: A Synthetic Study"
    got = Counter(w for p in prose_of(paper) for w in words(p))
    want = Counter(w for p in spec.prose for w in words(p))
    overlap = sum((got & want).values())
    assert overlap / sum(got.values()) >= 0.95  # precision (measured: 1.000)
    assert overlap / sum(want.values()) >= 0.95  # recall (measured: 1.000)
    assert not paper.warnings


@pytest.mark.slow
def test_paragraphs_whole_and_in_reading_order(paper, printed):
    """Paragraphs that cross a column or a page come out whole, in the source's order."""
    _, spec = printed
    out = prose_of(paper)
    whole = [p for p in out if p in spec.prose]
    assert len(whole) >= 0.9 * len(spec.prose)
    assert whole == [p for p in spec.prose if p in whole]
    # The intro's second paragraph starts in the left column of page 1 and ends in the right one.
    intro = paper.sections[1].paragraphs
    assert intro[:2] == spec.prose[1:3]


@pytest.mark.slow
def test_page_furniture_notes_captions_tables_references_left_out(paper):
    text = "\n".join(prose_of(paper))
    for marker in MARKERS:
        assert marker not in text, marker
    assert "Participants and materials" not in text  # a sub-heading is not prose
    assert not any(p.isdigit() for p in " ".join(prose_of(paper)).split())  # page, line numbers


@pytest.mark.slow
def test_hyphenation_joined_compounds_kept(paper, printed):
    _, spec = printed
    out = " ".join(prose_of(paper))
    vocabulary = {w for p in spec.prose for w in words(p)}
    assert [w for w in words(out) if w not in vocabulary] == []  # no "exam" + "ple" fragments
    for compound in COMPOUNDS:
        assert out.count(compound) == " ".join(spec.prose).count(compound), compound


@pytest.mark.slow
def test_headings_get_levels_and_the_title_level_0(printed):
    paras = read_pdf(printed[0]).paragraphs
    levels = {p.text: p.level for p in paras if p.level is not None}
    assert levels["Deep Mice Learn Slowly: A Synthetic Study"] == 0
    assert levels["1 Introduction"] == levels["4 Discussion"] == levels["References"] == 1
    assert levels["2.1 Participants and materials"] == 2
    assert not [p for p in paras if "CAPTION" in p.text and not p.text.startswith("Table 1:")]


def test_ligatures_and_soft_hyphens_normalized():
    assert normalize("ﬁrst ﬂow, eﬀect, oﬃce, baﬄe, signif\xadicant") == (
        "first flow, effect, office, baffle, significant")


def scan(path: Path) -> Path:
    """A PDF whose page is only an image, as a scanner makes it."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    page = pdf.new_page(595, 842)
    bitmap = pdfium.PdfBitmap.new_native(200, 280, pdfium.raw.FPDFBitmap_BGR)
    bitmap.fill_rect((255, 255, 255, 255), 0, 0, 200, 280)
    bitmap.fill_rect((0, 0, 0, 255), 20, 20, 160, 8)  # a "line of print"
    image = pdfium.PdfImage.new(pdf)
    image.set_bitmap(bitmap)
    image.set_matrix(pdfium.PdfMatrix().scale(595, 842))
    page.insert_obj(image)
    page.gen_content()
    pdf.save(path)
    pdf.close()
    return path


def test_no_text_layer_is_a_one_line_error(tmp_path):
    with pytest.raises(ReadError, match="no text layer") as info:
        read_pdf(scan(tmp_path / "scan.pdf"))
    assert str(info.value) == NO_TEXT and "ocrmypdf" in NO_TEXT


def test_bad_pdfs_are_one_line_errors(tmp_path):
    pypdf = pytest.importorskip("pypdf", reason="needs pypdf to encrypt a PDF (pip install pypdf)")
    good = scan(tmp_path / "good.pdf")
    writer = pypdf.PdfWriter(clone_from=good)
    writer.encrypt("secret", algorithm="RC4-128")
    writer.write(tmp_path / "locked.pdf")
    data = good.read_bytes()
    cases = {"empty.pdf": b"", "text.pdf": b"just some words", "cut.pdf": data[:len(data) // 2],
             "garbage.pdf": b"%PDF-1.7\n" + b"x" * 2000}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    expected = {"locked.pdf": "encrypted PDF (needs a password)", "empty.pdf": "empty file",
                "text.pdf": "not a PDF", "cut.pdf": "corrupt or truncated PDF (PDFium: data",
                "garbage.pdf": "corrupt or truncated PDF"}
    for name, reason in expected.items():
        with pytest.raises(ReadError) as info:
            read_pdf(tmp_path / name)
        assert reason in str(info.value) and "\n" not in str(info.value), name


@pytest.mark.slow
def test_stage_reads_pdfs_next_to_word_files(tmp_path, printed):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    corpus.mkdir(), out.mkdir()
    (corpus / "Paper.PDF").write_bytes(printed[0].read_bytes())
    (corpus / "scan.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    run_stage("extract", OmegaConf.create({"corpus": CorpusConfig(path=str(corpus))}), {}, out,
              cache=Cache(tmp_path / "cache"))
    rows = {row["file"]: row for row in json.loads((out / "report.json").read_text())}
    assert rows["Paper.PDF"]["status"] == "ok"
    assert rows["Paper.PDF"]["sections"][:2] == ["abstract", "introduction"]
    assert rows["scan.pdf"]["status"] == "error"
    assert "## 1 Introduction" in (out / "papers" / "paper.md").read_text()


@pytest.mark.slow
def test_body_size_table_left_out_paragraphs_around_it_whole(layouts, rules):
    """A table in body type, cells of long text over several lines, inside a column."""
    path, spec = layouts["table"]
    text = "\n".join(prose_of(extract_paper(path, rules)))
    assert "CELL" in path.with_suffix(".html").read_text()
    assert not [w for w in text.split() if w.isupper() and len(w) > 3], "a cell's words in the prose"
    out = prose_of(extract_paper(path, rules))
    assert [p for p in out if p in spec.prose] == spec.prose  # every paragraph whole, in order


@pytest.mark.slow
def test_one_column_ragged_layout_with_bold_headings(layouts, rules):
    """One column, ragged right, spaced paragraphs, headings in bold body type."""
    path, spec = layouts["plain"]
    paper = extract_paper(path, rules)
    assert [s.name for s in paper.sections] == [
        "abstract", "introduction", "methods", "results", "discussion"]
    assert prose_of(paper) == spec.prose
    levels = {p.text: p.level for p in read_pdf(path).paragraphs if p.level}
    assert levels["2 Methods"] == 1 and levels["2.1 Participants and materials"] == 2
