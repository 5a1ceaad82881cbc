"""Low-level WordprocessingML reading: a .docx file -> its body paragraphs as plain text.

One parse of word/document.xml per file, and of styles.xml per distinct styles.xml.
Everything that is not the author's accepted prose is removed in C (lxml `strip_elements`)
before any Python loop runs: deletions, moved-away text, field codes, comments, note
references, drawings and text boxes, display equations. What is left is read one body
paragraph at a time with a C text serialisation, so the Python work grows with paragraphs
(~100 per paper), not with runs (pandoc writes one run per word: ~5,000 per paper).

Paragraphs that hold tracked insertions, deletions or moves are also read with all changes
rejected, from a copy taken before the cleaning; where the two readings differ by at least
`min_changed_words` words the pair is a `Revision` (the author's own edit). Files without
tracked changes pay nothing for it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from voicetune.stages.extract.document import (
    MIN_CHANGED_WORDS, Document, Para, ReadError, Revision, revision)

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NS = {
    "w": W_NS,
    "m": "http://schemas.openxmlformats.org/officeDocument/2006/math",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
}


def _w(name: str) -> str:
    return f"{{{W_NS}}}{name}"


W_P, W_PPR, W_RPR, W_R, W_SDT, W_CUSTOMXML = (
    _w("p"), _w("pPr"), _w("rPr"), _w("r"), _w("sdt"), _w("customXml"))
W_PSTYLE, W_RSTYLE, W_OUTLINE, W_B, W_VAL = (
    _w("pStyle"), _w("rStyle"), _w("outlineLvl"), _w("b"), _w("val"))
W_DEL, W_MOVEFROM, W_INS, W_MOVETO = _w("del"), _w("moveFrom"), _w("ins"), _w("moveTo")
W_FLDCHAR = _w("fldChar")
W_STYLE, W_STYLEID, W_NAME, W_BASEDON = _w("style"), _w("styleId"), _w("name"), _w("basedOn")

# Removed with their whole subtree. w:del/w:moveFrom: rejected by "accept all changes";
# instrText: field codes; drawing/pict/object/AlternateContent: text boxes and shapes;
# oMathPara: display equations (inline m:oMath stays, it reads as part of the sentence).
DROP_TAGS = [
    W_DEL, W_MOVEFROM, _w("delText"), _w("instrText"), _w("delInstrText"),
    _w("commentReference"), _w("drawing"), _w("pict"), _w("object"),
    f"{{{NS['mc']}}}AlternateContent", f"{{{NS['m']}}}oMathPara",
]
# "Reject all changes": insertions and moved-here text go, deleted and moved-away text stay
# (w:delText is the deleted text); the rest is dropped as above.
REJECT_DROP_TAGS = [W_INS, W_MOVETO] + [
    tag for tag in DROP_TAGS if tag not in (W_DEL, W_MOVEFROM, _w("delText"))]
REVISION_TAGS = (W_DEL, W_MOVEFROM, W_INS, W_MOVETO)
# Elements that need a decision before stripping. One C-level `iter` over these costs ~5 us
# on a 3,000-element tree where each `//x` XPath scan costs 100-300 us.
W_TAB, W_BR, W_CR, W_NBHYPHEN = _w("tab"), _w("br"), _w("cr"), _w("noBreakHyphen")
W_FOOTREF, W_ENDREF, W_PLCHDR = _w("footnoteReference"), _w("endnoteReference"), _w("showingPlcHdr")
SPECIAL_TAGS = (*REVISION_TAGS, W_FLDCHAR, W_RSTYLE, W_TAB, W_BR, W_CR, W_NBHYPHEN,
                W_FOOTREF, W_ENDREF, W_PLCHDR)
RUN_TEXT = {W_TAB: " ", W_BR: " ", W_CR: " ", W_NBHYPHEN: "-"}
NOTE_REF_STYLES = {"footnote reference", "endnote reference", "annotation reference"}
OLE2_MAGIC = b"\xd0\xcf\x11\xe0"
FALSE_VALUES = {"0", "false", "off"}

# remove_blank_text drops the indentation of pretty-printed XML (it would split words) and
# keeps xml:space="preserve" text; it costs ~15% of a parse, so only such files pay for it.
# collect_ids=False: no hash table of xml:id attributes (WordprocessingML has none).
_OPTIONS = dict(resolve_entities=False, no_network=True, collect_ids=False)
_PARSER = etree.XMLParser(**_OPTIONS)
_PRETTY_PARSER = etree.XMLParser(remove_blank_text=True, **_OPTIONS)
_HEADING_NAME = re.compile(r"^heading\s*(\d)$")


@dataclass(slots=True)
class Style:
    name: str  # lower case, e.g. "heading 2"
    level: int | None  # 0 = title, 1-9 = heading/outline level, None = body text
    bold: bool


def read_document(path: Path, heading_chars: int = 80,
                  min_changed_words: int = MIN_CHANGED_WORDS) -> Document:
    """Body paragraphs of a .docx/.docm with accepted tracked changes; ReadError if unreadable.

    `heading_chars`: only shorter paragraphs can be headings, so only they get a bold check.
    `min_changed_words`: a tracked edit of fewer words is not kept as a Revision.
    """
    data = path.read_bytes()
    check_magic(path.name, data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            xml = _read_part(zf, "word/document.xml")
            styles = styles_of(_read_part(zf, "word/styles.xml", required=False))
    except zipfile.BadZipFile as exc:
        raise ReadError(f"corrupt zip archive ({exc})") from None
    root = _parse(xml, "word/document.xml")
    paragraphs, revisions = body_paragraphs(root, styles, heading_chars, min_changed_words)
    return Document(paragraphs, hashlib.sha256(data).hexdigest(), revisions)


def check_magic(name: str, data: bytes) -> None:
    """Reject lock files, empty files, OLE2 containers and non-zips with a one-line reason."""
    if name.startswith("~$"):
        raise ReadError("Word lock file (~$...), not a document: close Word or delete it")
    if not data:
        raise ReadError("empty file (0 bytes)")
    if data.startswith(OLE2_MAGIC):
        # Password-protected .docx files are OLE2 containers too: the two look alike.
        raise ReadError("encrypted or legacy .doc (OLE2 container): save it as an unprotected .docx")
    if not data.startswith(b"PK"):
        raise ReadError("not a .docx (not a zip archive)")


def _read_part(zf: zipfile.ZipFile, name: str, required: bool = True) -> bytes | None:
    try:
        return zf.read(name)
    except KeyError:
        if required:
            raise ReadError(f"zip without {name}: not a Word document") from None
        return None


def _parse(xml: bytes, part: str) -> etree._Element:
    head = xml.find(b"?>") + 2 if xml.startswith(b"<?xml") else 0
    pretty = xml.find(b"\n", head + 2) != -1  # Word ends the declaration with \r\n, then one line
    try:
        return etree.fromstring(xml, _PRETTY_PARSER if pretty else _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ReadError(f"malformed XML in {part}: {exc}") from None


class Styles:
    """styleId -> Style, resolved through w:basedOn on first use (a paper uses ~10 of 50-300)."""

    def __init__(self, xml: bytes | None):
        root = _parse(xml, "word/styles.xml") if xml else None
        self._els = {} if root is None else {
            el.get(W_STYLEID): el for el in root.iterchildren(W_STYLE)}
        self._cache: dict[str, Style] = {}

    def get(self, sid: str) -> Style:
        """The resolved style; an id missing from styles.xml still reads "Heading2" as heading 2."""
        style = self._cache.get(sid)
        if style is None:
            style = self._cache[sid] = self._resolve(sid)
        return style

    def _resolve(self, sid: str) -> Style:
        el = self._els.get(sid)
        name_el = _child(el, W_NAME) if el is not None else None
        name = name_el.get(W_VAL).lower() if name_el is not None else sid.lower()
        name = _HEADING_NAME.sub(r"heading \1", name)
        outline, bold, seen = None, None, set()
        while el is not None and sid not in seen:  # `seen` guards basedOn cycles
            seen.add(sid)
            sid = None
            for child in el:
                if child.tag == W_BASEDON:
                    sid = child.get(W_VAL)
                elif child.tag == W_PPR and outline is None:
                    lvl = _child(child, W_OUTLINE)
                    outline = int(lvl.get(W_VAL)) if lvl is not None else None
                elif child.tag == W_RPR and bold is None:
                    b = _child(child, W_B)
                    bold = None if b is None else _on(b)
            el = self._els.get(sid)
        return Style(name, style_level(name, outline), bool(bold))


# Papers made from one template (every pandoc paper, a journal's Word template) carry a
# byte-identical styles.xml: parsing it once per corpus instead of once per file saves
# ~17% of the stage. Keyed by content, so never stale; a few templates at most are live.
_STYLES_BY_CONTENT: dict[bytes, Styles] = {}
STYLES_KEPT = 8


def styles_of(xml: bytes | None) -> Styles:
    """The Styles of this styles.xml, shared by every file whose styles.xml is the same."""
    if not xml:
        return Styles(None)
    styles = _STYLES_BY_CONTENT.get(xml)
    if styles is None:
        if len(_STYLES_BY_CONTENT) >= STYLES_KEPT:
            del _STYLES_BY_CONTENT[next(iter(_STYLES_BY_CONTENT))]  # the oldest
        styles = _STYLES_BY_CONTENT[xml] = Styles(xml)
    return styles


def _child(el: etree._Element, tag: str) -> etree._Element | None:
    """First child with this tag: a loop over a few children beats ElementPath `find`."""
    for child in el:
        if child.tag == tag:
            return child
    return None


def _on(toggle: etree._Element) -> bool:
    """A w:b-like toggle: present means on unless w:val says 0/false/off."""
    return toggle.get(W_VAL, "1").lower() not in FALSE_VALUES


def style_level(name: str, outline: int | None) -> int | None:
    """0 for Title, N for "heading N" or outline level N-1 (9 = body text), else None."""
    if name == "title":
        return 0
    match = _HEADING_NAME.match(name)
    if match:
        return int(match.group(1))
    return outline + 1 if outline is not None and outline < 9 else None


def body_paragraphs(root: etree._Element, styles: Styles, heading_chars: int,
                    min_changed_words: int = MIN_CHANGED_WORDS,
                    ) -> tuple[list[Para], list[Revision]]:
    """Clean the tree, then read top-level paragraphs (no tables, no text boxes) and revisions."""
    mark_deleted, rejected = _clean(root, styles)
    body = root.find(f"{{{W_NS}}}body")
    if body is None:
        raise ReadError("word/document.xml has no w:body")
    out: list[Para] = []
    revisions: list[Revision] = []
    carry = ""  # text of a paragraph whose mark was deleted: it joins the next one
    group: list[tuple[str, str | None]] = []  # (accepted, rejected) texts of one output paragraph
    for p in _iter_body(body):
        text = etree.tostring(p, method="text", encoding=str, with_tail=False)
        if rejected:  # only files with tracked changes keep groups
            group.append((text, rejected.get(p)))
        if carry:
            text = carry + " " + text
        if p in mark_deleted:
            carry = text
            continue
        carry = ""
        text = _squash(text)
        if group:  # only in files with tracked text changes
            if text:
                _add_revision(revisions, group, text, len(out), min_changed_words)
            group = []
        if text:
            out.append(_para(p, text, styles, heading_chars))
    if carry.strip():
        if group:
            _add_revision(revisions, group, _squash(carry), len(out), min_changed_words)
        out.append(Para(_squash(carry), "normal", None, False))
    return out, revisions


def _add_revision(revisions: list[Revision], group: list[tuple[str, str | None]], after: str,
                  index: int, min_changed_words: int) -> None:
    """Append the Revision of one output paragraph made of `group`, if its edits count."""
    if all(rej is None for _, rej in group):
        return  # paragraph marks deleted, no text changed
    # A member with no accepted text was deleted whole: a paragraph of its own before, not part
    # of this one (a moved-away paragraph, whose moved mark joins it to the next, is one).
    before = _squash(" ".join(acc if rej is None else rej for acc, rej in group if acc.strip()))
    rev = revision(before, after, index, min_changed_words)
    if rev:
        revisions.append(rev)


def _squash(text: str) -> str:
    """Whitespace runs -> one space, ends stripped."""
    # Two C scans decide if text is already clean (tabs, newlines, nbsp are not printable);
    # splitting every paragraph into words instead cost ~15% of the whole stage.
    if "  " in text or not text.isprintable():
        return " ".join(text.split())
    return text.strip()


def _iter_body(container: etree._Element):
    """Body-level paragraphs, looking through content controls and custom XML; not tables."""
    for el in container:
        tag = el.tag
        if tag == W_P:
            yield el
        elif tag == W_SDT:
            content = el.find(f"{{{W_NS}}}sdtContent")
            if content is not None:
                yield from _iter_body(content)
        elif tag == W_CUSTOMXML:
            yield from _iter_body(el)


def _clean(root: etree._Element, styles: Styles) -> tuple[set, dict]:
    """Remove all but accepted prose so a paragraph's text is its prose.

    Returns the paragraphs whose mark was deleted, and the reject-all text of each paragraph
    with tracked text changes (read before the changes are stripped).
    """
    mark_deleted, changed, doomed, fields = set(), set(), [], False
    for el in root.iter(*SPECIAL_TAGS):
        tag, parent = el.tag, el.getparent()
        if tag in RUN_TEXT:
            if parent.tag == W_R:  # w:tab also defines tab stops inside w:pPr/w:tabs
                el.text = RUN_TEXT[tag]
        elif tag in REVISION_TAGS:
            if parent.tag == W_RPR and parent.getparent().tag == W_PPR:  # the paragraph mark
                if tag in (W_DEL, W_MOVEFROM):
                    mark_deleted.add(parent.getparent().getparent())
            else:
                changed.add(next(el.iterancestors(W_P), None))
        elif tag == W_FLDCHAR:
            fields = True
        elif tag == W_RSTYLE:
            # Hand-typed note numbers: a run styled "footnote reference" holding a digit.
            run = parent.getparent()
            if run.tag == W_R and styles.get(el.get(W_VAL)).name in NOTE_REF_STYLES:
                doomed.append(run)
        elif tag == W_PLCHDR:
            doomed.append(parent.getparent())  # content control still showing its placeholder
        else:
            doomed.append(parent)  # the run holding a footnote/endnote reference mark
    for el in doomed:
        if el.getparent() is not None:
            el.getparent().remove(el)
    if fields:
        _drop_field_codes(root)
    changed.discard(None)  # a change outside any paragraph (an inserted table row)
    rejected = {p: _rejected_text(p) for p in changed}
    etree.strip_elements(root, *DROP_TAGS, with_tail=False)
    return mark_deleted, rejected


def _rejected_text(p: etree._Element) -> str:
    """A paragraph's text with every tracked change rejected, read from a copy."""
    p = copy.deepcopy(p)
    etree.strip_elements(p, *REJECT_DROP_TAGS, with_tail=False)
    return etree.tostring(p, method="text", encoding=str, with_tail=False)


