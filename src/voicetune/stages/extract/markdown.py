"""Pandoc/Quarto/Manubot Markdown reader: a .md/.markdown/.qmd file -> its body paragraphs.

markdown-it-py (CommonMark) with the mdit-py-plugins pandoc needs parses the file once; only
the text of paragraphs and headings is read from the token stream, so code blocks, display
math blocks, HTML, tables, footnotes and figure-only paragraphs never become prose; pandoc's
own simple, multiline and grid tables, which CommonMark reads as paragraphs, headings and
rules, are blanked out of the source first (`without_tables`). YAML
front matter gives the title (level 0) and the abstract (style "abstract"); the rest of it
(authors, affiliations) is dropped. Citations `[@a; @doi:10.1/x]` and `@a` become numbered
markers "[1, 2]" (`document.Numbers`), Quarto/pandoc-crossref references `@fig-x` read
"Figure 1", and inline math stays as written (`$x^2$`).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from voicetune.stages.extract.document import Document, Numbers, Para, ReadError

_KEY = r"\w(?:[\w:.#$%&+?<>~/-]*\w)?"  # pandoc's citation key: ends on a letter or digit
_CITE_GROUP = re.compile(r"\[([^\[\]]*@[^\[\]]*)\]")
_GROUP_KEY = re.compile(rf"(?<![\w@])-?@({_KEY})")
_IN_TEXT = re.compile(rf"(?<![\w@])@({_KEY})")  # not the @ of an e-mail address
_ATTRS = re.compile(r"\s*\{(?:[#.-]|\w+=)[^{}]*\}")  # {#fig:x width=50%}, {.unnumbered}
_TABLE_CAPTION = re.compile(r"^(?:Table)?:\s")  # pandoc's "Table: ..." / ": ..." caption
# Pandoc's table rules: "-----" across the table, "---- ------" one run per column, "+---+---+".
_FULL_RULE = re.compile(r"^\s*-{3,}\s*$")
_COLUMN_RULE = re.compile(r"^\s*-{2,}(?:\s+-{2,})+\s*$")
_GRID_TOP = re.compile(r"^\s*\+-[-:+]*\+\s*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_REFS_DIV = re.compile(r"#refs\b|id=[\"']refs[\"']")
_FIGURE_DIV = re.compile(r"#(?:fig|tbl|lst)[-:]")  # Quarto figure/table divs hold a caption
SKIPPED = {"table_open", "footnote_block_open"}  # their text is not prose
TEXT_END = ".?!"
REFERENCES = Para("References", "bibliography", None, False)


def read_document(path: Path, heading_chars: int = 80) -> Document:
    """Body paragraphs of a Markdown paper; ReadError if it is not UTF-8 text."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    numbers = Numbers()
    tokens = _parser().parse(without_tables(text))
    paras = []
    if tokens and tokens[0].type == "front_matter":
        paras = _front_matter(tokens[0].content, numbers, heading_chars)
        tokens = tokens[1:]
    paras += blocks(tokens, numbers, heading_chars)
    return Document(paras, hashlib.sha256(data).hexdigest())


