"""pandas DataFrame HTML to rows of text, so a report shows a real pipe table.

pandas renders a DataFrame as ``<table class="dataframe">`` with ``<style>`` and
``rowspan``/``colspan`` for multi-indexes. GitHub strips the style and shows the
raw HTML poorly; a Markdown pipe table renders everywhere. The standard library's
HTML parser is enough here: the markup is pandas' own and regular.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_SHAPE = re.compile(r"(\d+)\s+rows\s*×\s*(\d+)\s+columns")
_SPACE = re.compile(r"\s+")


@dataclass
class _Cell:
    text: str
    colspan: int = 1
    rowspan: int = 1


@dataclass
class ParsedTable:
    """Header and body rows of the first table, and the shape pandas printed under it."""

    header: list[list[_Cell]] = field(default_factory=list)
    body: list[list[_Cell]] = field(default_factory=list)
    shape: tuple[int, int] | None = None
    caption: str = ""


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.table = ParsedTable()
        self.depth = 0  # nested tables are flattened into their cell's text
        self.done = False
        self.section = "body"
        self.row: list[_Cell] | None = None
        self.cell: _Cell | None = None
        self.text: list[str] = []
        self.tail: list[str] = []
        self.in_caption = False
        self.caption: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "table":
            self.depth += 1
        elif self.depth != 1:
            return
        elif tag == "caption":
            self.in_caption = True
        elif tag == "thead":
            self.section = "header"
        elif tag == "tbody":
            self.section = "body"
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            values = dict(attrs)
            self.cell = _Cell("", _span(values.get("colspan")), _span(values.get("rowspan")))
            self.text = []
        elif tag == "br" and self.cell is not None:
            self.text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self.done:
            return
        if tag == "table":
            self.depth -= 1
            self.done = self.depth == 0
        elif self.depth != 1:
            return
        elif tag == "caption":
            self.in_caption = False
            self.table.caption = _SPACE.sub(" ", "".join(self.caption)).strip()
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.cell.text = _SPACE.sub(" ", "".join(self.text)).strip()
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            target = self.table.header if self.section == "header" else self.table.body
            target.append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.in_caption:
            self.caption.append(data)
        elif self.cell is not None:
            self.text.append(data)
        elif self.done:
            self.tail.append(data)


def _span(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1


def _expand(rows: list[list[_Cell]], fill_down: bool) -> list[list[str]]:
    """A rectangular grid: colspans repeated across, rowspans filled down."""
    grid: list[list[str]] = []
    pending: dict[int, tuple[str, int]] = {}  # column -> (text, rows still covered)
    for row in rows:
        out: list[str] = []
        cells = iter(row)
        column = 0
        while True:
            if column in pending:
                text, left = pending[column]
                out.append(text if fill_down else "")
                if left <= 1:
                    del pending[column]
                else:
                    pending[column] = (text, left - 1)
                column += 1
                continue
            cell = next(cells, None)
            if cell is None:
                break
            for _ in range(cell.colspan):
                if cell.rowspan > 1:
                    pending[column] = (cell.text, cell.rowspan - 1)
                out.append(cell.text)
                column += 1
        grid.append(out)
    return grid


@dataclass
class Table:
    """A parsed table: columns, rows, pandas' total row count and the ``<caption>``."""

    columns: list[str]
    rows: list[list[str]]
    total: int | None
    caption: str = ""


def parse_dataframe_html(html: str) -> tuple[list[str], list[list[str]], int | None] | None:
    """Columns, rows and pandas' total row count from a DataFrame's HTML; None if no table.

    Multi-row headers (a MultiIndex, or the row naming the index) are joined per
    column; row-spanning index labels are repeated on every row they cover.
    """
    table = parse_table(html)
    return None if table is None else (table.columns, table.rows, table.total)


def parse_table(html: str) -> Table | None:
    """The first table of ``html`` (see :func:`parse_dataframe_html`), caption included."""
    parser = _TableParser()
    parser.feed(html)
    parser.close()
    table = parser.table
    if not table.header and not table.body:
        return None
    header_grid = _expand(table.header, fill_down=True)
    body = _expand(table.body, fill_down=True)
    if not header_grid and body:  # a table without <thead>: its first row is the header
        header_grid, body = body[:1], body[1:]
    width = max((len(r) for r in header_grid + body), default=0)
    columns = []
    for index in range(width):
        parts: list[str] = []
        for row in header_grid:
            text = row[index] if index < len(row) else ""
            if text and (not parts or parts[-1] != text):
                parts.append(text)
        columns.append(" / ".join(parts))
    rows = [r + [""] * (width - len(r)) for r in body]
    match = _SHAPE.search("".join(parser.tail))
    total = int(match.group(1)) if match else None
    return Table(columns, rows, total, table.caption)
