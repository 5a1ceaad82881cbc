"""Build real .docx files in code, so each OOXML construct can be placed exactly.

`make_docx(path, body)` writes a minimal valid package ([Content_Types].xml, _rels/.rels,
word/document.xml, word/styles.xml, word/_rels/document.xml.rels, word/comments.xml,
word/footnotes.xml); `body` is the inner XML of w:body, written with the helpers below
(`p`, `r`, `heading`, ...) or as raw WordprocessingML where a test needs a rare construct.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NAMESPACES = (
    f'xmlns:w="{W}" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
    'xmlns:m="http://schemas.openxmlformats.org/officeDocument/2006/math" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
    'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    'xmlns:v="urn:schemas-microsoft-com:vml"'
)
CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>
<Override PartName="/word/comments.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.comments+xml"/>
<Override PartName="/word/footnotes.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"/>
</Types>"""
ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>
</Relationships>"""
DOC_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/comments" Target="comments.xml"/>
<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/footnotes" Target="footnotes.xml"/>
</Relationships>"""


def _style(sid: str, name: str, based: str | None = None, ppr: str = "", rpr: str = "",
           kind: str = "paragraph") -> str:
    based_xml = f'<w:basedOn w:val="{based}"/>' if based else ""
    return (f'<w:style w:type="{kind}" w:styleId="{sid}"><w:name w:val="{name}"/>{based_xml}'
            f"<w:pPr>{ppr}</w:pPr><w:rPr>{rpr}</w:rPr></w:style>")


# Word's built-in ids, plus the constructs tests need: a custom heading style that only
# inherits its outline level (MyChapter basedOn Heading1), a localized id for heading 2
# (German Word writes "berschrift2"), a bold paragraph style and the note reference style.
STYLES = "".join([
    _style("Normal", "Normal"),
    _style("Title", "Title", "Normal", rpr="<w:b/>"),
    *[_style(f"Heading{n}", f"heading {n}", "Normal", ppr=f'<w:outlineLvl w:val="{n - 1}"/>',
             rpr="<w:b/>") for n in range(1, 5)],
    _style("MyChapter", "My Chapter", "Heading1"),
    _style("berschrift2", "heading 2", "Normal", ppr='<w:outlineLvl w:val="1"/>'),
    _style("Caption", "caption", "Normal"),
    _style("Author", "Author", "Normal"),
    _style("StrongPara", "Strong Para", "Normal", rpr="<w:b/>"),
    _style("FootnoteReference", "footnote reference", kind="character",
           rpr='<w:vertAlign w:val="superscript"/>'),
])
COMMENTS = (f'<w:comments {NAMESPACES}><w:comment w:id="0" w:author="Reviewer">'
            "<w:p><w:r><w:t>COMMENT TEXT must never appear</w:t></w:r></w:p></w:comment></w:comments>")
FOOTNOTES = (f'<w:footnotes {NAMESPACES}><w:footnote w:id="1"><w:p><w:r>'
             "<w:t>FOOTNOTE TEXT is not prose</w:t></w:r></w:p></w:footnote></w:footnotes>")