@lru_cache(maxsize=1)
def _parser():
    """CommonMark + pipe tables, strikeout, sub/superscript, footnotes, math, fenced divs, attributes."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.attrs import attrs_plugin
    from mdit_py_plugins.container import container_plugin
    from mdit_py_plugins.deflist import deflist_plugin
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    from mdit_py_plugins.footnote import footnote_plugin
    from mdit_py_plugins.front_matter import front_matter_plugin
    from mdit_py_plugins.subscript import sub_plugin
    from mdit_py_plugins.superscript import superscript_plugin

    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    # Pandoc math: no space inside the dollars ("$5 and $10" is not math); $$..$$ inline too.
    md.use(dollarmath_plugin, allow_space=False, double_inline=True)
    # A pandoc fenced div opens with attributes (`::: {#refs}`, `::: note`) and closes bare.
    md.use(container_plugin, name="div", validate=lambda params, *_: bool(params.strip()))
    for plugin in (front_matter_plugin, footnote_plugin, deflist_plugin, sub_plugin,
                   superscript_plugin):
        md.use(plugin)
    return md.use(attrs_plugin, spans=True)


def without_tables(text: str) -> str:
    """The source with pandoc's simple, multiline and grid tables blanked, fenced code aside."""
    lines = text.split("\n")
    fence, i = "", 0
    while i < len(lines):
        line = lines[i].strip()
        if fence:  # inside fenced code: only its closing fence matters
            fence = "" if len(line) >= len(fence) and line == fence[0] * len(line) else fence
            i += 1
            continue
        opener = _FENCE.match(lines[i])
        end = None if opener else _table_end(lines, i)
        if end is None:
            fence = opener.group(1) if opener else ""
            i += 1
            continue
        lines[i:end] = [""] * (end - i)
        i = end
    return "\n".join(lines)


def _blank(lines: list[str], k: int) -> bool:
    return not (0 <= k < len(lines)) or not lines[k].strip()


def _table_end(lines: list[str], i: int) -> int | None:
    """The index after the pandoc table that starts at line i, or None if none starts there."""
    caption_above = _TABLE_CAPTION.match(lines[i - 1].lstrip()) if i else None
    if not (_blank(lines, i - 1) or (caption_above and _blank(lines, i - 2))):
        return None  # a table is a block of its own (a "Table: ..." caption may sit on it)
    n = len(lines)
    if _GRID_TOP.match(lines[i]):
        j = i + 1
        while j < n and lines[j].lstrip()[:1] in ("+", "|"):
            j += 1
        return j if j > i + 1 else None
    if _COLUMN_RULE.match(lines[i + 1] if i + 1 < n else "") and lines[i].strip() \
            and not _FULL_RULE.match(lines[i]):  # simple: a header line, then rows to a blank line
        j = i + 2
        while not _blank(lines, j):
            j += 1
        return j
    if _FULL_RULE.match(lines[i]):  # multiline: rule, header lines, column rule, rows, rule
        j = i + 1
        while not _blank(lines, j) and not _FULL_RULE.match(lines[j]) \
                and not _COLUMN_RULE.match(lines[j]):
            j += 1
        if j == i + 1 or j >= n or not _COLUMN_RULE.match(lines[j]):
            return None  # a thematic break
        closing = _FULL_RULE
    elif _COLUMN_RULE.match(lines[i]) and not _blank(lines, i + 1):
        j, closing = i, re.compile(re.escape(lines[i].rstrip()) + r"\s*$")  # headerless: same rule
    else:
        return None
    for k in range(j + 1, n):
        if closing.match(lines[k]) and _blank(lines, k + 1):
            return k + 1
    return None


def _front_matter(yaml_text: str, numbers: Numbers, heading_chars: int) -> list[Para]:
    """The title (level 0) and the abstract paragraphs of a YAML metadata block."""
    import yaml

    try:
        meta = yaml.safe_load(yaml_text)
    except yaml.YAMLError as exc:
        raise ReadError(f"malformed YAML front matter ({' '.join(str(exc).split())})") from None
    if not isinstance(meta, dict):
        return []
    out = []
    title = meta.get("title")
    if isinstance(title, str) and title.strip():
        tokens = _parser().parseInline(title)
        out.append(Para(inline_text(tokens[0].children, numbers), "title", 0, False))
    abstract = meta.get("abstract")
    if isinstance(abstract, str):
        for p in blocks(_parser().parse(abstract), numbers, heading_chars):
            if p.level is None:
                out.append(Para(p.text, "abstract", None, False))
    return out


