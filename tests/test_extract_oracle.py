"""pandoc as an independent oracle for extracted prose, and the bench smoke test.

pandoc reads each .docx (`--track-changes=accept`) into its AST; the oracle removes what the
extractor drops on purpose (front matter is metadata already; headings, tables, captions,
display equations, excluded sections, references and everything after), renders the rest
with `-t plain --wrap=none`, and the two word sequences must be near-identical.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docx_factory import (
    DELETED_MARK, complex_field, dele, heading, ins, make_docx, move_from, move_to, p, paper,
    prose, r,
)
from omegaconf import OmegaConf

from voicetune.config import DEFAULT_END_MARKERS, DEFAULT_EXCLUDED, CorpusConfig, demo_corpus_path
from voicetune.stages.extract import Rules, extract_paper

# Measured on the 7 demo papers: 0.9869-1.0000 (see bench/results/extract.md); the gap
# is inline maths, which pandoc writes with TeX-like sub/superscripts (β_ j vs βj).
MIN_RATIO = 0.97
BENCH = Path(__file__).resolve().parents[1] / "bench" / "extract.py"
CAPTION = re.compile(r"^(figure|fig\.?|table)\s*\d+\s*[:.]", re.I)

pytestmark = pytest.mark.skipif(shutil.which("pandoc") is None,
                                reason="pandoc not installed: the oracle needs `pandoc` on PATH")


def _pandoc(args: list[str], data: bytes | None = None) -> bytes:
    return subprocess.run(["pandoc", *args], input=data, capture_output=True, check=True).stdout


def _plain(node) -> str:
    """Lower-case words of an AST fragment (like pandoc's stringify, spaces aside)."""
    if isinstance(node, list):
        return " ".join(filter(None, (_plain(x) for x in node)))
    if isinstance(node, dict):
        return node["c"].lower() if node.get("t") == "Str" else _plain(node.get("c", []))
    return ""


def _drop(header_text: str) -> str | None:
    """'end', 'skip' or None for a header, by the config's default lists."""
    if any(header_text.startswith(m) for m in DEFAULT_END_MARKERS):
        return "end"
    if any(x in header_text for x in DEFAULT_EXCLUDED):
        return "skip"
    return None


def _keep(block: dict) -> bool:
    if block["t"] in ("Table", "Figure", "HorizontalRule"):
        return False
    if block["t"] in ("Para", "Plain"):
        inl = [x for x in block["c"] if x["t"] not in ("Space", "SoftBreak")]
        if inl and all(x["t"] == "Math" and x["c"][0]["t"] == "DisplayMath" for x in inl):
            return False
        return not CAPTION.match(_plain(block["c"][:4]) if block["c"] else "")
    return True


def oracle_blocks(ast: dict) -> list[dict]:
    """Body blocks pandoc would print, minus what the extractor drops on purpose."""
    kept, skip_level = [], None
    for block in ast["blocks"]:
        if block["t"] == "Header":
            level, text = block["c"][0], _plain(block["c"][2])
            verdict = _drop(text)
            if verdict == "end":
                break
            if skip_level is not None and level > skip_level:
                continue
            skip_level = level if verdict == "skip" else None
        elif skip_level is None and _keep(block):
            if block["t"] == "OrderedList":  # Word keeps list numbers out of the text
                block = {"t": "BulletList", "c": block["c"][1]}
            kept.append(block)
    return kept


def oracle_text(docx: Path) -> str:
    ast = json.loads(_pandoc(["-f", "docx", "-t", "json", "--track-changes=accept", str(docx)]))
    ast["blocks"] = oracle_blocks(ast)
    return _pandoc(["-f", "json", "-t", "plain", "--wrap=none"], json.dumps(ast).encode()).decode()


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def similarity(docx: Path) -> float:
    rules = Rules.from_config(OmegaConf.structured(CorpusConfig(path=str(docx.parent))))
    ours = "\n".join(x for s in extract_paper(docx, rules).sections for x in s.paragraphs)
    return difflib.SequenceMatcher(None, words(ours), words(oracle_text(docx)),
                                   autojunk=False).ratio()


DEMO = sorted(Path(demo_corpus_path()).glob("*.docx"))


@pytest.mark.parametrize("docx", DEMO, ids=[d.stem for d in DEMO])
def test_demo_paper_matches_pandoc(docx):
    ratio = similarity(docx)
    print(f"{docx.stem}: {ratio:.4f}")
    assert ratio >= MIN_RATIO


def test_tracked_changes_fixture_matches_pandoc(tmp_path):
    changed = p(r("We measured "), ins(r("forty")), dele("thirty"), r(" mice "),
                move_to("quickly"), move_from("slowly"), r(" over several weeks in total."))
    body = paper([("Introduction", [prose("Intro"), changed,
                                    p("A sentence whose mark was deleted", ppr=DELETED_MARK),
                                    p("continues here in the next paragraph."),
                                    p("See ", complex_field("REF _Ref1 \\h", "Section 2"), ".")]),
                  ("Methods", [prose("Methods")]), ("References", ["Smith 2020."])])
    ratio = similarity(make_docx(tmp_path / "changes.docx", body))
    print(f"tracked-changes fixture: {ratio:.4f}")
    assert ratio >= MIN_RATIO


def test_bench_quick_prints_four_rows():
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                         text=True, check=True, env=None).stdout
    rows = [line.split("|")[1].strip() for line in out.splitlines()
            if line.startswith("| ") and "papers/s" not in line]
    assert rows == ["voicetune", "python-docx", "mammoth", "bare lxml"]
    assert "voicetune / bare lxml" in out
