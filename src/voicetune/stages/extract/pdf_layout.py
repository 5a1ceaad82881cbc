"""PDF layout: a paper's lines (from `pdf`) -> its paragraphs, named as the stage expects.

Drops running headers, footers, page and line numbers (the same text at the same height
on many pages), reads each page column by column, rebuilds paragraphs (vertical gap,
first-line indent, a short last line), undoes line-end hyphenation where the paper's own
words say it was hyphenation, and names each paragraph: title (largest type on page 1),
heading (larger or bold type, levels by size), or body; small type (footnotes, tables,
affiliations, most captions), sparse lines (table rows, figure labels) and tables in body type
(`pdf_tables`: rows of cells side by side) are left out.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from voicetune.stages.extract.document import Para
from voicetune.stages.extract.pdf_tables import table_lines

RUNNING_SHARE = 0.4  # at one height on >= 40% of pages (>= 2): odd/even headers alternate
SMALL = 0.85  # type under 85% of the body size is small print: footnotes, tables, affiliations
LARGE = 1.08  # type over 108% of the body size is a heading's (11 pt over 10 pt is 1.1)
SPARSE = 0.55  # under 55% of the body's characters per em of width: a table row, figure labels
NO_DIGITS = str.maketrans("", "", "0123456789")  # "Page 3 of 12" and "Page 4 of 12" run alike
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_FRAGMENTS = re.compile(r"\S*\ufffe\S*")
_SUBSECTION = re.compile(r"^\d+((?:\.\d+)+)\.?\s")
_TAIL_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*$")  # the word a line-end hyphen follows


@dataclass(slots=True)
class Line:
    text: str
    page: int
    x0: float  # left of the first character
    x1: float  # right of the last character
    bottom: float  # of the first character's font box
    last: float  # bottom of the last one: lower when PDFium joined hyphenated lines (\ufffe)
    em: float  # height of the first character's font box, in points
    size: float  # PDFium's font size: comparable within one file
    bold: bool
    col: int = 0  # 0: spans the page (or one-column page), 1: left column, 2: right column
    band: int = 0  # spanning lines cut a page into bands, each read left column first
    numeric: bool = False  # digits and signs only: a page number, a table's figures (never prose)
    gap: bool = False  # a gap over GAP_EM between two words: table cells run together


def paragraphs(pages: list[list[Line]], heading_chars: int) -> list[Para]:
    """Every page's lines (columns marked) -> the paper's paragraphs in reading order."""
    order = {id(line): k for k, line in enumerate(l for page in pages for l in page)}
    lines = _drop_running(pages)
    text = [line for line in lines if not line.numeric]
    body = _body_size(text)
    cells = table_lines(lines, order, _width(text, body), _pitch(text, body), _edges(text)[1])
    lines = [line for line in text if id(line) not in cells]
    return _paragraphs(_blocks(lines, body), body, _vocabulary(lines), heading_chars)


# ------------------------------------------------------------------ page furniture

def _drop_running(pages: list[list[Line]]) -> list[Line]:
    """All lines, less those whose text (digits aside) recurs at the same height on many pages."""
    def key(line: Line):
        return line.text.translate(NO_DIGITS).lower(), round(line.bottom / 3)

    counts = Counter(k for page in pages for k in {key(line) for line in page})
    need = max(2, RUNNING_SHARE * len(pages))
    return [line for page in pages for line in page
            if counts[key(line)] < need or len(line.text) > 120]


def _body_size(lines: list[Line]) -> float:
    """The font size most characters are set in."""
    sizes = Counter()
    for line in lines:
        sizes[round(line.size, 1)] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def _vocabulary(lines: list[Line]) -> set[str]:
    """Lower-case words and hyphenated compounds as printed whole, fragments at line ends aside."""
    words: set[str] = set()
    cut = False  # the previous line ended in a hyphen: this line's first word is a fragment
    for line in lines:
        text = line.text.lower()
        found = _WORD.findall(_FRAGMENTS.sub(" ", text) if "\ufffe" in text else text)
        ends_cut = line.text[-1] == "-"
        words.update(found[cut:len(found) - ends_cut] if len(found) > cut + ends_cut else ())
        cut = ends_cut
    return words


# ------------------------------------------------------------------ lines -> blocks -> paragraphs

def _blocks(lines: list[Line], body: float) -> list[list[Line]]:
    """Lines read column by column and grouped into paragraphs; small print and sparse lines
    left out, so a footnote or a figure's labels between two lines do not end a paragraph."""
    lines.sort(key=lambda l: (l.page, l.band, l.col))  # stable: PDFium's order within a column
    dense = _density(lines, body)
    left, right = _edges(lines)
    pitch = _pitch(lines, body)
    blocks: list[list[Line]] = []
    prev_kind = ""
    for line in lines:
        kind = _kind(line, body, dense)
        if kind in ("small", "sparse"):
            continue
        if kind != prev_kind or _breaks(blocks[-1][-1], line, left, right, pitch):
            blocks.append([])
        blocks[-1].append(line)
        prev_kind = kind
    return blocks