def _drop_field_codes(root: etree._Element) -> None:
    """Remove runs between fldChar begin and separate (the code); keep the result runs."""
    stack: list[str] = []  # one entry per open field: "code" until its separate, then "result"
    doomed = []
    for run in root.iter(W_R):
        char = run.find(W_FLDCHAR)
        if char is not None:
            kind = char.get(_w("fldCharType"))
            if kind == "begin":
                stack.append("code")
            elif kind == "separate" and stack:
                stack[-1] = "result"
            elif kind == "end" and stack:
                stack.pop()
        elif "code" in stack:
            doomed.append(run)
    for run in doomed:
        run.getparent().remove(run)


def _para(p: etree._Element, text: str, styles: Styles, heading_chars: int) -> Para:
    style = outline = None
    # w:pPr is the first child when present (schema order).
    ppr = p[0] if len(p) and p[0].tag == W_PPR else None
    if ppr is not None:
        for child in ppr:
            if child.tag == W_PSTYLE:
                style = styles.get(child.get(W_VAL))
            elif child.tag == W_OUTLINE:
                outline = int(child.get(W_VAL))
    name = style.name if style else "normal"
    level = style_level(name, outline) if outline is not None else (style.level if style else None)
    # Bold only tells an unlisted sub-heading from prose: short lines without a full stop
    # that are not styled headings already.
    bold = ((level is None or level < 1) and len(text) < heading_chars
            and text[-1] not in ".?!" and _all_bold(p, bool(style and style.bold)))
    return Para(text, name, level, bold)


def _all_bold(p: etree._Element, style_bold: bool) -> bool:
    seen = False
    for run in p.iter(W_R):
        if not etree.tostring(run, method="text", encoding=str, with_tail=False).strip():
            continue
        seen = True
        rpr = run[0] if len(run) and run[0].tag == W_RPR else None
        b = _child(rpr, W_B) if rpr is not None else None
        if not (style_bold if b is None else _on(b)):
            return False
    return seen
