"""OpenDocument Text reader: an .odt file (LibreOffice, pandoc, Google Docs) -> its body paragraphs.

One lxml parse of content.xml, and one of styles.xml per distinct styles.xml. As for Word
(`ooxml`), what is not accepted prose is removed in C before the paragraph loop: the
tracked-changes block (ODF keeps deleted text only there, so dropping it accepts every
change), notes, comments and frames (images, text boxes, display formulas; an inline
formula keeps its text); tables, the table of contents and other indexes are never visited. Automatic styles ("P3") are resolved through their parent to the style a
user picked ("Heading 1", "Title", "Abstract", "Bibliography").
"""

from __future__ import annotations

import hashlib
import html
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from voicetune.stages.extract.document import Document, Para, ReadError
from voicetune.stages.extract.ooxml import STYLES_KEPT, _squash, style_level

NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "fo": "urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
}


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


T_P, T_H, T_LIST, T_SECTION, T_SPAN = (
    _q("text", "p"), _q("text", "h"), _q("text", "list"), _q("text", "section"), _q("text", "span"))
T_STYLE, T_OUTLINE, T_NAME = _q("text", "style-name"), _q("text", "outline-level"), _q("text", "name")
S_STYLE, S_NAME, S_DISPLAY, S_PARENT, S_FAMILY = (
    _q("style", "style"), _q("style", "name"), _q("style", "display-name"),
    _q("style", "parent-style-name"), _q("style", "family"))
S_OUTLINE, S_TEXTPROPS, FO_WEIGHT = (
    _q("style", "default-outline-level"), _q("style", "text-properties"), _q("fo", "font-weight"))
D_FRAME, D_OBJECT, T_ANCHOR, XLINK_HREF = (
    _q("draw", "frame"), _q("draw", "object"), _q("text", "anchor-type"), _q("xlink", "href"))
LIST_ITEMS = {_q("text", "list-item"), _q("text", "list-header")}
# Removed with their subtree: deletions live only in text:tracked-changes; notes, comments
# and frames (images, text boxes, formulas) are not the paragraph's prose.
DROP_TAGS = [_q("text", "tracked-changes"), _q("text", "note"), _q("office", "annotation"),
             _q("draw", "frame"), _q("draw", "custom-shape"), _q("text", "ruby-text")]
SPACES = [_q("text", "s"), _q("text", "tab"), _q("text", "line-break")]
END_TAGS = {_q("text", "bibliography")}
# Sections holding a reference list: pandoc's citeproc "refs", Zotero's "ZOTERO_BIBL ...".
END_SECTION = re.compile(r"^(?:refs$|zotero_bibl|bibliography)", re.I)
ODT_MIMETYPES = (b"application/vnd.oasis.opendocument.text",
                 b"application/vnd.oasis.opendocument.text-template")
# LibreOffice's caption categories are paragraph styles named after the category.
CAPTION_STYLES = {"figure", "table", "illustration", "drawing", "text", "figurecaption",
                  "tablecaption", "caption"}
CODE_STYLES = {"preformatted text", "source text", "source code"}
BOLD_WEIGHTS = {"bold", "600", "700", "800", "900"}
_ANNOTATION = re.compile(rb"<(?:\w+:)?annotation\b[^>]*>(.*?)</", re.S)  # StarMath source
_TAG = re.compile(rb"<[^>]*>")
_ESCAPED = re.compile(r"_([0-9a-fA-F]{2})_")  # style names encode " " as "_20_"
_OPTIONS = dict(resolve_entities=False, no_network=True, collect_ids=False, huge_tree=True)
_PARSER = etree.XMLParser(**_OPTIONS)


@dataclass(slots=True)
class Style:
    name: str  # the display name, lower case ("heading 1", "text body")
    level: int | None  # 0 = title, 1-10 = outline level, None = body text
    bold: bool | None  # None: not set here or in a parent (inherits)


