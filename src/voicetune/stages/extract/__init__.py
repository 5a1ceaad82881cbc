"""Stage `extract`: the author's papers -> clean, section-tagged prose (one markdown file per paper).

A reader per format turns a file into body paragraphs (`READERS`: `ooxml` for Word, with
accepted tracked changes and no comments, fields, notes, tables or text boxes); this module
decides what each paragraph is, with the same rules for every format: front matter, caption,
heading (by style, or a short whitelisted line), prose, or the end of the paper.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from voicetune.cache import file_digest
from voicetune.errors import UserError
from voicetune.stages.extract.document import Included, Para, ReadError
from voicetune.stages.extract.outputs import STATUSES, print_report, progress, write_outputs
from voicetune.stages.extract.same_paper import same_papers

# suffix -> "module:function" reading one file into a Document (imported on first use)
READERS = {
    ".docx": "voicetune.stages.extract.ooxml:read_document",
    ".docm": "voicetune.stages.extract.ooxml:read_document",
    ".doc": "voicetune.stages.extract.ooxml:read_document",  # gets its one-line error row
    ".pdf": "voicetune.stages.extract.pdf:read_pdf",
    ".md": "voicetune.stages.extract.markdown:read_document",
    ".markdown": "voicetune.stages.extract.markdown:read_document",
    ".qmd": "voicetune.stages.extract.markdown:read_document",
    ".tex": "voicetune.stages.extract.latex:read_document",
    ".odt": "voicetune.stages.extract.odt:read_document",
}
SUFFIXES = frozenset(READERS)
MIN_WORDS = 300  # below this a paper is flagged: a letter at best, usually a bad extraction
ABSTRACT_LABELS = {
    "importance", "objective", "objectives", "design setting and participants",
    "design", "setting", "participants", "interventions", "exposure", "exposures",
    "main outcomes and measures", "results", "conclusions and relevance", "conclusions",
    "conclusion", "background", "methods", "aims", "aim", "purpose", "findings",
    "interpretation", "context", "trial registration", "significance",
}
FRONT_STYLES = {
    "title", "subtitle", "author", "authors", "date", "affiliation", "address",
    "keywords", "email", "correspondence", "abstract title",
}
_NUMBERING = re.compile(
    r"^\s*(?:\d+(?:\.\d+)*\.?\s+|\d+(?:\.\d+)*[.)]\s*|[ivxlcdm]+[.)]\s*|[a-z][.)]\s+)", re.I)
_CAPTION = re.compile(
    r"^(?:supplementary\s+)?(?:figure|fig\.?|table|scheme|chart|plate)\s*[a-z]?\d+[a-z]?\s*[:.|–—-]",
    re.I)
_INLINE_LABEL = re.compile(r"^([A-Za-z][A-Za-z ,&/-]{1,60}?)\s*[:–—]\s+(\S.*)$")
LABEL_CHARS = 64  # an inline label ("Funding:") ends within this many characters
CAPTION_INITIALS = frozenset("FfTtSsCcPp")  # figure, table, supplementary, scheme, chart, plate
_FRONT_LINE = re.compile(
    r"\S+@\S+\.\w|^\W*(?:correspond|keywords?\b|key words|received|accepted|published|"
    r"revised|available online|doi\b|orcid|copyright|©|citation:|these authors)"
    r"|^[\d*†‡§¹²³⁴⁵⁶⁷⁸⁹\s,]*(?:department|dept\.|school of|faculty|institute|university|"
    r"division of|cent(?:er|re) for|laborator|hospital|college)",
    re.I)
_SLUG = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class Rules:
    """The corpus config turned into lookups: normalized heading -> what it means."""

    sections: dict[str, str]  # synonym -> canonical name
    excluded: frozenset[str]
    end_markers: frozenset[str]
    max_heading_chars: int
    # Headings repeat across a corpus ("Introduction"): remember what each one meant.
    _seen: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, corpus) -> "Rules":
        """Build from `cfg.corpus` (CorpusConfig-shaped)."""
        sections = {norm(name): name for name in corpus.sections}
        for name, synonyms in corpus.sections.items():
            sections.update({norm(s): name for s in synonyms})
        return cls(sections, frozenset(norm(x) for x in corpus.excluded),
                   frozenset(norm(x) for x in corpus.end_markers), corpus.max_heading_chars)

    def meaning(self, text: str, styled: bool) -> tuple[str, str] | None:
        """("end"|"excluded"|"section", canonical) for a heading text, None if unknown."""
        if (text, styled) not in self._seen:
            self._seen[text, styled] = self._meaning(norm(text), styled)
        return self._seen[text, styled]

    def _meaning(self, key: str, styled: bool) -> tuple[str, str] | None:
        if key in self.end_markers:
            return ("end", key)
        if key in self.excluded:
            return ("excluded", key)
        if key in self.sections:
            return ("section", self.sections[key])
        if styled and _affix_match(key, self.end_markers):
            return ("end", key)
        if styled and _affix_match(key, self.excluded):
            return ("excluded", key)
        # "Discussion/Conclusion", "Methods and Results": the first part names the section.
        for part in re.split(r"/| and ", key):
            if part.strip() in self.sections:
                return ("section", self.sections[part.strip()])
        return None


def norm(text: str) -> str:
    """Heading text for matching: numbering, punctuation and case removed, & -> and."""
    text = _NUMBERING.sub("", text.replace("&", " and ")).lower()
    return " ".join(re.sub(r"[^\w/ ]+", " ", text).split())


def _affix_match(key: str, phrases: frozenset[str]) -> bool:
    """'code and data availability' ends with 'data availability'; 'references and notes'."""
    return any(key.startswith(p + " ") or key.endswith(" " + p) for p in phrases)


@dataclass
class Section:
    name: str
    title: str
    paragraphs: list[str] = field(default_factory=list)

    @property
    def words(self) -> int:
        # Paragraph text is whitespace-normalised: words = spaces + 1.
        return sum(p.count(" ") + 1 for p in self.paragraphs)


@dataclass
class Paper:
    id: str
    title: str
    source: str
    sha256: str
    sections: list[Section]
    warnings: list[str]
    # The author's tracked revisions of kept prose: {"section", "before", "after"} each.
    revisions: list[dict] = field(default_factory=list)

    @property
    def words(self) -> int:
        return sum(s.words for s in self.sections)


class _Builder:
    """Walks paragraphs once, keeping the state that decides where each one goes."""

    def __init__(self, rules: Rules, top: int | None):
        self.rules, self.top = rules, top
        self.sections: list[Section] = []
        self.skip_level: int | None = None  # inside an excluded block opened at this level
        self.headings = 0
        self.ended = False

    @property
    def current(self) -> Section | None:
        return self.sections[-1] if self.sections else None

    def open(self, name: str, title: str) -> None:
        self.sections.append(Section(name, title))
        self.skip_level = None

    def add(self, p: Para) -> None:
        """Route one paragraph: heading, excluded, front matter, or prose."""
        if p.style == "bibliography":
            self.ended = True
        elif _is_caption(p):
            return
        elif p.level is not None and p.level >= 1:
            self._styled_heading(p)
        elif not self._plain_heading(p):
            self._prose(p)

    def _styled_heading(self, p: Para) -> None:
        meaning = self.rules.meaning(p.text, styled=True)
        level = p.level
        if meaning and meaning[0] == "end":
            self.ended = True
        elif self.skip_level is not None and level > self.skip_level:
            return  # a sub-heading of an excluded block: still excluded
        elif self.top is None or level <= self.top:
            self._top_heading(p.text, meaning, level)
        elif meaning and meaning[0] == "excluded":
            self.skip_level = level  # "Acknowledgements" as a sub-heading of Conclusion
        else:
            self.skip_level = None
            if self.current and self.current.name == "abstract" and norm(p.text) in ABSTRACT_LABELS:
                self.current.paragraphs.append(p.text)  # structured abstract label, kept

    def _top_heading(self, text: str, meaning, level: int) -> None:
        self.headings += 1
        if meaning and meaning[0] == "excluded":
            self.skip_level = level
        else:
            self.open(meaning[1] if meaning else "unknown", text)

    def _plain_heading(self, p: Para) -> bool:
        """A short unstyled line that names a known section (or an unknown bold sub-heading)."""
        text = p.text
        if len(text) >= self.rules.max_heading_chars or text.endswith(":"):
            return False
        in_abstract = self.current is not None and self.current.name == "abstract"
        if in_abstract and norm(text) in ABSTRACT_LABELS:
            return False  # a structured abstract's label line stays in the abstract
        meaning = self.rules.meaning(text, styled=False)
        if meaning:
            if meaning[0] == "end":
                self.ended = True
            else:
                self._top_heading(text, meaning, self.top or 1)
            return True
        # An unlisted bold line without a full stop is a sub-heading: not prose.
        return p.bold and self.current is not None and not text.endswith((".", "?", "!"))

    def _prose(self, p: Para) -> None:
        if self.skip_level is not None:
            return
        label, rest = _inline_label(p.text)
        meaning = self.rules.meaning(label, styled=False) if label else None
        if meaning and meaning[0] == "excluded":
            return  # "Funding: This work was supported by ..."
        if self.current is None:
            if meaning == ("section", "abstract"):
                self.open("abstract", label)
                self.current.paragraphs.append(rest)
                return
            if p.style == "abstract":
                self.open("abstract", "Abstract")
            elif p.style in FRONT_STYLES or _FRONT_LINE.search(p.text) or not _is_prose(p.text):
                return
            else:
                self.open("unknown", "")
        self.current.paragraphs.append(p.text)


def _inline_label(text: str) -> tuple[str, str]:
    head = text[:LABEL_CHARS]
    if ":" not in head and "–" not in head and "—" not in head:
        return ("", text)  # most paragraphs: skip the regex
    match = _INLINE_LABEL.match(text)
    return (match.group(1), match.group(2)) if match else ("", text)


def _is_caption(p: Para) -> bool:
    return "caption" in p.style or (p.text[0] in CAPTION_INITIALS and bool(_CAPTION.match(p.text)))


def _is_prose(text: str) -> bool:
    """Front matter lines (names, affiliations, dates) are short or lack a sentence end."""
    return len(text.split()) >= 12 and text.rstrip()[-1] in ".!?)\"”'’"


def top_level(paras: list[Para], rules: Rules) -> int | None:
    """The paper's own top heading level: Heading 1 in JOSS, Heading 2 in Manubot."""
    levels = [p.level for p in paras if p.level is not None and p.level >= 1]
    known = [p.level for p in paras
             if p.level is not None and p.level >= 1 and rules.meaning(p.text, styled=True)]
    return min(known or levels) if levels else None


