"""One cell's outputs to report blocks, choosing the best MIME type that renders on a forge.

Order of preference per output: cml-nb metrics (skipped: they are in the header
table), interactive widgets and figures (a static image when one exists, else a
visible note), Markdown, HTML (a pandas DataFrame becomes a table, other HTML is
sanitized), LaTeX, images, then plain text. Streams lose colour codes and
carriage-return frames, and stderr stays distinct from stdout.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cml_nb.metrics import METRICS_MIME
from cml_nb.notebook import strip_ansi
from cml_nb.report.model import (
    Block,
    ErrorBlock,
    HtmlBlock,
    ImageBlock,
    MarkdownBlock,
    MathBlock,
    NoteBlock,
    StreamBlock,
    TableBlock,
    TextBlock,
)
from cml_nb.report.sanitize import is_blank, sanitize_html
from cml_nb.report.tables import parse_dataframe_html

#: Adds image bytes to the report and returns the asset's name.
AddAsset = Callable[[bytes, str], str]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
_IMAGE_MIMES = ("image/svg+xml", "image/png", "image/jpeg", "image/gif")
_BACKSPACE = re.compile(r"[^\x08\n]\x08")
_WARNING_LINE = re.compile(r"\b\w*Warning: ")
_LATEX_DELIMITERS = re.compile(r"^\s*(\$\$?|\\\[|\\\()\s*(.*?)\s*(\$\$?|\\\]|\\\))\s*$", re.DOTALL)


def joined(text: str | list[str] | None) -> str:
    """Notebook multi-line strings are either a string or a list of lines."""
    if text is None:
        return ""
    return "".join(text) if isinstance(text, list) else str(text)


def final_frames(text: str) -> str:
    """Each line as a terminal would leave it: what follows its last ``\\r`` (tqdm bars)."""
    if "\r" not in text and "\b" not in text:
        return text
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            frames = [f for f in line.split("\r") if f.strip()]
            line = frames[-1] if frames else ""
        while "\b" in line:  # a backspace erases the character before it
            erased = _BACKSPACE.sub("", line)
            line = erased if erased != line else line.replace("\b", "")
        lines.append(line)
    return "\n".join(lines)


def clean_text(text: str) -> str:
    """Stream or repr text ready to show: no ANSI codes, progress bars at their last frame."""
    return final_frames(strip_ansi(text))


def latex_body(latex: str) -> str:
    """A formula without the ``$$ … $$`` or ``\\[ … \\]`` around it."""
    match = _LATEX_DELIMITERS.match(latex)
    return match.group(2) if match else latex.strip()


def _stream_blocks(outputs: list[Mapping[str, Any]], cell: int) -> list[Block]:
    text = clean_text("".join(joined(o.get("text")) for o in outputs))
    if not text.strip():
        return []
    name = outputs[0].get("name", "stdout")
    if name == "stderr" and _WARNING_LINE.search(text):
        name = "warning"
    return [StreamBlock(text.rstrip("\n"), name, cell=cell)]


def _image(data: Mapping[str, Any], mime: str, add_asset: AddAsset) -> str | None:
    raw = data.get(mime)
    if raw is None:
        return None
    if mime == "image/svg+xml":
        return add_asset(joined(raw).encode("utf-8"), mime)
    try:
        payload = base64.b64decode("".join(joined(raw).split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return add_asset(payload, mime)


def _first_image(data: Mapping[str, Any], add_asset: AddAsset) -> str | None:
    for mime in _IMAGE_MIMES:
        name = _image(data, mime, add_asset)
        if name is not None:
            return name
    return None


def _plotly_png(figure: Any) -> bytes | None:
    """A static PNG through kaleido, when plotly and kaleido are installed."""
    try:
        import plotly.io as pio

        png = pio.to_image(figure, format="png")
    except Exception:  # not installed, or kaleido cannot start a browser: fall back to a note
        return None
    return png if isinstance(png, bytes) else None


def _omitted(what: str, data: Mapping[str, Any], cell: int) -> NoteBlock:
    plain = clean_text(joined(data.get("text/plain"))).strip().splitlines()
    hint = f" ({plain[0][:80]})" if plain else ""
    return NoteBlock(
        f"Interactive output omitted: {what}{hint}. Open the notebook in Jupyter to use it.",
        cell=cell,
    )


def _html_blocks(
    html: str, data: Mapping[str, Any], cell: int, max_rows: int, add_asset: AddAsset
) -> list[Block] | None:
    if 'class="dataframe"' in html or '<table id="T_' in html:  # DataFrame or its Styler
        parsed = parse_dataframe_html(html)
        if parsed is not None:
            columns, rows, total = parsed
            count = total if total is not None else len(rows)
            if len(rows) > max_rows:
                rows = rows[:max_rows]
            shown = count if count > len(rows) else None
            return [TableBlock(columns, rows, total_rows=shown, cell=cell)]
    clean = sanitize_html(html)
    if not is_blank(clean):
        return [HtmlBlock(clean.strip(), cell=cell)]
    image = _first_image(data, add_asset)
    if image is not None:
        return [ImageBlock(image, f"output of cell {cell}", cell=cell)]
    if "<script" in html.lower():
        return [_omitted("HTML that needs JavaScript", data, cell)]
    return None


def _rich_blocks(
    output: Mapping[str, Any], cell: int, max_rows: int, add_asset: AddAsset
) -> list[Block]:
    data: Mapping[str, Any] = output.get("data") or {}
    if METRICS_MIME in data:
        return []
    alt = f"output of cell {cell}"
    if WIDGET_MIME in data or PLOTLY_MIME in data:
        image = _first_image(data, add_asset)
        if image is None and PLOTLY_MIME in data:
            png = _plotly_png(data[PLOTLY_MIME])
            image = add_asset(png, "image/png") if png else None
        if image is not None:
            return [ImageBlock(image, alt, cell=cell)]
        what = (
            "a plotly figure (install kaleido for a static image)"
            if PLOTLY_MIME in data
            else "a widget"
        )
        return [_omitted(what, data, cell)]
    if "text/markdown" in data:
        return [MarkdownBlock(joined(data["text/markdown"]).strip(), cell=cell)]
    if "text/html" in data:
        blocks = _html_blocks(joined(data["text/html"]), data, cell, max_rows, add_asset)
        if blocks is not None:
            return blocks
    if "text/latex" in data:
        return [MathBlock(latex_body(joined(data["text/latex"])), cell=cell)]
    image = _first_image(data, add_asset)
    if image is not None:
        return [ImageBlock(image, alt, cell=cell)]
    if "text/plain" in data:
        text = clean_text(joined(data["text/plain"])).rstrip("\n")
        return [TextBlock(text, cell=cell)] if text.strip() else []
    vendor = [m for m in data if m.startswith("application/")]
    return [_omitted(vendor[0], data, cell)] if vendor else []


def output_blocks(
    outputs: Iterable[Mapping[str, Any]], cell: int, add_asset: AddAsset, *, max_rows: int = 20
) -> list[Block]:
    """The blocks showing one code cell's outputs, in order.

    Args:
        outputs: the cell's ``outputs`` list.
        cell: the cell's index, recorded on every block.
        add_asset: stores image bytes and returns the asset name.
        max_rows: rows of a DataFrame to keep (a note says how many there were).
    """
    blocks: list[Block] = []
    run: list[Mapping[str, Any]] = []  # consecutive stream outputs of the same name

    def flush() -> None:
        if run:
            blocks.extend(_stream_blocks(run, cell))
            run.clear()

    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            if run and run[0].get("name") != output.get("name"):
                flush()
            run.append(output)
            continue
        flush()
        if kind == "error":
            blocks.append(
                ErrorBlock(
                    strip_ansi(str(output.get("ename", ""))),
                    strip_ansi(str(output.get("evalue", ""))),
                    [strip_ansi(line) for line in output.get("traceback") or []],
                    cell=cell,
                )
            )
        elif kind in ("display_data", "execute_result", "update_display_data"):
            blocks.extend(_rich_blocks(output, cell, max_rows, add_asset))
    flush()
    return blocks
