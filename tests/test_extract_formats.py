"""extract stage, Markdown / LaTeX / ODT readers: real files written in the test, one paper in three formats."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from odt_factory import h, make_odt, note, p, span, table, tracked
from omegaconf import OmegaConf

from voicetune.cache import Cache
from voicetune.config import CorpusConfig
from voicetune.pipeline import run_stage
from voicetune.stages.extract import Rules, extract_paper
from voicetune.stages.extract.document import Included, ReadError

# The one paper every format writes: what its prose must read as after extraction.
ABSTRACT = "We trained deep networks on 120 mice and found that depth predicts speed [1]."
INTRO_1 = ("Mice run fast when the network is deep, as shown before [1, 2]. The speed grows "
           "as $v = k d^2$ for depth $d$ in 95% of trials.")
INTRO_2 = "A second paragraph with emphasis and a link to the data."
METHODS = "We measured every mouse twice (see Figure 1) and used the method of Jones et al. [2]."
EXPECTED = {"abstract": [ABSTRACT], "introduction": [INTRO_1, INTRO_2], "methods": [METHODS]}
HIDDEN = ("Ada Lovelace", "University", "CAPTION", "FOOTNOTE", "COMMENT", "CELL", "CODE",
          "REFERENCE", "AFTER")

MARKDOWN = r"""---
title: "Deep *Mice*"
author:
  - name: Ada Lovelace
    affiliation: University of Somewhere
abstract: |
  We trained deep networks on 120 mice and found that
  depth predicts speed [@smith2020].
---

# Introduction

Mice run *fast* when the network is deep, as shown before [@smith2020; @doi:10.1000/jones-2019].
The speed grows as $v = k d^2$ for depth $d$ in 95% of trials.[^note]