def structure(paras: list[Para], rules: Rules) -> tuple[str, list[Section], list[str], dict[int, Section]]:
    """(title, sections, warnings, placed) of one paper's paragraphs; `placed` maps the index of
    each paragraph kept verbatim as prose to its section."""
    title = next((p.text for p in paras if p.level == 0), paras[0].text if paras else "")
    builder = _Builder(rules, top_level(paras, rules))
    placed = {}
    for i, p in enumerate(paras):
        builder.add(p)
        if builder.ended:
            break
        section = builder.current
        if section is not None and section.paragraphs and section.paragraphs[-1] is p.text:
            placed[i] = section
    sections = [s for s in builder.sections if s.paragraphs]
    warnings = []
    if builder.headings == 0:
        sections = [Section("body", "", [t for s in sections for t in s.paragraphs])]
        placed = dict.fromkeys(placed, sections[0])
        warnings.append("no headings found: one body section")
    unknown = [s.title or "(before the first heading)" for s in sections if s.name == "unknown"]
    if unknown:
        warnings.append("unknown sections: " + ", ".join(unknown))
    return title, [s for s in sections if s.paragraphs], warnings, placed


def slug(stem: str) -> str:
    """Paper id: the file stem lower-cased, runs of other characters -> '-'."""
    return _SLUG.sub("-", stem.lower()).strip("-") or "paper"


