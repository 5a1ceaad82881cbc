"""PDF reading: a paper's .pdf -> its body paragraphs in reading order (PDFium via pypdfium2).

PDFium lays out each page's text, line breaks included, in C; this module asks it for one
string per page and a few facts per *line* (the boxes of its first and last character,
the font size and weight of three characters, whether a gap between two words is wide as
between table cells), never per character: a 10-page two-column paper has ~45,000
characters but ~1,000 lines and ~8,000 spaces, and each PDFium call through ctypes costs
~1 us. It also finds each page's columns (a gutter that almost no line crosses);
`pdf_layout` turns the lines into paragraphs.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
from pathlib import Path

from voicetune.stages.extract.document import Document, ReadError
from voicetune.stages.extract.pdf_layout import Line, paragraphs
from voicetune.stages.extract.pdf_tables import GAP_EM

NO_TEXT = "no text layer (a scanned PDF?): run OCR on it first, e.g. ocrmypdf in.pdf out.pdf"
MIN_CHARS = 100  # fewer characters than this in a whole file: a scan, at most a stamped number
LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st",
                           "ﬆ": "st", "\xad": "", "\x02": "", "‐": "-", "‑": "-"})
_BOLD_FONT = re.compile(r"bold|black|heavy|demi|semibold|medi|cmbx|cmb\d", re.I)
# Never prose: page and line numbers, "12 / 14", "iv", a table's figures.
_NUMERIC = re.compile(r"^(?:[\d\W_]*|[ivxlc]{1,6})$")
_LINE_NUMBER = re.compile(r"^\d{1,4}\s+(?=\S)")


def read_pdf(path: Path, heading_chars: int = 80) -> Document:
    """Body paragraphs of a PDF in reading order; ReadError if unreadable or without text."""
    data = path.read_bytes()
    pages = _pages(data)
    if sum(len(line.text) for page in pages for line in page) < MIN_CHARS:
        raise ReadError(NO_TEXT)
    return Document(paragraphs(pages, heading_chars), hashlib.sha256(data).hexdigest())


def normalize(text: str) -> str:
    """Ligatures spelled out (ﬁ -> fi), soft hyphens dropped (a line-end one is a hyphen)."""
    if text.isascii():
        return text
    if text[-1] == "\xad":
        text = text[:-1] + "-"
    return text.translate(LIGATURES)


# ------------------------------------------------------------------ PDFium: pages -> lines

def _pages(data: bytes) -> list[list[Line]]:
    """Every page's lines in PDFium's order, columns marked; one-line ReadError on a bad file."""
    import pypdfium2 as pdfium

    if not data:
        raise ReadError("empty file (0 bytes)")
    if b"%PDF" not in data[:1024]:
        raise ReadError("not a PDF (no %PDF header)")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ReadError("encrypted PDF (needs a password): save an unprotected copy, "
                            "e.g. qpdf --decrypt --password=... in.pdf out.pdf") from None
        raise ReadError(f"corrupt or truncated PDF ({_reason(exc)})") from None
    try:
        pages = []
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                lines = _page_lines(page, index)
                _columns(lines, page.get_width())
            finally:
                page.close()
            pages.append(lines)
        return pages
    except pdfium.PdfiumError as exc:
        raise ReadError(f"corrupt PDF: page {len(pages) + 1} unreadable ({_reason(exc)})") from None
    finally:
        pdf.close()


def _reason(exc: Exception) -> str:
    """'Failed to load document (PDFium: Data format error).' -> 'PDFium: data format error'."""
    match = re.search(r"PDFium: ([^)]+)", str(exc))
    return f"PDFium: {match.group(1).lower()}" if match else str(exc).rstrip(".")


def _page_lines(page, index: int) -> list[Line]:
    """One page's lines: PDFium's text split at its generated line breaks."""
    import pypdfium2.raw as raw

    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
        same = len(text) == textpage.count_chars()  # text index == char index in most files
        probe = _Probe(raw, textpage)
        lines, start = [], 0
        for chunk in text.split("\r\n"):
            end = start + len(chunk)
            stripped = chunk.strip()
            if stripped:
                a = start + len(chunk) - len(chunk.lstrip())
                b = start + len(chunk.rstrip()) - 1
                spaces = [a + k for k, c in enumerate(stripped) if c == " "]
                if not same:
                    a, b = (raw.FPDFText_GetCharIndexFromTextIndex(textpage, i) for i in (a, b))
                    spaces = [raw.FPDFText_GetCharIndexFromTextIndex(textpage, i) for i in spaces]
                line = probe.line(stripped, index, a, b)
                line.numeric = bool(_NUMERIC.match(stripped))
                line.gap = probe.gap(spaces, GAP_EM * line.em)
                lines.append(line)
            start = end + 2
        return lines
    finally:
        textpage.close()


class _Probe:
    """The few PDFium calls made per line, with their ctypes buffers made once per page."""

    def __init__(self, raw, textpage):
        self.raw, self.tp = raw, textpage
        self.rect = raw.FS_RECTF()
        self.rect_ref = ctypes.byref(self.rect)
        self.name = ctypes.create_string_buffer(128)
        self.flags = ctypes.c_int()
        self.flags_ref = ctypes.byref(self.flags)
        self.bold_names: dict[bytes, bool] = {}  # a page uses a handful of fonts

    def box(self, i: int) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a character's font box (ascent to descent)."""
        self.raw.FPDFText_GetLooseCharBox(self.tp, i, self.rect_ref)
        r = self.rect
        return r.left, r.bottom, r.right, r.top

    def bold(self, i: int) -> bool:
        if self.raw.FPDFText_GetFontWeight(self.tp, i) >= 600:
            return True
        self.raw.FPDFText_GetFontInfo(self.tp, i, self.name, 128, self.flags_ref)
        name = self.name.value
        bold = self.bold_names.get(name)
        if bold is None:
            bold = self.bold_names[name] = bool(_BOLD_FONT.search(name.decode("latin-1")))
        return bold

    def gap(self, spaces: list[int], wide: float) -> bool:
        """Is any of these spaces wider than `wide` (from the letter before to the one after)?"""
        box, raw, tp = self.box, self.raw, self.tp
        for i in spaces:
            if raw.FPDFText_GetUnicode(tp, i + 1) == 32:
                continue  # spaces in a row: the gap is measured from the last
            if box(i + 1)[0] - box(i - 1)[2] > wide:
                return True
        return False

    def line(self, text: str, page: int, a: int, b: int) -> Line:
        """The line of characters a..b (text as PDFium gives it) with its box and type."""
        left, bottom, _, top = self.box(a)
        _, last, right, _ = self.box(b)
        k = len(text) // 2
        while text[k] == " ":
            k += 1
        mid = a + k  # a letter mid-line: the first may be a bullet, a quote or a note mark
        size = self.raw.FPDFText_GetFontSize(self.tp, mid)
        bold = self.bold(a) and self.bold(b) and self.bold(mid)
        line = Line(normalize(text), page, left, right, bottom, last, top - bottom, size, bold)
        if text[0].isdigit():
            self._strip_line_number(line, a)
        return line

    def _strip_line_number(self, line: Line, a: int) -> None:
        """'12  The mice ...': a margin line number PDFium put on the text's line; cut it off."""
        match = _LINE_NUMBER.match(line.text)
        if not match:
            return
        digits = len(match.group().rstrip())
        left = self.box(a + match.end())[0]
        if left - self.box(a + digits - 1)[2] > 1.5 * line.em:  # a word space is ~0.3 em
            line.text, line.x0 = line.text[match.end():], left


