r"""LaTeX reader: a main .tex file (the one with \documentclass) -> its body paragraphs.

No TeX engine: the source is cleaned as text (comments, \iffalse blocks, \input/\include
files spliced in relative to the main file, user macro definitions taken out), parsed once
with pylatexenc's LatexWalker, and turned into text by a LatexNodes2Text that knows what a
paper's structure commands mean. Sectioning commands, \title and the abstract environment
become marked paragraphs; \cite{a,b} becomes "[1, 2]" and \ref a number
(`document.Numbers`, as for Markdown); math stays as written; floats, tables, listings,
footnotes and front matter are dropped; \bibliography / thebibliography end the paper.
A .tex without \documentclass is a chapter of another paper: `Included`, not a paper.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from voicetune.stages.extract.document import Document, Included, Numbers, Para, ReadError

_COMMENT_LINE = re.compile(r"^[ \t]*%[^\n]*\n", re.M)  # a whole line: gone with its newline
# A trailing comment also eats the line end and the next line's indent (TeX does), unless
# the next line is blank: that blank line still ends the paragraph.
_COMMENT = re.compile(r"(?<!\\)((?:\\\\)*)%[^\n]*(?:\n(?![ \t]*\n)[ \t]*)?")
_DEAD = re.compile(r"\\iffalse\b.*?\\fi\b|\\begin\{comment\}.*?\\end\{comment\}", re.S)
_DOCUMENTCLASS = re.compile(r"\\documentclass\b")
_BEGIN_DOCUMENT = re.compile(r"\\begin\s*\{document\}")
_INPUT = re.compile(r"\\(input|include|subfile)\s*(?:\{([^{}]*)\}|(?<=input)\s+([^\s{}\\]+))")
_DEFINITION = re.compile(
    r"\\(?:(?:(?:re)?newcommand|providecommand)\*?\s*\{?\s*\\([A-Za-z]+)\s*\}?\s*(?:\[(\d)\])?\s*(\[)?"
    r"|[gex]?def\s*\\([A-Za-z]+)((?:#\d)*)\s*(?=\{))")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
MAX_DEPTH = 16  # \input nesting and macro expansion: deeper is a file or macro calling itself
# Private-use characters (not whitespace to str.split, never in a paper) carry structure
# through LatexNodes2Text's output. MARK<kind>MARK opens a heading, title, abstract or end.
MARK = "\ue000"
DISPLAY = "\ue001"  # around display math: a paragraph of nothing else is an equation, not prose
BOLD = "\ue002"  # around \textbf: a paragraph all in it is a bold line
TEXT_END = ".?!"
SOFT_HYPHEN = "\u00ad"  # \- : a hyphenation point, invisible in the text

SECTION_LEVELS = {"part": 1, "chapter": 1, "section": 1, "subsection": 2,
                  "subsubsection": 3, "paragraph": 4, "subparagraph": 5}
CITES = {"cite", "citep", "citet", "citealt", "citealp", "Citep", "Citet", "citeauthor",
         "citeyear", "citeyearpar", "parencite", "Parencite", "textcite", "Textcite",
         "autocite", "Autocite", "footcite", "supercite", "citenum", "nocite"}
REFS = {"ref": "{}", "autoref": "named", "cref": "named", "Cref": "named", "eqref": "({})",
        "pageref": "{}", "vref": "{}"}
DROPPED = {"footnote", "footnotemark", "footnotetext", "thanks", "label", "caption",
           "captionof", "author", "affil", "affiliation", "address", "email", "date",
           "keywords", "maketitle", "includegraphics", "bibliographystyle", "institute",
           "orcid", "corresp", "vspace", "hspace", "newpage", "clearpage", "tableofcontents",
           "newenvironment", "renewenvironment", "DeclareMathOperator", "usepackage",
           "documentclass", "hypersetup", "setlength", "setcounter"}
DROPPED_ENVS = {"figure", "figure*", "table", "table*", "tabular", "tabular*", "tabularx",
                "longtable", "sidewaystable", "sidewaysfigure", "wrapfigure", "subfigure",
                "verbatim", "Verbatim", "lstlisting", "minted", "tikzpicture", "algorithm",
                "algorithmic", "keywords", "IEEEkeywords", "acknowledgments",
                "acknowledgements", "comment", "titlepage"}
# Type style and box macros that pylatexenc's text conversion would drop with their text.
KEPT = {"texttt", "textsf", "textup", "textmd", "textnormal", "mbox", "hbox", "uline", "ul",
        "enquote", "textsuperscript", "textsubscript"}
MATH_ENVS = {"equation", "equation*", "align", "align*", "gather", "gather*", "multline",
             "multline*", "eqnarray", "eqnarray*", "displaymath", "flalign", "flalign*",
             "dmath", "dmath*"}
REFERENCES = Para("References", "bibliography", None, False)
KIND_STYLES = {"t": ("title", 0), "a": ("abstract", None), "b": ("bibliography", None)}


def read_document(path: Path, heading_chars: int = 80) -> Document:
    """Body paragraphs of a main .tex file and the files it includes; ReadError if unreadable."""
    data = path.read_bytes()
    text = uncomment(_decode(data))
    if not _DOCUMENTCLASS.search(text):
        raise Included(r"no \documentclass: a part of another paper (read through its main .tex)")
    digest = hashlib.sha256(data)
    text = splice_inputs(text, path.parent, digest)
    macros, text = definitions(text)
    return Document(paragraphs(text, macros, heading_chars), digest.hexdigest())


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # inputenc latin1 papers: every byte is a character


def uncomment(text: str) -> str:
    r"""The source without % comments, \iffalse...\fi and comment environments."""
    text = _COMMENT_LINE.sub("", text)
    return _DEAD.sub("", _COMMENT.sub(r"\1", text))


def splice_inputs(text: str, folder: Path, digest, depth: int = 0) -> str:
    r"""\input{x}/\include{x} replaced by x.tex's cleaned text, found relative to the main file.

    A missing file in the body is an error; in the preamble it is a TeX distribution file
    (`\input{glyphtounicode}`) and is skipped. Every spliced file's bytes join `digest`.
    """
    if depth > MAX_DEPTH:
        raise ReadError(rf"\input nested deeper than {MAX_DEPTH} files (a file includes itself?)")
    begin = _BEGIN_DOCUMENT.search(text)
    body_at = begin.start() if begin else (0 if depth else len(text))

    def splice(match: re.Match) -> str:
        name = (match.group(2) or match.group(3) or "").strip()
        found = _find(folder, name)
        if found is None:
            if match.start() < body_at:
                return ""
            raise ReadError(rf"\{match.group(1)}{{{name}}}: no such file next to the main .tex")
        data = found.read_bytes()
        digest.update(data)
        inner = splice_inputs(uncomment(_decode(data)), folder, digest, depth + 1)
        return f"\n\n{inner}\n\n" if match.group(1) == "include" else inner

    return _INPUT.sub(splice, text)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.tex"):
        if name and candidate.is_file():
            return candidate
    return None


def definitions(text: str) -> tuple[dict[str, tuple[int, str | None, str]], str]:
    r"""User macros {name: (arguments, default of #1 or None, body)} and the text without them."""
    macros, kept, at = {}, [], 0
    for match in _DEFINITION.finditer(text):
        if match.start() < at:
            continue  # inside a definition already taken out
        name = match.group(1) or match.group(4)
        nargs = int(match.group(2) or 0) if match.group(1) else len(match.group(5)) // 2
        pos, default = match.end(), None
        if match.group(3):  # [default] of an optional first argument
            close = text.find("]", pos)
            default, pos = text[pos:close], close + 1
        body, end = _braced(text, pos)
        if body is None:
            continue
        macros[name] = (nargs, default, body)
        kept.append(text[at:match.start()])
        at = end
    kept.append(text[at:])
    return macros, "".join(kept)


def _braced(text: str, pos: int) -> tuple[str | None, int]:
    """The contents of the {...} group starting at or after pos (spaces skipped), and its end."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text) or text[pos] != "{":
        return None, pos
    depth, i = 0, pos
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 1  # \{ and \} are characters, not braces
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1:i], i + 1
        i += 1
    return None, pos


def paragraphs(text: str, macros: dict, heading_chars: int) -> list[Para]:
    """Parse once, convert to marked text, split into paragraphs."""
    from pylatexenc.latexwalker import LatexWalker, LatexWalkerError

    context = _walker_context(tuple((n, a, d is not None) for n, (a, d, _) in macros.items()))
    try:
        nodes = LatexWalker(text, latex_context=context, tolerant_parsing=True).get_latex_nodes()[0]
    except LatexWalkerError as exc:
        raise ReadError(f"unparsable LaTeX ({' '.join(str(exc).split())[:120]})") from None
    converter = _converter()(macros, context, chaptered="\\chapter" in text)
    body = next((n for n in nodes if _is_env(n, "document")), None)
    preamble_title = converter.title_of(nodes)
    marked = converter.nodelist_to_text(body.nodelist if body is not None else nodes)
    out = [Para(preamble_title, "title", 0, False)] if preamble_title else []
    for chunk in _PARAGRAPH_BREAK.split(marked):
        para = _para(chunk, heading_chars)
        if para is not None:
            out.append(para)
    return out


def _para(chunk: str, heading_chars: int) -> Para | None:
    """One marked chunk of converted text -> a Para (None when it holds no prose)."""
    style, level = "normal", None
    if chunk.startswith(MARK):
        kind, _, chunk = chunk[1:].partition(MARK)
        style, level = KIND_STYLES.get(kind) or (f"heading {kind}", int(kind))
    if DISPLAY in chunk:
        pieces = chunk.split(DISPLAY)
        if not "".join(pieces[::2]).strip(" \t\n.,;"):
            return None  # an equation on its own: not prose (as Word's display equations)
        chunk = "".join(pieces)
    bold = chunk.strip().startswith(BOLD) and chunk.strip().endswith(BOLD) and chunk.count(BOLD) == 2
    text = " ".join(chunk.replace(BOLD, "").replace(SOFT_HYPHEN, "").split())
    if not text:
        return REFERENCES if style == "bibliography" else None
    bold = bold and level is None and len(text) < heading_chars and text[-1] not in TEXT_END
    return Para(text, style, level, bold)


def _is_env(node, name: str) -> bool:
    return getattr(node, "environmentname", None) == name


@lru_cache(maxsize=8)
def _walker_context(user: tuple[tuple[str, int, bool], ...]):
    """pylatexenc's parsing context plus the argument shapes of this paper's own macros."""
    from pylatexenc.latexwalker import get_default_latex_context_db
    from pylatexenc.macrospec import EnvironmentSpec, VerbatimArgsParser, std_macro

    db = get_default_latex_context_db()
    verbatim = VerbatimArgsParser(verbatim_arg_type="verbatim-environment")
    db.add_context_category("papers", prepend=True, macros=[
        std_macro("href", "[{{"), std_macro("hypertarget", "{{"), std_macro("hyperlink", "{{"),
        std_macro("paragraph", "*[{"), std_macro("part", "*[{"),
        std_macro("caption", "*[{"), std_macro("thanks", "{"), std_macro("affiliation", "[{"),
        std_macro("email", "{"), std_macro("parencite", "*[[{"), std_macro("textcite", "*[[{"),
        std_macro("autocite", "*[[{"), std_macro("footcite", "[[{"), std_macro("nocite", "{"),
        std_macro("pageref", "{"), std_macro("textcolor", "{{"), std_macro("footnotetext", "[{"),
        *(std_macro(name, "{") for name in KEPT),
    ], environments=[EnvironmentSpec(name, args_parser=verbatim)
                     for name in ("lstlisting", "minted", "Verbatim")])
    db.add_context_category("user", prepend=True, macros=[
        std_macro(name, ("[" if optional else "") + "{" * (nargs - optional))
        for name, nargs, optional in user])
    return db


@lru_cache(maxsize=1)
def _converter():
    """The LatexNodes2Text subclass (built on first use: pylatexenc is imported lazily)."""
    from pylatexenc.latex2text import LatexNodes2Text

    class Converter(LatexNodes2Text):
        """LatexNodes2Text that marks structure, numbers citations and drops non-prose."""

        def __init__(self, macros: dict, context, chaptered: bool):
            super().__init__(math_mode="verbatim", latex_context=_text_context())
            self.macros, self.walker_context = macros, context
            self.numbers = Numbers()
            # A thesis-like paper with \chapter: sections sit one level below chapters;
            # after \appendix every section sits inside the Appendix heading.
            self.shift = int(chaptered)
            self.expanding = 0

        def title_of(self, nodes) -> str:
            r"""The \title{} of the preamble (later arguments win, as in LaTeX)."""
            titles = [n for n in nodes if getattr(n, "macroname", None) == "title"]
            return " ".join(self._arg(titles[-1], -1).split()) if titles else ""

        def _arg(self, node, index: int) -> str:
            args = node.nodeargd.argnlist if node.nodeargd else []
            return self.nodelist_to_text([args[index]]) if args and args[index] else ""

        def _keys(self, node) -> list[str]:
            args = node.nodeargd.argnlist if node.nodeargd else []
            raw = args[-1].latex_verbatim().strip("{} ") if args and args[-1] else ""
            return [k.strip() for k in raw.split(",") if k.strip()]

        def macro_node_to_text(self, node):
            name = node.macroname
            if name in SECTION_LEVELS:
                shift = self.shift if name not in ("part", "chapter") else 0
                return self._heading(SECTION_LEVELS[name] + shift, self._arg(node, -1))
            if name in CITES:
                keys = self._keys(node)
                return self.numbers.cite(keys) if keys and name != "nocite" else ""
            if name in REFS:
                labels = self._keys(node)
                if REFS[name] == "named":
                    return ", ".join(self.numbers.named_ref(k) for k in labels)
                return ", ".join(REFS[name].format(self.numbers.ref(k)) for k in labels)
            if name in DROPPED:
                return ""
            if name == "title":
                return f"\n\n{MARK}t{MARK}{self._arg(node, -1)}\n\n"
            if name in ("bibliography", "printbibliography"):
                return f"\n\n{MARK}b{MARK}\n\n"
            if name == "appendix":
                self.shift += 1
                return self._heading(1, "Appendix")
            if name == "item":
                return "\n\n" + (self._arg(node, 0) + " " if node.nodeargd and
                                 node.nodeargd.argnlist[0] else "")
            if name in ("par", "\\", "newline"):
                return "\n\n" if name == "par" else " "
            if name == "textbf":
                return BOLD + self._arg(node, -1) + BOLD
            if name in KEPT or name in ("href", "url", "hyperlink", "hypertarget"):
                return self._arg(node, -1)  # the text, not the target (pandoc's section anchors)
            if name in self.macros and self.expanding < MAX_DEPTH:
                return self._expand(node)
            return super().macro_node_to_text(node)

        @staticmethod
        def _heading(level: int, title: str) -> str:
            return f"\n\n{MARK}{level}{MARK}{title}\n\n"

        def _expand(self, node) -> str:
            r"""A user macro: its body with #1.. replaced by the arguments, converted in turn."""
            from pylatexenc.latexwalker import LatexWalker

            nargs, default, body = self.macros[node.macroname]
            args = node.nodeargd.argnlist if node.nodeargd else []
            for i in range(nargs):
                arg = args[i] if i < len(args) else None
                value = (default or "") if arg is None else arg.latex_verbatim()
                if arg is not None and value[:1] in "{[" and value[-1:] in "}]":
                    value = value[1:-1]
                body = body.replace(f"#{i + 1}", value)
            self.expanding += 1
            try:
                nodes = LatexWalker(body, latex_context=self.walker_context,
                                    tolerant_parsing=True).get_latex_nodes()[0]
                return self.nodelist_to_text(nodes)
            finally:
                self.expanding -= 1

        def environment_node_to_text(self, node):
            name = node.environmentname
            if name in DROPPED_ENVS:
                return ""
            if name in MATH_ENVS:
                return DISPLAY + node.latex_verbatim() + DISPLAY
            if name == "thebibliography":
                return f"\n\n{MARK}b{MARK}\n\n"
            if name == "abstract":
                text = self.nodelist_to_text(node.nodelist)
                parts = [p for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
                return "".join(f"\n\n{MARK}a{MARK}{p}\n\n" for p in parts)
            return super().environment_node_to_text(node)

        def math_node_to_text(self, node):
            verbatim = node.latex_verbatim()  # math is kept as written
            return DISPLAY + verbatim + DISPLAY if node.displaytype == "display" else verbatim

    return Converter


@lru_cache(maxsize=1)
def _text_context():
    from pylatexenc.latex2text import get_default_latex_context_db

    return get_default_latex_context_db()