def extract_paper(path: Path, rules: Rules) -> Paper:
    """One file -> Paper; ReadError (one-line reason) when unreadable or without prose."""
    doc = reader(path.suffix)(path, rules.max_heading_chars)
    title, sections, warnings, placed = structure(doc.paragraphs, rules)
    revisions = [{"section": placed[r.para_index].name, "before": r.before, "after": r.after}
                 for r in doc.revisions if r.para_index in placed]
    paper = Paper(slug(path.stem), title, path.name, doc.sha256, sections, warnings, revisions)
    words = paper.words  # a sum over every paragraph: once, not per check
    if words == 0:
        raise ReadError("no prose found (only front matter, tables or headings)")
    if words < MIN_WORDS:
        warnings.append(f"very short paper ({words} words)")
    return paper


def reader(suffix: str):
    """The reader function for a file suffix (any case)."""
    module, _, name = READERS[suffix.lower()].partition(":")
    return getattr(importlib.import_module(module), name)


def corpus_files(corpus_cfg) -> list[Path]:
    """Sorted input files under corpus_cfg.path (recursive) with a READERS suffix, any case, including ~$lock files (they get error rows)."""
    root = Path(os.path.expanduser(corpus_cfg.path))
    if not root.is_dir():
        raise UserError(f"corpus.path={corpus_cfg.path!r}: must be an existing folder of papers "
                        f"({', '.join(sorted(SUFFIXES))})")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def sources(cfg) -> list[list[str]]:
    """What the stage reads besides its config: each corpus file's path under corpus.path and sha256."""
    root = Path(os.path.expanduser(cfg.corpus.path))
    return [[p.relative_to(root).as_posix(), file_digest(p)] for p in corpus_files(cfg.corpus)]


