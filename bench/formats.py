"""The demo papers in every input format, converted from their .docx with pandoc (PDF: pandoc's
HTML printed by headless Chromium, two columns, a running header and page numbers).

Real-world files for bench/extract's per-format rows and the mixed-format corpus test: what an
author's Markdown, LaTeX, ODT or published PDF of the same paper looks like, made by the tools
that make them. Needs `pandoc` and `chromium` on PATH (this machine has both; see README).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FORMATS = ("md", "tex", "odt", "pdf")
# Two columns, a running header and page numbers in the page margins (CSS paged media).
PRINT_CSS = """
@page { size: A4; margin: 22mm 18mm;
        @top-center { content: "Journal of Open Source Software"; font: 8pt serif; }
        @bottom-center { content: counter(page); font: 8pt serif; } }
body { column-count: 2; column-gap: 7mm; font: 10pt/1.3 serif; margin: 0; max-width: none; padding: 0;
       text-align: justify; hyphens: auto; }
header, h1.title { column-span: all; }
img, figure { display: none; }
"""


def tools_missing() -> list[str]:
    """The converters this machine lacks."""
    return [tool for tool in ("pandoc", "chromium") if not shutil.which(tool)]


def convert(docx: Path, fmt: str, folder: Path) -> Path:
    """`docx` as a file of `fmt` in `folder` (same stem)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{docx.stem}.{fmt}"
    if fmt == "pdf":
        css, html = folder / "print.css", folder / f"{docx.stem}.html"
        css.write_text(PRINT_CSS)
        _run(["pandoc", str(docx), "-s", "-c", css.name, "-o", str(html)])
        _run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
              f"--print-to-pdf={out}", html.as_uri()])
        html.unlink()
        return out
    _run(["pandoc", str(docx), *(["-s"] if fmt in ("md", "tex") else []), "-o", str(out)])
    return out


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {done.stderr.strip()[-300:]}")