def _density(lines: list[Line], body: float) -> float:
    """Characters per em of line width in the body type (~2 for a serif face)."""
    values = sorted(len(l.text) * l.em / (l.x1 - l.x0) for l in lines
                    if _in_body_type(l, body) and len(l.text) > 20 and l.x1 > l.x0)
    return values[len(values) // 2] if values else 2.0


def _width(lines: list[Line], body: float) -> float:
    """The usual width of a line of body type, in points (a column's, most of them justified)."""
    values = sorted(l.x1 - l.x0 for l in lines if _in_body_type(l, body) and len(l.text) > 20)
    return values[len(values) // 2] if values else 0.0


def _in_body_type(line: Line, body: float) -> bool:
    return abs(line.size - body) < 0.02 * body


def _kind(line: Line, body: float, dense: float) -> str:
    """small, large<size>, bold or body type; or sparse (a table row, figure labels)."""
    if line.size < SMALL * body:
        return "small"
    if line.size > LARGE * body:
        return f"large{round(line.size * 2) / 2}"
    width = line.x1 - line.x0
    if len(line.text) > 8 and line.last == line.bottom and width > 0 \
            and len(line.text) * line.em / width < SPARSE * dense:
        return "sparse"
    return "bold" if line.bold else "body"


def _edges(lines: list[Line]) -> tuple[dict, dict]:
    """(page, col) -> where its lines start (a low percentile: past indents) and end."""
    starts: dict = {}
    right: dict = {}
    for line in lines:
        key = (line.page, line.col)
        starts.setdefault(key, []).append(line.x0)
        right[key] = max(right.get(key, 0.0), line.x1)
    left = {k: sorted(v)[len(v) // 5] for k, v in starts.items()}
    return left, right


def _pitch(lines: list[Line], body: float) -> float:
    """The usual baseline-to-baseline distance of body lines, in points."""
    steps = sorted(a.last - b.bottom for a, b in zip(lines, lines[1:])
                   if a.page == b.page and a.col == b.col
                   and _in_body_type(a, body) and _in_body_type(b, body)
                   and 0.5 * a.em < a.last - b.bottom < 3 * a.em)
    return steps[len(steps) // 2] if steps else 1.2 * max(lines[0].em, 1.0)


def _breaks(prev: Line, line: Line, left: dict, right: dict, pitch: float) -> bool:
    """Does `line` start a new paragraph after `prev` (both of one kind)?"""
    same = (prev.page, prev.col, prev.band) == (line.page, line.col, line.band)
    # First-line indent: against the line above (a block quote's lines all start alike),
    # or against the column's edge at the top of a column.
    indent = line.x0 - (prev.x0 if same else left[line.page, line.col])
    if 0.5 * line.em < indent < 8 * line.em:
        return True
    if abs(line.x0 - prev.x0) > 0.5 * line.em and (
            _centred(prev, left, right) or _centred(line, left, right)):
        return True  # title-page lines: authors, affiliations, each on its own
    if prev.text[-1] in ".?!:" and prev.x1 < right[prev.page, prev.col] - 2 * prev.em:
        return True  # a paragraph's short last line
    if same:
        return prev.last - line.bottom > 1.4 * pitch or line.bottom > prev.last
    return False  # a new column or page continues the paragraph


def _centred(line: Line, left: dict, right: dict) -> bool:
    """Both margins over 2 em and equal to within 2 em."""
    key = (line.page, line.col)
    before, after = line.x0 - left[key], right[key] - line.x1
    return before > 2 * line.em and after > 2 * line.em and abs(before - after) < 2 * line.em


def _paragraphs(blocks: list[list[Line]], body: float, vocab: set[str],
                heading_chars: int) -> list[Para]:
    """Blocks -> Paras: title, headings with levels, body (the stage drops captions)."""
    title = _title(blocks, body)
    heads = [b for b in blocks if b is not title and _is_heading(b, body, heading_chars)]
    large = [b for b in heads if b[0].size > LARGE * body and not _is_abstract(b)]
    # Levels: 1 for the largest heading type, 2 for the next, ...; bold body type last.
    sizes = sorted({_rounded(b) for b in large}, reverse=True)
    heads, large = {id(b) for b in heads}, {id(b) for b in large}
    out, style = [], "normal"
    for block in blocks:
        text = _join(block, vocab)
        if block is title:
            out.append(Para(text, "title", 0, False))
        elif id(block) in heads:
            abstract = _is_abstract(block)
            rank = sizes.index(_rounded(block)) if id(block) in large else len(sizes)
            # "2.1 Data" set like "2 Methods" is still one level down; "Abstract" goes as a
            # plain bold line, which the stage's plain-heading rule turns into the abstract.
            level = None if abstract else min(9, max(1 + rank, 1 + _depth(text)))
            out.append(Para(text, "normal" if abstract else "heading", level, True))
            style = "abstract" if abstract else "normal"
        else:
            out.append(Para(text, style, None, False))
    return out


def _depth(text: str) -> int:
    """1 for a heading numbered "2.1", 2 for "2.1.3", else 0."""
    match = _SUBSECTION.match(text)
    return match.group(1).count(".") if match else 0


def _title(blocks: list[list[Line]], body: float) -> list[Line] | None:
    """The block in the largest type on page 1, if it is larger than the body and title-long."""
    first = [b for b in blocks if b[0].page == 0 and b[0].size > LARGE * body
             and sum(len(line.text) for line in b) < 300]
    return max(first, key=lambda b: b[0].size, default=None)


def _is_heading(block: list[Line], body: float, heading_chars: int) -> bool:
    """A short block in larger type, or all in bold body type."""
    length = sum(len(line.text) + 1 for line in block)
    if length > heading_chars or len(block) > 3:
        return False
    return block[0].size > LARGE * body or all(line.bold for line in block)


def _is_abstract(block: list[Line]) -> bool:
    return len(block) == 1 and block[0].text.strip(" .:").lower() == "abstract"


def _rounded(block: list[Line]) -> float:
    return round(block[0].size * 2) / 2


def _join(block: list[Line], vocab: set[str]) -> str:
    """The block's lines as one string, line-end hyphenation undone where it was hyphenation."""
    text = ""
    for line in block:
        # PDFium joins a line ending in "exam-" to the next itself, writing U+FFFE for "-".
        for k, part in enumerate(line.text.split("\ufffe")):
            if not text:
                text = part
            elif k == 0 and text[-1] != "-":
                text += " " + part
            else:
                base = text[:-1] if k == 0 else text
                head, tail = _TAIL_WORD.search(base[-60:]), _WORD.match(part)
                cut = bool(head and tail) and _dehyphenate(head.group(), tail.group(), vocab)
                text = base + ("" if cut else "-") + part
    return " ".join(text.split())


def _dehyphenate(head: str, tail: str, vocab: set[str]) -> bool:
    """True for 'exam-' + 'ple' (hyphenation), False for 'well-' + 'known' (a compound).

    The paper's own words decide: which spelling it prints elsewhere on one line, else
    whether both halves are words of it ('long' and 'term' are, 'exam' and 'ple' are not).
    """
    if not tail[0].islower():
        return False  # "non-" + "European", "COVID-" + "19"
    head, tail = head.lower(), tail.lower()
    if head + tail in vocab:
        return True
    if f"{head}-{tail}" in vocab:
        return False
    return not (head.rpartition("-")[2] in vocab and tail.partition("-")[0] in vocab)
