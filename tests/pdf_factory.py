"""Build real PDF papers in code: an HTML paper printed to PDF by headless Chromium.

`paper_html(spec)` writes a journal-style paper (title, authors, abstract, two columns,
running header, page numbers, margin line numbers, a footnote, a figure, a table, a
reference list); `print_pdf(driver, html, path)` prints it through the DevTools
`Page.printToPDF` call, whose header and footer templates give the running header and the
page numbers. Long words carry soft hyphens, so justified lines end in "exam-" + "ple".
Every word that is not the author's prose is written in CAPITALS or carries a marker word
(HEADER, FOOTNOTE, CAPTION, CELL, REFERENCE, AXIS) so a test can see where it went.
"""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

SHORT = ("the we of and a in to was were for that with as on by this from at is are our "
         "not be or an which these each both than more less after before over under "
         "most all new two three data group model rate mice test time dose cell").split()
LONG = ("measurement experimental significantly population distribution participants "
        "relationship temperature concentration information characteristic "
        "understanding intervention performance observation environmental "
        "proportional comparison considerable independently physiological "
        "neighbourhood representative longitudinal manipulation computational "
        "consequently heterogeneity statistically reproducible associations").split()
COMPOUNDS = ("well-known", "long-term", "cross-sectional", "state-of-the-art")
SECTIONS = ("Introduction", "Methods", "Results", "Discussion")
# One column, ragged right, paragraphs apart instead of indented, headings in bold body type.
PLAIN = """
.cols { column-count: 1; text-align: left; }
p { text-indent: 0; margin: 0 0 8pt; }
h2.sec, h3 { font-size: 10pt; font-style: normal; }
"""
HEADER = "Journal of Synthetic HEADER Studies 12 (2024) 101-119"


@dataclass
class Spec:
    paragraphs: int = 4  # per section
    sentences: int = 5  # per paragraph
    seed: int = 0
    css: str = ""  # appended to CSS: another journal's layout
    long_table: bool = False  # Results also holds a body-size table of long-text cells
    prose: list[str] = field(default_factory=list)  # filled by paper_html: every prose paragraph


def sentence(rng: random.Random) -> str:
    """12-24 words, one in four long (soft-hyphenated when printed), some compounds."""
    words = []
    for _ in range(rng.randint(12, 24)):
        roll = rng.random()
        words.append(rng.choice(LONG) if roll < 0.25 else
                     rng.choice(COMPOUNDS) if roll < 0.29 else rng.choice(SHORT))
    return " ".join(words).capitalize() + "."


def _shy(word: str) -> str:
    """Soft hyphens every 3 letters, none in the first or last 3 (the split a hyphenator makes)."""
    if len(word) < 9 or "-" in word:
        return escape(word)
    cuts = range(3, len(word) - 2, 3)
    parts = [word[i:j] for i, j in zip((0, *cuts), (*cuts, len(word)))]
    return "&shy;".join(parts)


def _p(text: str) -> str:
    return "<p>" + " ".join(_shy(w) for w in text.split()) + "</p>"


CSS = """
@page { size: A4; margin: 20mm 16mm 20mm 12mm; }
body { font: 10pt/13pt "DejaVu Serif", serif; margin: 0 0 0 10mm; }
.lines { position: fixed; left: 0; top: 0; font: 7pt/13pt sans-serif; color: #666; }
h1 { font-size: 20pt; line-height: 24pt; text-align: center; margin: 0 0 6pt; }
.authors, .affil { text-align: center; font-size: 9pt; margin: 0; }
.abstract { margin: 10pt 0 0; }
.abstract h2 { font-size: 11pt; margin: 0 0 3pt; }
.cols { column-count: 2; column-gap: 7mm; text-align: justify; }
.front { break-after: page; display: flex; flex-direction: column; height: 257mm; }
.front .cols { column-fill: balance; margin-top: 12pt; }
.front .note { margin-top: auto; font-size: 7pt; line-height: 8.5pt; border-top: 0.5pt solid #000;
               padding-top: 2pt; }
h2.sec { font-size: 12pt; margin: 10pt 0 4pt; break-after: avoid; }
h3 { font-size: 10.5pt; margin: 8pt 0 3pt; font-style: italic; break-after: avoid; }
p { margin: 0; text-indent: 1.2em; hyphens: manual; }
h2 + p, h3 + p, .abstract p { text-indent: 0; }
figure { margin: 8pt 0; break-inside: avoid; }
.plot { height: 40mm; border: 0.5pt solid #000; position: relative; font: 7pt sans-serif; }
.plot span { position: absolute; bottom: 2pt; }
figcaption { font-size: 8pt; line-height: 10pt; text-align: left; }
.tcap { text-indent: 0; text-align: left; margin-top: 6pt; }
table { font-size: 8pt; border-collapse: collapse; width: 100%; margin: 4pt 0 8pt; }
td, th { border-bottom: 0.5pt solid #000; padding: 1pt 3pt; text-align: right; }
table.long { font-size: 10pt; line-height: 13pt; }
table.long td, table.long th { text-align: justify; vertical-align: middle; border: 0; }
.refs p { font-size: 8pt; line-height: 10pt; text-indent: -1.5em; padding-left: 1.5em; }
"""


