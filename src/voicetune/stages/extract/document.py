"""What every reader hands the extract stage: a file's body paragraphs, in reading order.

A reader (`ooxml` for Word, one module per other format) turns one file into a `Document`;
`voicetune.stages.extract` then decides what each paragraph is (front matter, caption,
heading, prose, the end of the paper) with the same rules for every format. `revision` is
the one rule for which of the author's tracked edits count, whatever the format.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

# A revision changes at least this many words (a replaced word counts once). 1-2 word edits
# are typo, tense and agreement fixes ("data is" -> "data are"): as (before, after) pairs they
# teach a model to copy its input, not the author's rewriting; 3 is a rephrased clause.
MIN_CHANGED_WORDS = 3


class ReadError(Exception):
    """A file that cannot be read as a paper; the message is the one-line reason."""


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
    sha256: str  # of the file's bytes
    revisions: list[Revision] = field(default_factory=list)


def revision(before: str, after: str, para_index: int,
             min_changed_words: int = MIN_CHANGED_WORDS) -> Revision | None:
    """The Revision of one edited paragraph, or None: inserted or deleted whole, or too small."""
    if not before or not after or before == after:
        return None
    if changed_words(before.split(), after.split()) < min_changed_words:
        return None
    return Revision(before, after, para_index)


def changed_words(old: list[str], new: list[str]) -> int:
    """Words inserted, deleted or replaced between two word lists (a replaced word counts once)."""
    # Edits are local: trimming the shared head and tail first leaves difflib a few words, not
    # a paragraph (a paper with an edit in each of its 100 paragraphs: 122 -> 236 papers/s).
    n, head, tail = min(len(old), len(new)), 0, 0
    while head < n and old[head] == new[head]:
        head += 1
    while tail < n - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    old, new = old[head:len(old) - tail], new[head:len(new) - tail]
    if not old or not new:
        return len(old) + len(new)
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")
