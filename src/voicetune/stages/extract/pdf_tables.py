"""PDF tables: which of a page column's lines are a table's cells, kept out of the prose.

A table row shows in PDFium's lines in one of two ways: its cells as separate lines side by
side at one height (PDFium starts a new line when the text jumps back up, as it does from a
multi-line cell to the next), or run together in one line with a wide gap between them
(`Line.gap`). Pieces of one prose line that PDFium split at a subscript or a change of font
sit side by side too, but follow each other in PDFium's order and almost touch. A table is
a run of such rows, the lines between them (the other lines of multi-line cells) narrow;
one row alone (a heading "1  Introduction", an equation and its number) is not a table,
nor are lines as wide as the body's (two columns read as one).
"""

from __future__ import annotations

# Between table cells run into one line: over 1 em (Chromium's cell padding: 1.2 em; LaTeX's
# 2 x \tabcolsep: 12 pt); a word space is ~0.3 em, a justified line's stretched one up to ~3
# em (those lines reach the column's right edge and are not taken for rows).
GAP_EM = 1.0
NARROW = 0.7  # a cell's line: under 70% of the body's line width (a 4-column table's: 25-45%)
MIN_ROWS = 2
STEP = 3.0  # a line over 3 body line pitches below the last one starts another block
INDENT = 2.0  # a long cell's lines above or below its row: over 2 em in from the table's edge


def table_lines(lines: list, order: dict[int, int], width: float, pitch: float,
                right: dict) -> set[int]:
    """ids of the lines that are table cells; `order`: id -> place in PDFium's order, `width`:
    the body's usual line width, `right`: (page, col) -> where its lines end."""
    columns: dict = {}
    for line in lines:
        columns.setdefault((line.page, line.band, line.col), []).append(line)
    found: set[int] = set()
    for column in columns.values():
        column.sort(key=lambda l: -l.bottom)
        rows = _rows(column, width, right, order)
        found.update(_runs(column, rows, width, pitch))
    return found


def _rows(column: list, width: float, right: dict, order: dict) -> set[int]:
    """ids of the column's lines that hold a table row (`column` sorted top to bottom)."""
    rows = set()
    for i, line in enumerate(column):
        if line.gap and line.x1 < right.get((line.page, line.col), line.x1) - line.em:
            rows.add(id(line))  # a wide gap, not a justified line's stretched spaces
        nxt = _next_right(column, i)
        if nxt is None or max(line.x1 - line.x0, nxt.x1 - nxt.x0) >= NARROW * width:
            continue
        if nxt.x0 - line.x1 > GAP_EM * line.em or abs(order[id(line)] - order[id(nxt)]) > 1:
            rows.update((id(line), id(nxt)))
    return rows


def _next_right(column: list, i: int):
    """The nearest line to the right of column[i] at its height, or None."""
    line, best = column[i], None
    for step in (-1, 1):
        j = i + step
        while 0 <= j < len(column) and abs(column[j].bottom - line.bottom) < 0.7 * line.em:
            other = column[j]
            if other.x0 >= line.x1 - 0.5 and (best is None or other.x0 < best.x0):
                best = other
            j += step
    return best


def _runs(column: list, rows: set[int], width: float, pitch: float) -> list[int]:
    """ids of the lines in runs of >= MIN_ROWS rows joined by narrow lines."""
    found: list[int] = []
    run: list = []

    def close():
        at = [k for k, line in enumerate(run) if id(line) in rows]
        if not at or not _is_table([run[k] for k in at]):
            return
        first, last = at[0], at[-1] + 1
        found.extend(id(line) for line in run[first:last])
        # Above the first row and below the last: a header in bold, the rest of a cell that
        # is longer than the row's others (indented: not a paragraph's last line).
        inner = min(line.x0 for line in run[first:last]) + INDENT * run[first].em
        found.extend(id(line) for line in run[:first] + run[last:]
                     if line.bold or line.numeric or line.x0 > inner)

    for line in column:
        if run and run[-1].bottom - line.bottom > STEP * pitch:
            close()
            run = []
        if id(line) in rows or line.numeric or line.x1 - line.x0 < NARROW * width:
            run.append(line)
        else:
            close()
            run = []
    close()
    return found


def _is_table(row_lines: list) -> bool:
    """Two rows or more (lines at one height are one row), or one row of three cells or more."""
    heights, cells, most = 0, 0, 0
    for k, line in enumerate(row_lines):
        if k == 0 or row_lines[k - 1].bottom - line.bottom > 0.7 * line.em:
            heights, cells = heights + 1, 0
        cells += 1
        most = max(most, cells)
    return heights >= MIN_ROWS or most >= 3