def blocks(tokens: list, numbers: Numbers, heading_chars: int) -> list[Para]:
    """Headings and paragraphs of a block token stream, in reading order."""
    out: list[Para] = []
    depth = 0  # > 0 inside a skipped block (table, footnotes, figure div)
    for i, tok in enumerate(tokens):
        if depth:
            depth += tok.nesting
            continue
        kind = tok.type
        if kind in SKIPPED or (kind == "container_div_open" and _FIGURE_DIV.search(tok.info)):
            depth = 1
        elif kind in ("container_div_open", "html_block") and _REFS_DIV.search(
                tok.info if kind != "html_block" else tok.content):
            out.append(REFERENCES)  # pandoc's `::: {#refs}` / Manubot's <div id="refs">
        elif kind == "inline":
            para = _para(tokens[i - 1], tok, numbers, heading_chars)
            if para is not None:
                out.append(para)
    return out


def _para(opener, tok, numbers: Numbers, heading_chars: int) -> Para | None:
    """One heading or paragraph; None when nothing of it is prose (a figure)."""
    if opener.type == "heading_open":
        level = int(opener.tag[1])
        text = inline_text(tok.children, numbers)
        return Para(text, f"heading {level}", level, False) if text else None
    text = inline_text(tok.children, numbers)
    if not text:
        return None
    style = "caption" if _TABLE_CAPTION.match(tok.content) else "normal"
    # A short paragraph that is all **bold** is an unlisted sub-heading (as in Word).
    kids = [k for k in tok.children if k.type != "text" or k.content.strip()]
    bold = (opener.type == "dt_open" or (kids[0].type == "strong_open"
                                          and kids[-1].type == "strong_close"
                                          and sum(k.type == "strong_open" for k in kids) == 1))
    bold = bold and len(text) < heading_chars and text[-1] not in TEXT_END
    return Para(text, style, None, bold)


def inline_text(children: list, numbers: Numbers) -> str:
    """Plain text of inline tokens: markers and links' targets gone, citations numbered, math kept."""
    parts: list[str] = []
    run: list[str] = []  # adjacent text: a citation group may span a soft line break
    prose = False  # a paragraph of display math alone is an equation, not prose
    for tok in children:
        kind = tok.type
        if kind == "text":
            run.append(tok.content)
        elif kind in ("softbreak", "hardbreak"):
            run.append(" ")
        elif kind in ("math_inline", "code_inline", "math_inline_double"):
            parts.append(_cited(run, numbers))
            run = []
            delimiter = {"math_inline": "$", "math_inline_double": "$$"}.get(kind, "")
            parts.append(delimiter + tok.content + delimiter)
            prose = prose or kind != "math_inline_double"
        # emphasis, links, spans: their text is in the text tokens; images, footnote
        # references and inline HTML (comments, tags) hold no prose.
    parts.append(_cited(run, numbers))
    text = " ".join("".join(parts).split())
    return text if prose or any(p.strip() for p in parts[::2]) else ""


def _cited(run: list[str], numbers: Numbers) -> str:
    """A run of text with pandoc attributes removed and citations turned into markers."""
    text = "".join(run)
    if "{" in text:
        text = _ATTRS.sub("", text)
    if "@" not in text:
        return text
    text = _CITE_GROUP.sub(lambda m: _group(m, numbers), text)
    return _IN_TEXT.sub(lambda m: _reference([m.group(1)], numbers), text)


def _group(match: re.Match, numbers: Numbers) -> str:
    """`[see @a, p. 3; @b]` -> "[1, 2]"; left alone unless every item names a key (pandoc)."""
    items = match.group(1).split(";")
    keys = [_GROUP_KEY.findall(item) for item in items]
    if not all(keys):
        return match.group(0)
    return _reference([k for item in keys for k in item], numbers)


def _reference(keys: list[str], numbers: Numbers) -> str:
    """Cross-references ("Figure 1") then one citation marker for the other keys."""
    refs = [numbers.named_ref(k) for k in keys if numbers.kind(k)]
    cites = [k for k in keys if not numbers.kind(k)]
    return " ".join([", ".join(refs)] * bool(refs) + [numbers.cite(cites)] * bool(cites))
