"""What every reader hands the extract stage: a file's body paragraphs, in reading order.

A reader (`ooxml` for Word, one module per other format) turns one file into a `Document`;
`voicetune.stages.extract` then decides what each paragraph is (front matter, caption,
heading, prose, the end of the paper) with the same rules for every format.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    para_index: int  # of the accept-all paragraph in Document.paragraphs


@dataclass(slots=True)
class Document:
    paragraphs: list[Para]
    sha256: str  # of the file's bytes
    revisions: list[Revision] = field(default_factory=list)
