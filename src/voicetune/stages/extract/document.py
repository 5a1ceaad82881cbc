"""What every reader hands the extract stage: a file's body paragraphs, in reading order.

A reader (`ooxml` for Word, one module per other format) turns one file into a `Document`;
`voicetune.stages.extract` then decides what each paragraph is (front matter, caption,
heading, prose, the end of the paper) with the same rules for every format. `revision` is
the one rule for which of the author's tracked edits count, whatever the format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicetune.revisions import changed_words

# Extraction keeps every edit that changes a word (a replaced word counts once); which ones
# become training pairs is `data.revisions.min_changed_words` (3), so changing that does not
# read the corpus again.
MIN_CHANGED_WORDS = 1


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
