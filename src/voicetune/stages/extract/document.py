"""What every reader hands the extract stage: a file's body paragraphs, in reading order.

A reader (`ooxml` for Word, one module per other format) turns one file into a `Document`;
`voicetune.stages.extract` then decides what each paragraph is (front matter, caption,
heading, prose, the end of the paper) with the same rules for every format. `revision` is
the one rule for which of the author's tracked edits count, whatever the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from voicetune.revisions import changed_words

# Extraction keeps every edit that changes a word (a replaced word counts once); which ones
# become training pairs is `data.revisions.min_changed_words` (3), so changing that does not
# read the corpus again.
MIN_CHANGED_WORDS = 1


class ReadError(Exception):
    """A file that cannot be read as a paper; the message is the one-line reason."""


class Included(ReadError):
    """A file that is part of another paper (a .tex without \\documentclass): no paper of its own."""


@dataclass(slots=True)
class Para:
    text: str  # whitespace-normalised: single spaces, no leading/trailing space
    style: str  # lower-case style name ("normal" when unstyled; "abstract", "bibliography", "caption" mean what they say)
    level: int | None  # 0 = title, 1-9 = heading level, None = body text
    bold: bool  # a short line whose text is all bold (an unlisted sub-heading, not prose)


@dataclass(slots=True)
class Revision:
    """One paragraph the author edited with tracked changes: its text before and after."""

    before: str  # reject all changes
    after: str  # accept all changes (the text the prose reading holds)
    para_index: int  # of the accepted paragraph in Document.paragraphs (its section follows)


@dataclass(slots=True)
class Document:
    paragraphs: list[Para]
    sha256: str  # of the file's bytes (a .tex: and of the files it \\input-s)
    revisions: list[Revision] = field(default_factory=list)


def revision(before: str, after: str, para_index: int,
             min_changed_words: int = MIN_CHANGED_WORDS) -> Revision | None:
    """The Revision of one edited paragraph, or None: inserted or deleted whole, or too small."""
    if not before or not after or before == after:
        return None
    if changed_words(before.split(), after.split()) < min_changed_words:
        return None
    return Revision(before, after, para_index)


# Cross-reference label prefixes (LaTeX "fig:x", Quarto "fig-x", pandoc-crossref "fig:x").
_LABEL_KIND = re.compile(r"^(fig|tbl|tab|sec|eq|lst|alg|app|thm|lem)[:-]", re.I)
KIND_NAMES = {"fig": "Figure", "tbl": "Table", "tab": "Table", "sec": "Section",
              "eq": "Equation", "lst": "Listing", "alg": "Algorithm", "app": "Appendix",
              "thm": "Theorem", "lem": "Lemma"}


class Numbers:
    """Citation keys and cross-reference labels -> numbers, in order of first mention in a paper.

    Markdown `[@a; @b]` and LaTeX `\\cite{a,b}` both read "[1, 2]": the numbered marker a
    Word paper carries, which the offline de-polisher leaves alone and the numbers gate
    (`gates.CITATION`) reads as one marker. A key keeps its number for the whole paper.
    """

    def __init__(self):
        self._cites: dict[str, int] = {}
        self._labels: dict[str, dict[str, int]] = {}  # kind -> label -> number

    def cite(self, keys: list[str]) -> str:
        """The marker for one citation group: "[2]", "[1, 3]"."""
        numbers = sorted({self._cites.setdefault(k, len(self._cites) + 1) for k in keys})
        return "[" + ", ".join(map(str, numbers)) + "]"

    @staticmethod
    def kind(label: str) -> str:
        """"fig" for "fig:mice" or "fig-mice"; "" for a label without a known prefix."""
        match = _LABEL_KIND.match(label)
        return match.group(1).lower() if match else ""

    def ref(self, label: str) -> str:
        """The number a \\ref{label} prints: figures, tables, ... each counted apart."""
        seen = self._labels.setdefault(self.kind(label), {})
        return str(seen.setdefault(label, len(seen) + 1))

    def named_ref(self, label: str) -> str:
        """"Figure 2" for a cross-reference that prints its kind (\\cref, Quarto @fig-x)."""
        name = KIND_NAMES.get(self.kind(label))
        return f"{name} {self.ref(label)}" if name else self.ref(label)