A second paragraph with **emphasis** and a [link](https://example.org/data) to the data.
<!-- COMMENT: rewrite this later -->

![CAPTION: mice on a wheel](mice.png){#fig-mice width=50%}

| CELL a | CELL b |
|--------|--------|
| 1      | 2      |

$$
E = mc^2
$$

Methods
=======

We measured every mouse twice (see @fig-mice) and used the method of Jones et al.
[@doi:10.1000/jones-2019].

```python
print("CODE")
```

[^note]: FOOTNOTE text that is not prose.

# References

::: {#refs}
REFERENCE list rendered here.
:::

AFTER the references.
"""

LATEX_MAIN = r"""\documentclass{article}
\usepackage{amsmath}
\newcommand{\tool}{networks}
\newcommand{\term}[1]{\emph{#1}}
\def\etal{et al.}
\title{Deep \emph{Mice}}
\author{Ada Lovelace \\ University of Somewhere}
\begin{document}
\maketitle
\begin{abstract}
We trained deep \tool{} on 120 mice and found that
depth predicts speed~\cite{smith2020}.
\end{abstract}
% COMMENT: the introduction lives in its own file
\input{sections/intro}
\section{Methods}
We measured every mouse twice (see \cref{fig:mice}) and used the method of Jones \etal{}
\citep{jones2019}.
\begin{verbatim}
print("CODE")
\end{verbatim}
\bibliography{refs}
\appendix
\section{AFTER the references}
\end{document}
"""

LATEX_INTRO = r"""\section{Introduction}\label{sec:intro}
Mice run \term{fast} when the network is deep, as shown before \cite{smith2020, jones2019}.
The speed grows as $v = k d^2$ for depth $d$ in 95\% of trials.\footnote{FOOTNOTE text.}

A second paragraph with \textbf{emphasis} and a \href{https://example.org/data}{link} to the data.
% COMMENT: rewrite this later

\begin{figure}[t]
\includegraphics{mice.png}
\caption{CAPTION: mice on a wheel}\label{fig:mice}
\end{figure}
\begin{table}\begin{tabular}{ll} CELL a & CELL b \\ 1 & 2 \end{tabular}\end{table}

\begin{equation}
E = mc^2
\end{equation}
"""


PNG = bytes.fromhex(  # a 1x1 grey PNG
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a49444154789c636000000002000148afa4710000000049454e44ae426082")


def odt_body() -> str:
    """The paper as an author types it in LibreOffice: markers and math as plain text."""
    return "".join([
        tracked("REFERENCE to a deleted sentence."),
        '<text:table-of-content text:name="toc"><text:index-body>'
        + p("Introduction CELL 1") + "</text:index-body></text:table-of-content>",
        p("Deep Mice", style="Title"), p("Ada Lovelace", style="Author"),
        p("University of Somewhere", style="Author"),
        p("We trained deep networks on 120 mice and found that depth predicts speed [1].",
          style="Abstract"),
        h("Introduction"),
        p("Mice run fast when the network is deep, as shown before [1, 2].",
          note("FOOTNOTE text."), ' The speed grows as $v = k d^2$ for depth $d$ in',
          '<text:s text:c="2"/>', "95% of trials."),
        p("A second paragraph with ", span("emphasis"), " and a ",
          '<text:a xlink:href="https://example.org/data">link</text:a>', " to the",
          '<text:change-start text:change-id="ct2"/>', " data",
          '<text:change-end text:change-id="ct2"/>', ".", '<text:change text:change-id="ct1"/>'),
        p('<office:annotation><text:p>COMMENT: rewrite this later</text:p></office:annotation>'),
        p('<draw:frame text:anchor-type="paragraph"><draw:text-box>'
          + p("CAPTION: mice on a wheel") + "</draw:text-box></draw:frame>"),
        p("Figure 1: CAPTION mice on a wheel.", style="Caption"),
        table("CELL a", "CELL b"),
        h("Methods", 1),
        p("We measured every mouse twice (see Figure 1) and used", "<text:tab/>",
          "the method of Jones et al.", "<text:line-break/>", "[2]."),
        p("print(CODE)", style="Preformatted_20_Text"),
        h("References"), p("REFERENCE list entry.", style="Bibliography_20_1"),
        p("AFTER the references."),
    ])


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.from_config(OmegaConf.structured(CorpusConfig(path=".")))


def write_paper(folder: Path, fmt: str) -> Path:
    """The reference paper as a real file of this format (LaTeX: main.tex + sections/intro.tex)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "md":
        (folder / "paper.md").write_text(MARKDOWN, encoding="utf-8")
        return folder / "paper.md"
    if fmt == "tex":
        (folder / "sections").mkdir(exist_ok=True)
        (folder / "sections" / "intro.tex").write_text(LATEX_INTRO, encoding="utf-8")
        (folder / "main.tex").write_text(LATEX_MAIN, encoding="utf-8")
        return folder / "main.tex"
    return make_odt(folder / "paper.odt", odt_body())


def sections(paper) -> dict[str, list[str]]:
    return {s.name: s.paragraphs for s in paper.sections}


def text_of(paper) -> str:
    return "\n".join(x for s in paper.sections for x in s.paragraphs)


# ------------------------------------------------------------------ one paper, three formats

@pytest.mark.parametrize("fmt", ["md", "tex", "odt"])
def test_same_paper_same_sections_and_prose(tmp_path, rules, fmt):
    paper = extract_paper(write_paper(tmp_path, fmt), rules)
    assert paper.title == "Deep Mice"
    assert sections(paper) == EXPECTED
    text = text_of(paper)
    assert not [word for word in HIDDEN if word in text]


def test_all_formats_in_one_corpus_run(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    for fmt in ("md", "tex", "odt"):
        write_paper(corpus / fmt, fmt)
    out.mkdir()
    summary = run_stage("extract", OmegaConf.create({"corpus": CorpusConfig(path=str(corpus))}),
                        {}, out, cache=Cache(tmp_path / "cache"))
    rows = {row["file"]: row for row in json.loads((out / "report.json").read_text())}
    # The chapter file is read through main.tex only: a row that says so, no paper.
    assert rows["tex/sections/intro.tex"]["status"] == "included"
    assert "no \\documentclass" in rows["tex/sections/intro.tex"]["reason"]
    for name in ("md/paper.md", "tex/main.tex", "odt/paper.odt"):
        assert rows[name]["sections"] == ["abstract", "introduction", "methods"], name
    # One paper in three formats is one paper: the same prose, so the best source (ODT states its
    # structure, as Word does) is kept and the other two rows say so.
    records = [json.loads(x) for x in (out / "papers.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == ["paper.odt"]
    for name in ("md/paper.md", "tex/main.tex"):
        assert rows[name]["status"] == "duplicate", name
        assert rows[name]["reason"].startswith("the same paper as odt/paper.odt (100% "), name
    assert summary["papers"] == 1 and summary["duplicate"] == 2 and summary["error"] == 0


# ------------------------------------------------------------------ Markdown

def read_md(tmp_path: Path, rules: Rules, text: str, name: str = "x.md"):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return extract_paper(tmp_path / name, rules)


def test_markdown_citations_become_numbered_markers(tmp_path, rules):
    body = ("# Introduction\n\nFirst [@a] then [see @b, p. 33; -@a] and @c said so; "
            "mail ada@example.org, [not a citation] and [@fig-x]; @tbl-y and @eq:z.\n")
    paper = read_md(tmp_path, rules, body)
    assert text_of(paper) == ("First [1] then [1, 2] and [3] said so; mail ada@example.org, "
                              "[not a citation] and Figure 1; Table 1 and Equation 1.")


def test_markdown_blocks_that_are_not_prose(tmp_path, rules):
    body = "\n".join([
        "# Introduction", "", "Kept one^[FOOTNOTE inline.] with $a_b$ and $$x=1$$ inline.", "",
        "<div>", "HTML block text", "</div>", "", "    CODE indented", "",
        "::: {#fig-a}", "![x](a.png)", "", "CAPTION of a figure div.", ":::", "",
        "+------+------+", "| CELL | CELL |", "+------+------+", "",
        "Table: CAPTION of a table.", "", "::: {.callout-note}", "Kept two.", ":::", "",
        "**A bold sub-heading**", "", "Term", ": Kept three.", "",
    ])
    paper = read_md(tmp_path, rules, body)
    assert sections(paper) == {"introduction": [
        "Kept one with $a_b$ and $$x=1$$ inline.", "Kept two.", "Kept three."]}


# Pandoc's own tables, as `pandoc paper.docx -t markdown` writes them: CommonMark alone reads
# their rules as thematic breaks or setext underlines, their rows as paragraphs and headings.
PANDOC_TABLES = """# Results

Before the tables.

  CELL Percentile   CELL Title
  ----------------- -----------------------
  100               CELL A robust DNA device
  99                CELL Toward nanoscopy

: CAPTION of a simple table.

  -----------------------------------------------------------------------
  CELL Nanotechnology     CELL Title              CELL Reference
  Percentile
  ----------------------- ----------------------- -----------------------
  100                     CELL Bioadhesive poly   [@a]
                          CELL methacrylate

  0                       CELL Photostable        [@b]
                          CELL luminescent
  -----------------------------------------------------------------------

Table: CAPTION of a multiline table.
-------     ------
  CELL      CELL
  CELL      CELL
-------     ------

+--------+--------+
| CELL a | CELL b |
+========+========+
| CELL 1 | CELL 2 |
+--------+--------+

Between the tables.

--------------------------------

Kept after a thematic break.

```
CODE header
----- -----
```

After the tables.
"""


def test_markdown_pandoc_simple_multiline_and_grid_tables(tmp_path, rules):
    paper = read_md(tmp_path, rules, PANDOC_TABLES)
    assert sections(paper) == {"results": [
        "Before the tables.", "Between the tables.", "Kept after a thematic break.",
        "After the tables."]}


def test_markdown_front_matter_and_heading_attributes(tmp_path, rules):
    body = ("---\ntitle: A *Title*\nsubtitle: SUB\nabstract: One.\n\n  Two.\n---\n\n"
            "## Results {#sec-results .unnumbered}\n\nR text.\n\n## References {-}\n\nREF\n")
    paper = read_md(tmp_path, rules, body, "y.qmd")
    assert paper.title == "A Title"
    assert [(s.name, s.title, s.paragraphs) for s in paper.sections] == [
        ("abstract", "Abstract", ["One. Two."]), ("results", "Results", ["R text."])]


def test_markdown_bad_input(tmp_path, rules):
    (tmp_path / "bad.md").write_bytes(b"# Intro\n\n\xff\xfe text")
    with pytest.raises(ReadError, match="not UTF-8 text"):
        extract_paper(tmp_path / "bad.md", rules)
    with pytest.raises(ReadError, match="malformed YAML front matter"):
        read_md(tmp_path, rules, "---\ntitle: [unclosed\n---\n\nText.\n")


# ------------------------------------------------------------------ LaTeX

def read_tex(tmp_path: Path, rules: Rules, body: str, preamble: str = ""):
    path = tmp_path / "x.tex"
    path.write_text(f"\\documentclass{{article}}\n{preamble}\n\\begin{{document}}\n{body}\n"
                    "\\end{document}\n", encoding="utf-8")
    return extract_paper(path, rules)


def test_latex_macros_expanded(tmp_path, rules):
    preamble = (r"\newcommand{\R}{\mathbb{R}}\newcommand\name{Mice\-Net}"
                r"\renewcommand{\pair}[2]{#2 and #1}\providecommand{\opt}[2][deep]{#1 #2}"
                r"\def\etal{et al.}\def\both#1#2{#1/#2}")
    body = (r"\section{Introduction} \name{} by Smith \etal\ maps $x \in \R$; "
            r"\pair{cats}{dogs}, \opt{nets} and \opt[wide]{nets}, \both{a}{b} with \texttt{mice-net}."
            "\n\n" r"\hypertarget{what-we-did-in-the-lab}{%" "\n"  # pandoc's anchor around a heading
            r"\section{What we did in the lab}\label{what-we-did-in-the-lab}}" "\n\n" r"We \mbox{ran}.")
    assert sections(read_tex(tmp_path, rules, body, preamble)) == {
        "introduction": [r"MiceNet by Smith et al. maps $x \in \R$; dogs and cats, deep nets and "
                         "wide nets, a/b with mice-net."], "unknown": ["We ran."]}


def test_latex_text_unicode_comments_and_lists(tmp_path, rules):
    body = "\n".join([
        r"\section*{Introduction}", r"Caf\'e na\"ive {\ss} \& 50\% --- ``quoted'' 1--2~km%",
        r"   joined.  \iffalse COMMENT \fi Escaped \% stays.", r"% COMMENT line", "",
        r"\begin{itemize}\item One item. \item Two items.\end{itemize}",
        r"\paragraph{Run-in heading.} Its text.", r"\begin{comment}COMMENT env\end{comment}",
    ])
    paper = read_tex(tmp_path, rules, body)
    assert sections(paper) == {"introduction": [
        "Café naïve ß & 50% — “quoted” 1–2 kmjoined. Escaped % stays.",
        "One item.", "Two items.", "Its text."]}


def test_latex_math_kept_as_written_alone_it_is_not_prose(tmp_path, rules):
    body = "\n".join([
        r"\section{Results} We have \(a_b\) and", r"\begin{align} y &= 2x \end{align}",
        r"for all \[ x > 0 \] here.", "", r"\[ z = 1 \]", "", r"\begin{equation*} w \end{equation*}",
    ])
    assert text_of(read_tex(tmp_path, rules, body)) == (
        r"We have \(a_b\) and \begin{align} y &= 2x \end{align} for all \[ x > 0 \] here.")


def test_latex_chapter_without_documentclass_is_included(tmp_path, rules):
    (tmp_path / "chapter.tex").write_text("\\section{Methods}\nText.\n")
    with pytest.raises(Included, match="no \\\\documentclass"):
        extract_paper(tmp_path / "chapter.tex", rules)


def test_latex_missing_input_in_body_is_an_error_in_preamble_skipped(tmp_path, rules):
    with pytest.raises(ReadError, match=r"\\input\{gone\}: no such file"):
        read_tex(tmp_path, rules, "\\section{Methods}\n\\input{gone}\nText.", r"\input{glyphtounicode}")


def test_latex_include_changes_the_digest(tmp_path, rules):
    main = write_paper(tmp_path, "tex")
    before = extract_paper(main, rules).sha256
    (tmp_path / "sections" / "intro.tex").write_text(LATEX_INTRO + "\nMore text.\n")
    assert extract_paper(main, rules).sha256 != before


# ------------------------------------------------------------------ ODT

def read_odt(tmp_path: Path, rules: Rules, body: str, **kw):
    return extract_paper(make_odt(tmp_path / "x.odt", body, **kw), rules)


def test_odt_automatic_styles_and_bold_sub_headings(tmp_path, rules):
    body = "".join([
        p("Deep Mice", style="Title"), p("Introduction", style="P1"),  # P1: parent Heading 1
        p("Intro text."), p(span("Datasets")), p("More intro."),  # T1: bold span
        p("Bold paragraph style", style="P2"), h("Results", 1), p("Results text."),
    ])
    paper = read_odt(tmp_path, rules, body)
    assert paper.title == "Deep Mice"
    assert sections(paper) == {"introduction": ["Intro text.", "More intro."],
                               "results": ["Results text."]}


def test_odt_lists_sections_and_zotero_bibliography(tmp_path, rules):
    body = (h("Discussion") + "<text:list><text:list-item>" + p("Item one.")
            + "</text:list-item></text:list>" + '<text:section text:name="Section1">'
            + p("In a section.") + "</text:section>"
            + '<text:section text:name="ZOTERO_BIBL 1">' + p("REFERENCE.") + "</text:section>"
            + p("AFTER."))
    assert sections(read_odt(tmp_path, rules, body)) == {"discussion": ["Item one.", "In a section."]}


@pytest.mark.parametrize("kind", ["notzip", "encrypted", "spreadsheet", "malformed", "nocontent"])
def test_odt_bad_files_one_line_errors(tmp_path, rules, kind):
    path = tmp_path / f"{kind}.odt"
    expected = {
        "notzip": "not an .odt (not a zip archive)", "encrypted": "encrypted .odt",
        "spreadsheet": "not an OpenDocument text (application/vnd.oasis.opendocument.spreadsheet)",
        "malformed": "malformed XML in content.xml", "nocontent": "zip without content.xml",
    }[kind]
    if kind == "notzip":
        path.write_text("plain text")
    elif kind == "nocontent":
        make_odt(path, "", omit=("content.xml",))
    else:
        make_odt(path, p("x"), manifest_extra='<manifest:encryption-data/>' * (kind == "encrypted"),
                 mimetype="application/vnd.oasis.opendocument.spreadsheet" if kind == "spreadsheet"
                 else "application/vnd.oasis.opendocument.text",
                 content_xml={"malformed": "<office:document-content>",
                              "encrypted": "\x8f\x03 ciphertext"}.get(kind))
    with pytest.raises(ReadError) as err:
        extract_paper(path, rules)
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(shutil.which("pandoc") is None, reason="pandoc is not installed")
def test_odt_written_by_pandoc_reads_like_its_markdown(tmp_path, rules):
    """pandoc's own .odt of a Markdown paper (no citations or math: pandoc writes those apart)."""
    text = MARKDOWN.split("# References")[0]
    for old in ("[@smith2020]", " [@smith2020; @doi:10.1000/jones-2019]", "[@doi:10.1000/jones-2019]",
                "@fig-mice", "$v = k d^2$", "$d$", "$$\nE = mc^2\n$$"):
        text = text.replace(old, "")
    md = tmp_path / "p.md"
    md.write_text(text, encoding="utf-8")
    (tmp_path / "mice.png").write_bytes(PNG)  # pandoc embeds it in a frame, caption apart
    subprocess.run(["pandoc", md.name, "-o", "p.odt"], check=True, capture_output=True,
                   cwd=tmp_path)
    from_md, from_odt = extract_paper(md, rules), extract_paper(tmp_path / "p.odt", rules)
    assert from_odt.title == from_md.title == "Deep Mice"
    assert sections(from_odt) == sections(from_md)
    assert sections(from_md)["methods"] == ["We measured every mouse twice (see ) and used the "
                                            "method of Jones et al. ."]
