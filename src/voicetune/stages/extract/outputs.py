"""The extract stage's outputs: papers/<id>.md, papers.jsonl, report.json and the report table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from voicetune.records import write_jsonl

if TYPE_CHECKING:
    from voicetune.stages.extract import Paper

STATUSES = ("ok", "warning", "error", "duplicate", "included")  # of a file's report row


def paper_record(paper: Paper) -> dict:
    """The papers.jsonl row."""
    return {"id": paper.id, "title": paper.title, "source": paper.source,
            "sha256": paper.sha256, "words": paper.words, "warnings": paper.warnings,
            "sections": [{"name": s.name, "title": s.title, "paragraphs": s.paragraphs}
                         for s in paper.sections],
            "revisions": paper.revisions}


def paper_markdown(paper: Paper) -> str:
    """YAML frontmatter, then `## Title` and blank-line separated paragraphs per section."""
    import yaml

    meta = {"title": paper.title, "source": paper.source, "sha256": paper.sha256,
            "sections": [{"name": s.name, "title": s.title, "words": s.words}
                         for s in paper.sections],
            "words": paper.words, "warnings": paper.warnings, "revisions": len(paper.revisions)}
    parts = ["---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---"]
    for s in paper.sections:
        parts.append(f"## {s.title or s.name.capitalize()}")
        parts.extend(s.paragraphs)
    return "\n\n".join(parts) + "\n"


def write_outputs(out: Path, papers: list[Paper], rows: list[dict]) -> None:
    """papers/<id>.md, papers.jsonl and report.json under `out`."""
    (out / "papers").mkdir(parents=True, exist_ok=True)
    for paper in papers:
        (out / "papers" / f"{paper.id}.md").write_text(paper_markdown(paper), encoding="utf-8")
    write_jsonl(out / "papers.jsonl", [paper_record(p) for p in papers])
    (out / "report.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False),
                                     encoding="utf-8")


def progress(files: list[Path], label: str):
    """A rich progress bar over files (rich writes plain lines when not on a terminal)."""
    from rich.progress import track

    return track(files, description=label, total=len(files))


def print_report(rows: list[dict]) -> None:
    """The extraction report as a rich table: one row per file."""
    from rich.console import Console
    from rich.table import Table

    colour = dict(zip(STATUSES, ("green", "yellow", "red", "cyan", "dim")))
    table = Table(title="extract report")
    for column in ("file", "status", "sections", "words", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["file"], f"[{colour[r['status']]}]{r['status']}",
                      ", ".join(r["sections"]), str(r["words"]), r["reason"])
    Console().print(table)
