"""One HTML output split into what a forge can show: tables, images and sanitized HTML.

An HTML output often holds more than one thing: ``display_html`` of several
DataFrames side by side, a Styler with a caption between headings, a ``<img>``
whose picture is a ``data:`` URI. Each top-level DataFrame table becomes a pipe
table (caption and pandas' "N rows × M columns" kept), the HTML between them is
sanitized and kept in place, and ``data:`` images are moved into assets (the
sanitizer, like GitHub's, drops ``data:`` URLs) and linked as ``assets/<sha256>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cml_nb.report.image_data import data_uri_image
from cml_nb.report.model import Block, HtmlBlock, TableBlock
from cml_nb.report.sanitize import is_blank, sanitize_html
from cml_nb.report.tables import parse_table

#: Adds image bytes to the report and returns the asset's name.
AddAsset = Callable[[bytes, str], str]

_IMG = re.compile(r"<img\b[^>]*>", re.I)
_SRC = re.compile(r"""(\bsrc\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.I)
_TABLE_TAG = re.compile(r"<(/?)table\b[^>]*>", re.I)
_DATAFRAME = re.compile(r"""class\s*=\s*["'][^"']*\bdataframe\b|id\s*=\s*["']?T_""", re.I)
_SHAPE_LINE = re.compile(r"\s*<p>\s*\d+\s+rows\s*×\s*\d+\s+columns\s*</p>", re.I)
# What the sanitizer removes that a reader would have seen in Jupyter, for the note.
_DROPPED = (
    (re.compile(r"<video\b", re.I), "a video"),
    (re.compile(r"<audio\b", re.I), "an audio player"),
    (re.compile(r"<iframe\b", re.I), "an embedded page (iframe)"),
    (re.compile(r"<canvas\b", re.I), "a canvas drawing"),
    (re.compile(r"<(?:embed|object)\b", re.I), "an embedded object"),
    (re.compile(r"<svg\b", re.I), "inline SVG"),
    (re.compile(r"<(?:form|input|button|select)\b", re.I), "a form"),
)
# Media elements with their fallback text ("Your browser does not support the video tag").
_MEDIA = re.compile(r"<(video|audio|iframe|canvas|object)\b[^>]*>(?:.*?</\1\s*>)?", re.I | re.S)
_MEDIA_NAMES = {"video": "a video", "audio": "an audio player",
                "iframe": "an embedded page (iframe)", "canvas": "a canvas drawing",
                "object": "an embedded object"}  # fmt: skip
_SCRIPT = re.compile(r"<script\b", re.I)
_SCRIPT_BODY = re.compile(r"<script\b.*?(?:</script\s*>|$)", re.I | re.S)
_MOUNT_POINT = re.compile(r"<(?!script)\w+[^>]*\bid\s*=", re.I)


@dataclass
class Split:
    """The blocks of one HTML output, and images that could not be read (for a note)."""

    blocks: list[Block] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # media a forge cannot show


def extract_data_images(html: str, add_asset: AddAsset) -> tuple[str, list[str], list[str]]:
    """``html`` with ``data:`` image sources swapped for ``assets/<name>`` links.

    Returns:
        The HTML, the asset names it now links, and a description of each image
        whose data was unreadable (its tag is removed).
    """
    if "data:" not in html:
        return html, [], []
    names: list[str] = []
    problems: list[str] = []

    def swap(tag: re.Match[str]) -> str:
        src = _SRC.search(tag.group(0))
        if src is None:
            return tag.group(0)
        value = next(v for v in src.groups()[1:] if v is not None)
        found = data_uri_image(value.strip())
        if found is None:
            return tag.group(0)
        mime, decoded = found
        if decoded.problem:
            problems.append(decoded.problem)
            return ""
        name = add_asset(decoded.data, mime)
        names.append(name)
        text = tag.group(0)
        return f'{text[: src.start()]}{src.group(1)}"assets/{name}"{text[src.end() :]}'

    return _IMG.sub(swap, html), names, problems


def _top_level_tables(html: str) -> list[tuple[int, int]]:
    """(start, end) of each outermost ``<table>…</table>``."""
    spans: list[tuple[int, int]] = []
    depth, start = 0, 0
    for tag in _TABLE_TAG.finditer(html):
        if not tag.group(1):
            if depth == 0:
                start = tag.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                spans.append((start, tag.end()))
    return spans


def _html_block(fragment: str, names: list[str], cell: int) -> HtmlBlock | None:
    clean = sanitize_html(fragment).strip()
    if is_blank(clean):
        return None
    return HtmlBlock(clean, cell=cell, assets=[n for n in names if f"assets/{n}" in clean])


def split_html(html: str, cell: int, max_rows: int, add_asset: AddAsset) -> Split:
    """The blocks an HTML output shows, in order (empty when it sanitizes to nothing)."""
    html, names, problems = extract_data_images(html, add_asset)
    split = Split(problems=problems)
    if _MEDIA.search(html):

        def drop(element: re.Match[str]) -> str:
            what = _MEDIA_NAMES[element.group(1).lower()]
            if what not in split.dropped:
                split.dropped.append(what)
            return ""

        html = _MEDIA.sub(drop, html)
    position = 0
    for start, end in _top_level_tables(html):
        opening = html[start : html.index(">", start) + 1]
        if not _DATAFRAME.search(opening):
            continue  # any other table stays HTML: GitHub keeps tables
        table = parse_table(html[start:end])
        if table is None:
            continue
        before = _html_block(html[position:start], names, cell)
        if before is not None:
            split.blocks.append(before)
        position = end
        shape = _SHAPE_LINE.match(html, end)
        if shape is not None:
            table = parse_table(html[start : shape.end()]) or table
            position = shape.end()
        count = table.total if table.total is not None else len(table.rows)
        rows = table.rows[:max_rows]
        shown = count if count > len(rows) else None
        split.blocks.append(
            TableBlock(table.columns, rows, total_rows=shown, caption=table.caption, cell=cell)
        )
    rest = _html_block(html[position:], names, cell)
    if rest is not None:
        split.blocks.append(rest)
    return split


def dropped_content(html: str) -> str | None:
    """What a reader saw in Jupyter that sanitizing removed, or None if it showed nothing.

    HTML of only ``<script>`` tags with no element for them to draw into is a
    library's loader (plotly's ``init_notebook_mode``, bokeh's ``output_notebook``):
    Jupyter shows nothing for it, and neither does the report.
    """
    markup = _SCRIPT_BODY.sub("", html)  # plotly.js's own source mentions <svg and <canvas
    found = [what for pattern, what in _DROPPED if pattern.search(markup)]
    if found:
        return ", ".join(found)
    if _SCRIPT.search(html) and _MOUNT_POINT.search(markup):
        return "HTML that needs JavaScript"
    return None
