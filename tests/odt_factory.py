"""Build real .odt files in code: `make_odt(path, body)` writes an OpenDocument Text package.

The package is what LibreOffice writes, minus settings: `mimetype` first and stored
(uncompressed), content.xml, styles.xml and META-INF/manifest.xml. `body` is the inner
XML of office:text, written with the helpers below or as raw ODF; `automatic` holds
content.xml's automatic styles (P1, T1, ...), which name a parent from styles.xml.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

NAMESPACES = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" office:version="1.3"'
)
MIMETYPE = "application/vnd.oasis.opendocument.text"


def _style(name: str, display: str | None = None, parent: str | None = "Standard",
           extra: str = "", props: str = "") -> str:
    attrs = f' style:display-name="{display}"' if display else ""
    attrs += f' style:parent-style-name="{parent}"' if parent else ""
    return (f'<style:style style:name="{name}"{attrs} style:family="paragraph"{extra}>'
            f"{props}</style:style>")


# LibreOffice's names: "Heading_20_1" displays as "Heading 1" and carries the outline level.
STYLES = "".join([
    _style("Standard", parent=None), _style("Text_20_body", "Text body"),
    _style("Title"), _style("Author"), _style("Abstract"), _style("Caption"),
    _style("Table", parent="Caption"), _style("Bibliography_20_1", "Bibliography 1"),
    _style("Heading"),
    *[_style(f"Heading_20_{n}", f"Heading {n}", "Heading", f' style:default-outline-level="{n}"')
      for n in range(1, 4)],
])
BOLD = '<style:text-properties fo:font-weight="bold"/>'
# Automatic styles as LibreOffice writes them: P1 is a Heading 1 paragraph, T1 bold text.
AUTOMATIC = (
    _style("P1", parent="Heading_20_1")
    + _style("P2", parent="Text_20_body", props=BOLD)
    + f'<style:style style:name="T1" style:family="text">{BOLD}</style:style>'
)


def p(*parts: str, style: str = "Text_20_body") -> str:
    """A paragraph; plain strings are escaped, strings starting with '<' are raw ODF."""
    inner = "".join(x if x.startswith("<") else escape(x) for x in parts)
    return f'<text:p text:style-name="{style}">{inner}</text:p>'


def h(text: str, level: int = 1) -> str:
    return (f'<text:h text:style-name="Heading_20_{level}" text:outline-level="{level}">'
            f"{escape(text)}</text:h>")


def span(text: str, style: str = "T1") -> str:
    return f'<text:span text:style-name="{style}">{escape(text)}</text:span>'


def note(text: str) -> str:
    return ('<text:note text:id="ftn1" text:note-class="footnote"><text:note-citation>1'
            f'</text:note-citation><text:note-body>{p(text)}</text:note-body></text:note>')


def table(*cells: str) -> str:
    row = "".join(f"<table:table-cell>{p(c)}</table:table-cell>" for c in cells)
    return f'<table:table table:name="T1"><table:table-row>{row}</table:table-row></table:table>'


def tracked(deleted: str) -> str:
    """The tracked-changes block: ct1 deleted `deleted`, ct2 inserted (its text is in the body)."""
    info = "<office:change-info><dc:creator>Ada</dc:creator></office:change-info>"
    return ("<text:tracked-changes>"
            f'<text:changed-region text:id="ct1"><text:deletion>{info}{p(deleted)}'
            "</text:deletion></text:changed-region>"
            f'<text:changed-region text:id="ct2"><text:insertion>{info}</text:insertion>'
            "</text:changed-region></text:tracked-changes>")


def make_odt(path: Path, body: str, automatic: str = AUTOMATIC, content_xml: str | None = None,
             manifest_extra: str = "", mimetype: str = MIMETYPE, omit: tuple = ()) -> Path:
    """Write the package; `content_xml` replaces the generated content.xml, `omit` leaves parts out."""
    content = content_xml if content_xml is not None else (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {NAMESPACES}>'
        f"<office:automatic-styles>{automatic}</office:automatic-styles>"
        f"<office:body><office:text>{body}</office:text></office:body></office:document-content>")
    styles = (f'<?xml version="1.0" encoding="UTF-8"?><office:document-styles {NAMESPACES}>'
              f"<office:styles>{STYLES}</office:styles></office:document-styles>")
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        f"{manifest_extra}</manifest:file-entry>"
        '<manifest:file-entry manifest:full-path="styles.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
        for name, xml in (("content.xml", content), ("styles.xml", styles),
                          ("META-INF/manifest.xml", manifest)):
            if name not in omit:
                zf.writestr(name, xml)
    return path