def run(ctx) -> dict:
    """Stage entry: corpus files -> out/papers/*.md, out/papers.jsonl, out/report.json."""
    cfg, out = ctx.cfg, ctx.out
    rules = Rules.from_config(cfg.corpus)
    files = corpus_files(cfg.corpus)
    papers, rows, ids, row_of = [], [], set(), {}
    root = Path(os.path.expanduser(cfg.corpus.path))
    for path in progress(files, "extract"):
        rel = path.relative_to(root)  # rows and cached outputs never hold absolute paths
        try:
            paper = extract_paper(path, rules)
        except Included as exc:  # a chapter .tex: read through its main file, no paper of its own
            rows.append(_row(rel, "included", [], 0, str(exc)))
            continue
        except ReadError as exc:
            rows.append(_row(rel, "error", [], 0, str(exc)))
            continue
        paper.id = _unique(paper.id, ids)
        papers.append(paper)
        status = "warning" if paper.warnings else "ok"
        rows.append(_row(rel, status, [s.name for s in paper.sections], paper.words,
                         "; ".join(paper.warnings)))
        row_of[paper.id] = rows[-1]
    papers = _one_file_per_paper(papers, row_of)
    write_outputs(out, papers, rows)
    print_report(rows)
    if not papers:
        raise UserError(f"corpus.path={cfg.corpus.path!r}: no paper could be extracted from "
                        f"{len(files)} file(s); see {out / 'report.json'}")
    summary = {k: sum(r["status"] == k for r in rows) for k in STATUSES}
    return {"files": len(files), **summary, "papers": len(papers),
            "words": sum(p.words for p in papers)}


def _one_file_per_paper(papers: list[Paper], row_of: dict[str, dict]) -> list[Paper]:
    """Drop the worse file of each paper found twice (see same_paper); its row says which was kept."""
    dropped = same_papers(papers)
    for pid, (kept, share) in dropped.items():
        kept_file = row_of[kept.id]["file"]
        row_of[pid].update(status="duplicate", reason=(
            f"the same paper as {kept_file} ({share:.0%} of the shorter one's word 4-grams shared); "
            f"kept {kept_file}"))
    return [p for p in papers if p.id not in dropped]


def _row(path: Path, status: str, sections: list[str], words: int, reason: str) -> dict:
    return {"file": path.as_posix(), "status": status, "sections": sections, "words": words,
            "reason": reason}


def _unique(pid: str, taken: set[str]) -> str:
    """Two files may slug alike (a/Paper.docx, b/paper.docx): suffix -2, -3, ..."""
    candidate, n = pid, 1
    while candidate in taken:
        n += 1
        candidate = f"{pid}-{n}"
    taken.add(candidate)
    return candidate