def _columns(lines: list[Line], width: float) -> None:
    """Mark each line left/right column or spanning, and its band, when the page has a gutter."""
    gutter = _gutter([line for line in lines if not line.numeric], width)
    if gutter is None:
        return
    # A left-column line that runs on past the gutter (a table's wide row) stops short of the
    # right column's middle; a spanning title or caption is centred or reaches further.
    overflow = gutter + 0.5 * (max(line.x1 for line in lines) - gutter)
    band = 0
    for line in sorted(lines, key=lambda l: -l.bottom):
        if line.x0 >= gutter:
            line.col = 2
        elif line.x1 <= gutter or "\ufffe" in line.text or line.x1 < overflow:
            line.col = 1  # "\ufffe": "pro-" + "portional" across the gutter
        else:
            band += 1  # a spanning line (title, a wide figure's caption) closes the band above
            line.band = band
            band += 1
            continue
        line.band = band


def _gutter(lines: list[Line], width: float) -> float | None:
    """x of a vertical gap in the middle 40% of the page that (almost) no line crosses."""
    import numpy as np

    if len(lines) < 8:
        return None
    x0 = np.array([l.x0 for l in lines])
    x1 = np.array([l.x1 for l in lines])
    xs = np.arange(0.3 * width, 0.7 * width, 1.0)[:, None]
    crossing = ((x0 < xs - 1) & (x1 > xs + 1)).sum(1)
    sides = np.minimum((x1 <= xs).sum(1), (x0 >= xs).sum(1))
    # Two columns when each side holds >= 15% of the lines and fewer lines span both (a
    # title, an abstract, a footnote): page 1 here has 12 spanning lines over 14 + 15.
    ok = (sides >= max(3, 0.15 * len(lines))) & (crossing <= 2 * sides)
    if not ok.any():
        return None
    # The widest run of the least-crossed places: a table's narrow cells leave other gaps,
    # between columns of cells, that balance the two sides better than the real gutter.
    clear = ok & (crossing <= crossing[ok].min())
    edges = np.flatnonzero(np.diff(np.concatenate(([0], clear.astype(int), [0]))))
    starts, ends = edges[::2], edges[1::2]
    widest = np.argmax(ends - starts)
    return float(xs[starts[widest]:ends[widest], 0].mean())  # the middle of the gap