def make_docx(path: Path, body: str, *, document_xml: str | None = None,
              styles: str | None = STYLES, parts: dict[str, str | bytes] | None = None,
              omit: tuple[str, ...] = ()) -> Path:
    """Write a .docx whose w:body holds `body`; `document_xml` replaces the whole part."""
    files: dict[str, str | bytes] = {
        "[Content_Types].xml": CONTENT_TYPES,
        "_rels/.rels": ROOT_RELS,
        "word/_rels/document.xml.rels": DOC_RELS,
        "word/document.xml": document_xml if document_xml is not None else (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
            f"<w:document {NAMESPACES}><w:body>{body}<w:sectPr/></w:body></w:document>"),
        "word/comments.xml": COMMENTS,
        "word/footnotes.xml": FOOTNOTES,
    }
    if styles is not None:
        files["word/styles.xml"] = f'<w:styles {NAMESPACES}>{styles}</w:styles>'
    files.update(parts or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            if name not in omit:
                zf.writestr(name, data)
    return path


def t(text: str) -> str:
    """A w:t that keeps its spaces."""
    return f'<w:t xml:space="preserve">{escape(text)}</w:t>'


def r(text: str, bold: bool = False, style: str | None = None, rpr: str = "") -> str:
    """One run; `rpr` is raw run-property XML (w:caps, w:rPrChange, ...)."""
    props = (f'<w:rStyle w:val="{style}"/>' if style else "") + ('<w:b/>' if bold else "") + rpr
    return f"<w:r>{f'<w:rPr>{props}</w:rPr>' if props else ''}{t(text)}</w:r>"


def p(*content: str, style: str | None = None, ppr: str = "") -> str:
    """A paragraph; plain strings become runs, strings starting with '<' are raw XML."""
    inner = "".join(c if c.startswith("<") else r(c) for c in content)
    style_xml = f'<w:pStyle w:val="{style}"/>' if style else ""
    props = f"<w:pPr>{style_xml}{ppr}</w:pPr>" if style_xml or ppr else ""
    return f"<w:p>{props}{inner}</w:p>"


def heading(text: str, level: int = 1) -> str:
    """A paragraph in built-in style Heading N."""
    return p(text, style=f"Heading{level}")


def title(text: str) -> str:
    return p(text, style="Title")


def ins(*runs: str) -> str:
    """Tracked insertion wrapping runs."""
    return f'<w:ins w:id="91" w:author="A" w:date="2024-01-01T00:00:00Z">{"".join(runs)}</w:ins>'


def dele(text: str, rpr: str = "") -> str:
    """Tracked deletion of `text` (one run, with run properties `rpr`)."""
    props = f"<w:rPr>{rpr}</w:rPr>" if rpr else ""
    return (f'<w:del w:id="92" w:author="A" w:date="2024-01-01T00:00:00Z"><w:r>{props}'
            f'<w:delText xml:space="preserve">{escape(text)}</w:delText></w:r></w:del>')


def move_from(text: str) -> str:
    return f'<w:moveFrom w:id="93" w:author="A">{r(text)}</w:moveFrom>'


def move_to(text: str) -> str:
    return f'<w:moveTo w:id="94" w:author="A">{r(text)}</w:moveTo>'


DELETED_MARK = '<w:rPr><w:del w:id="95" w:author="A" w:date="2024-01-01T00:00:00Z"/></w:rPr>'
# The paragraph mark inserted, or moved away / here (the first w:pPr/w:rPr of a paragraph).
INSERTED_MARK = '<w:rPr><w:ins w:id="96" w:author="A" w:date="2024-01-01T00:00:00Z"/></w:rPr>'
MOVED_FROM_MARK = '<w:rPr><w:moveFrom w:id="99" w:author="A"/></w:rPr>'
MOVED_TO_MARK = '<w:rPr><w:moveTo w:id="100" w:author="A"/></w:rPr>'


def ppr_change(old: str = "") -> str:
    """Tracked paragraph-property change (last in w:pPr); `old` is the former w:pPr content."""
    return (f'<w:pPrChange w:id="97" w:author="A" w:date="2024-01-01T00:00:00Z">'
            f"<w:pPr>{old}</w:pPr></w:pPrChange>")


def rpr_change(old: str = "") -> str:
    """Tracked run-property change (last in w:rPr); `old` is the former w:rPr content."""
    return (f'<w:rPrChange w:id="98" w:author="A" w:date="2024-01-01T00:00:00Z">'
            f"<w:rPr>{old}</w:rPr></w:rPrChange>")


def complex_field(code: str, result: str) -> str:
    """fldChar begin / instrText / separate / result / end, as Word writes a REF or CITATION."""
    return ('<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
            f'<w:r><w:instrText xml:space="preserve"> {escape(code)} </w:instrText></w:r>'
            '<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
            f"{r(result)}"
            '<w:r><w:fldChar w:fldCharType="end"/></w:r>')


def simple_field(code: str, result: str) -> str:
    return f'<w:fldSimple w:instr="{escape(code)}">{r(result)}</w:fldSimple>'


def text_box(text: str) -> str:
    """A DrawingML text box with its VML fallback, as Word 2010+ writes it."""
    inner = f"<w:txbxContent>{p(text)}</w:txbxContent>"
    return ("<w:r><mc:AlternateContent><mc:Choice Requires=\"wps\"><w:drawing><wp:anchor>"
            f"<a:graphic><a:graphicData><wps:wsp><wps:txbx>{inner}</wps:txbx></wps:wsp>"
            "</a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice><mc:Fallback>"
            f"<w:pict><v:shape><v:textbox>{inner}</v:textbox></v:shape></w:pict>"
            "</mc:Fallback></mc:AlternateContent></w:r>")


def table(*rows: list[str]) -> str:
    cells = "".join("<w:tr>" + "".join(f"<w:tc>{p(c)}</w:tc>" for c in row) + "</w:tr>"
                    for row in rows)
    return f"<w:tbl><w:tblPr/>{cells}</w:tbl>"


def prose(seed: str, words: int = 60) -> str:
    """A sentence-like paragraph text of about `words` words starting with `seed`."""
    filler = " ".join(f"{seed.split()[0].lower()}{i}" for i in range(words))
    return f"{seed} {filler}."


def paper(sections: list[tuple[str, list[str]]], *, title_text: str = "A Study of Things",
          level: int = 1, front: tuple[str, ...] = ("Ada Lovelace", "Dept. of Maths, Uni X")) -> str:
    """Body XML of a conventional paper: title, author lines, then headed sections."""
    body = [title(title_text)] + [p(line, style="Author") for line in front]
    for name, paras in sections:
        body.append(heading(name, level))
        body.extend(p(x) if not x.startswith("<") else x for x in paras)
    return "".join(body)


def short_papers(folder: Path, n: int = 3) -> Path:
    """`n` Word papers of two one-paragraph sections (~45 real words each): a corpus whose every
    unit is short, so a pipeline test's greedy generations stay short too."""
    import random

    from pdf_factory import sentence

    rng = random.Random(0)
    for i in range(n):
        body = title(f"Short paper {i}")
        for name in ("Introduction", "Methods"):
            body += heading(name) + p(" ".join(sentence(rng) for _ in range(3)))
        make_docx(folder / f"short{i}.docx", body)
    return folder