def read_document(path: Path, heading_chars: int = 80) -> Document:
    """Body paragraphs of an .odt with accepted tracked changes; ReadError if unreadable."""
    data = path.read_bytes()
    if not data.startswith(b"PK"):
        raise ReadError("empty file (0 bytes)" if not data else "not an .odt (not a zip archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            mimetype = _member(zf, "mimetype").strip()
            if mimetype and mimetype not in ODT_MIMETYPES:
                raise ReadError(f"not an OpenDocument text ({mimetype.decode(errors='replace')})")
            content = _content(zf)
            _inline_formulas(content, zf)
            styles = Styles(content, named_styles(zf))
    except zipfile.BadZipFile as exc:
        raise ReadError(f"corrupt zip archive ({exc})") from None
    return Document(body_paragraphs(content, styles, heading_chars), hashlib.sha256(data).hexdigest())


def _member(zf: zipfile.ZipFile, name: str) -> bytes:
    """A part's bytes, b"" when the package lacks it."""
    try:
        return zf.read(name)
    except KeyError:
        return b""


def _content(zf: zipfile.ZipFile) -> etree._Element:
    """content.xml parsed; an encrypted package (its content.xml is ciphertext) says so."""
    xml = _member(zf, "content.xml")
    if not xml:
        raise ReadError("zip without content.xml: not an OpenDocument file")
    try:
        return etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError as exc:
        if b"encryption-data" in _member(zf, "META-INF/manifest.xml"):
            raise ReadError("encrypted .odt (password-protected): save it without a password") from None
        raise ReadError(f"malformed XML in content.xml: {exc}") from None


def _inline_formulas(content: etree._Element, zf: zipfile.ZipFile) -> None:
    """An inline formula (a frame anchored as a character) keeps its text in the sentence.

    The text is the StarMath source LibreOffice stores as an annotation ("x^2"), else the
    MathML's text (pandoc). Formulas on a line of their own stay frames and are dropped.
    """
    for frame in content.iter(D_FRAME):
        obj = frame.find(D_OBJECT) if frame.get(T_ANCHOR) == "as-char" else None
        if obj is None:
            continue
        xml = _member(zf, obj.get(XLINK_HREF, "").removeprefix("./").rstrip("/") + "/content.xml")
        # A regex, not a parse: a paper has dozens of formulas of ~150 bytes each.
        note = _ANNOTATION.search(xml)
        text = html.unescape((note.group(1) if note else _TAG.sub(b"", xml)).decode(errors="replace"))
        frame.tail = " ".join(text.split()) + (frame.tail or "")


class Styles:
    """(family, name) -> Style, automatic styles resolved through their parents on first use."""

    def __init__(self, content: etree._Element, named: dict):
        self._els = dict(named)
        automatic = content.find(_q("office", "automatic-styles"))
        for el in automatic.iterchildren(S_STYLE) if automatic is not None else ():
            self._els[el.get(S_FAMILY), el.get(S_NAME)] = el
        self._cache: dict[tuple, Style] = {}

    def get(self, family: str, name: str | None) -> Style | None:
        """The resolved style, None for no style name."""
        if name is None:
            return None
        key = (family, name)
        style = self._cache.get(key)
        if style is None:
            style = self._cache[key] = self._resolve(family, name)
        return style

    def _resolve(self, family: str, name: str) -> Style:
        el, display, outline, bold, seen = self._els.get((family, name)), None, None, None, set()
        while el is not None and name not in seen:  # `seen` guards parent cycles
            seen.add(name)
            if display is None and not _is_automatic(el):
                display = el.get(S_DISPLAY) or _decoded(name)
            if outline is None and el.get(S_OUTLINE):
                outline = int(el.get(S_OUTLINE))
            props = el.find(S_TEXTPROPS)
            if bold is None and props is not None and props.get(FO_WEIGHT):
                bold = props.get(FO_WEIGHT) in BOLD_WEIGHTS
            name = el.get(S_PARENT)
            el = self._els.get((family, name))
        lower = (display or _decoded(name) or "normal").lower()
        lower = "caption" if lower in CAPTION_STYLES else lower
        lower = "bibliography" if lower.startswith("bibliography") else lower
        level = style_level(lower, None)
        return Style(lower, level if level is not None else outline, bold)


# Papers from one template (every pandoc paper, a journal's .ott) carry a byte-identical
# styles.xml (pandoc's is 56 KB, 0.4 ms to parse: as long as the rest of a 5,000-word
# paper takes): parsed once per corpus. Keyed by the zip entry's CRC-32 and size, so a
# cached one is not even decompressed.
_NAMED_BY_CRC: dict[tuple[int, int], dict] = {}


def named_styles(zf: zipfile.ZipFile) -> dict:
    """(family, name) -> style:style element of styles.xml, shared by files with the same one."""
    try:
        info = zf.getinfo("styles.xml")
    except KeyError:
        return {}
    key = (info.CRC, info.file_size)
    named = _NAMED_BY_CRC.get(key)
    if named is None:
        if len(_NAMED_BY_CRC) >= STYLES_KEPT:
            del _NAMED_BY_CRC[next(iter(_NAMED_BY_CRC))]  # the oldest
        try:
            root = etree.fromstring(zf.read(info), _PARSER)
        except etree.XMLSyntaxError as exc:
            raise ReadError(f"malformed XML in styles.xml: {exc}") from None
        named = _NAMED_BY_CRC[key] = {(el.get(S_FAMILY), el.get(S_NAME)): el
                                      for el in root.iter(S_STYLE)}
    return named


def _decoded(name: str | None) -> str | None:
    """"Heading_20_1" -> "Heading 1" (a style referred to without a definition)."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), name) if name else None


def _is_automatic(el: etree._Element) -> bool:
    return el.getparent().tag == _q("office", "automatic-styles")


def body_paragraphs(root: etree._Element, styles: Styles, heading_chars: int) -> list[Para]:
    """Clean the tree, then read the body's paragraphs and headings in order."""
    body = root.find(f"{_q('office', 'body')}/{_q('office', 'text')}")
    if body is None:
        raise ReadError("content.xml has no office:text body: not a text document")
    for el in body.iter(*SPACES):
        el.text = " "
    etree.strip_elements(body, *DROP_TAGS, with_tail=False)
    out: list[Para] = []
    for el in _iter_body(body):
        if el is None:
            out.append(Para("References", "bibliography", None, False))
            break
        text = _squash(etree.tostring(el, method="text", encoding=str, with_tail=False))
        if text:
            para = _para(el, text, styles, heading_chars)
            if para is not None:
                out.append(para)
    return out


def _iter_body(container: etree._Element):
    """Paragraphs and headings, through lists and sections; None where a reference list starts."""
    for el in container:
        tag = el.tag
        if tag in (T_P, T_H):
            yield el
        elif tag == T_LIST or tag in LIST_ITEMS:
            yield from _iter_body(el)
        elif tag == T_SECTION:
            if END_SECTION.match(el.get(T_NAME) or ""):
                yield None
                return
            yield from _iter_body(el)
        elif tag in END_TAGS:
            yield None
            return
        # tables, the table of contents and other indexes, declarations: not prose


def _para(el: etree._Element, text: str, styles: Styles, heading_chars: int) -> Para | None:
    style = styles.get("paragraph", el.get(T_STYLE))
    name = style.name if style else "normal"
    if name in CODE_STYLES:
        return None  # a code block
    level = style.level if style else None
    if el.tag == T_H:
        level = int(el.get(T_OUTLINE) or level or 1)
    # Bold only tells an unlisted sub-heading from prose (as for Word): short lines only.
    bold = (level is None and len(text) < heading_chars and text[-1] not in ".?!"
            and _all_bold(el, bool(style and style.bold), styles))
    return Para(text, name, level, bold)


def _all_bold(el: etree._Element, bold: bool, styles: Styles) -> bool:
    """Every non-blank piece of text in el is bold (spans override the paragraph's weight)."""
    if el.text and el.text.strip() and not bold:
        return False
    for child in el:
        span = styles.get("text", child.get(T_STYLE)) if child.tag == T_SPAN else None
        inner = bold if span is None or span.bold is None else span.bold
        if not _all_bold(child, inner, styles):  # links and fields inherit the weight
            return False
        if child.tail and child.tail.strip() and not bold:
            return False
    return True