def paper_html(spec: Spec) -> str:
    """The paper as one HTML page; records each prose paragraph in `spec.prose`."""
    rng = random.Random(spec.seed)

    def para() -> str:
        text = " ".join(sentence(rng) for _ in range(spec.sentences))
        spec.prose.append(text)
        return _p(text)

    abstract = para()
    intro = [para() for _ in range(2)]  # page 1: the first column break falls in here
    body = []
    for n, name in enumerate(SECTIONS, 1):
        body.append(f'<h2 class="sec">{n} {name}</h2>' if n > 1 else "")
        if name == "Methods":
            body.append('<h3>2.1 Participants and materials</h3>')
        body += [para() for _ in range(spec.paragraphs - (2 if n == 1 else 0))]
        if name == "Results":
            body.append(FIGURE + TABLE)
            if spec.long_table:  # between two paragraphs, one of which it may split
                body.insert(-1, long_table(rng))
    refs = "".join(f"<p>[{i}] Smith J, Jones K. REFERENCE entry number {i} on mice. "
                   f"J Synth Stud. 20{i:02d};{i}:1-9.</p>" for i in range(1, 9))
    numbers = "<br>".join(str(i) for i in range(1, 53))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<style>{CSS}{spec.css}</style></head><body><div class="lines">{numbers}</div>
<div class="front">
<h1>Deep Mice Learn Slowly: A Synthetic Study</h1>
<p class="authors">ADA LOVELACE<sup>1</sup>, CHARLES BABBAGE<sup>2</sup></p>
<p class="affil">1 Department of Biology, University of Somewhere, Somecity</p>
<p class="affil">ada@example.org</p>
<div class="abstract"><h2>Abstract</h2>{abstract}</div>
<div class="cols"><h2 class="sec">1 Introduction</h2>{''.join(intro)}</div>
<p class="note">* FOOTNOTE Corresponding author; this FOOTNOTE line sits at the foot of page 1.</p>
</div>
<div class="cols">{''.join(body)}<h2 class="sec">References</h2><div class="refs">{refs}</div></div>
</body></html>"""


FIGURE = ('<figure><div class="plot"><span style="left:4pt">AXIS 0</span>'
          '<span style="left:45%">AXIS 50</span><span style="right:4pt">AXIS 100</span></div>'
          '<figcaption>Figure 1: CAPTION growth of the mice over time, by dose group.'
          '</figcaption></figure>')
TABLE = ('<p class="tcap">Table 1: CAPTION counts by group.</p><table>'
         '<tr><th>CELL group</th><th>CELL n</th><th>CELL mean</th></tr>'
         + "".join(f"<tr><td>CELL {g}</td><td>{10 + i}</td><td>{i * 1.5:.1f}</td></tr>"
                   for i, g in enumerate(("alpha", "beta", "gamma", "delta")))
         + "</table>")


def long_table(rng: random.Random) -> str:
    """A 4-column table in body type whose title cells wrap to 2-6 lines (a Manubot paper's)."""
    rows = []
    for i in range(6):
        title = " ".join(rng.choice(LONG).upper() for _ in range(rng.randint(3, 9)))
        rows.append(f"<tr><td>{rng.randint(0, 100)}</td><td>{rng.randint(0, 100)}</td>"
                    f"<td>CELL {title}</td><td>[{i + 20}]</td></tr>")
    return ('<table class="long"><tr><th>CELL FIELD PERCENTILE</th><th>CELL OTHER PERCENTILE</th>'
            "<th>CELL TITLE</th><th>CELL REFERENCE</th></tr>" + "".join(rows) + "</table>"
            '<p class="tcap">Table 2: CAPTION papers of interest.</p>')


PRINT = {
    "displayHeaderFooter": True, "printBackground": False, "preferCSSPageSize": True,
    "headerTemplate": f'<div style="font-size:7pt;width:100%;text-align:center">{HEADER}</div>',
    "footerTemplate": ('<div style="font-size:8pt;width:100%;text-align:center">'
                       '<span class="pageNumber"></span></div>'),
}


def print_pdf(driver, html: str, path: Path) -> Path:
    """Print `html` to `path` with headless Chromium (running header and page numbers)."""
    page = path.with_suffix(".html")
    page.write_text(html)
    driver.get(page.as_uri())
    data = driver.execute_cdp_cmd("Page.printToPDF", PRINT)["data"]
    path.write_bytes(base64.b64decode(data))
    return path


def words(text: str) -> list[str]:
    """Lower-case word tokens (hyphenated compounds stay one token)."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())
