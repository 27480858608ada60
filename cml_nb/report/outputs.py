"""One cell's outputs to report blocks, choosing the best MIME type that renders on a forge.

Each rich output goes through :data:`RENDERERS` in order; the first that returns
blocks wins, and one that returns None passes the output on. The order: cml-nb
metrics (skipped: they are in the header table), Bokeh plots, library loaders
(shown as nothing, as in Jupyter), widgets (drawn from the saved widget state),
plotly figures, Markdown, HTML (split into tables, images and sanitized HTML),
GeoJSON and JSON, LaTeX, images, then plain text. Whatever nothing could show
becomes a note saying what was left out. Streams are rendered as a terminal shows
them (:mod:`cml_nb.terminal`), and stderr stays distinct from stdout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cml_nb.metrics import METRICS_MIME
from cml_nb.notebook import joined, strip_ansi
from cml_nb.report.html_split import dropped_content, split_html
from cml_nb.report.image_data import decode_image
from cml_nb.report.inline import code_span
from cml_nb.report.model import (
    Block,
    ErrorBlock,
    ImageBlock,
    MarkdownBlock,
    MathBlock,
    NoteBlock,
    StreamBlock,
    TextBlock,
)
from cml_nb.report.plotly_image import plotly_png
from cml_nb.report.widget_state import States, widget_text
from cml_nb.terminal import render_terminal

#: Adds image bytes to the report and returns the asset's name.
AddAsset = Callable[[bytes, str], str]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
BOKEH_EXEC_MIME = "application/vnd.bokehjs_exec.v0+json"
BOKEH_LOAD_MIME = "application/vnd.bokehjs_load.v0+json"
GEOJSON_MIME = "application/geo+json"
JSON_MIME = "application/json"
_IMAGE_MIMES = ("image/svg+xml", "image/png", "image/jpeg", "image/gif", "image/webp")
_SCRIPT_MIMES = ("application/javascript", "text/javascript", BOKEH_LOAD_MIME)
_WARNING_LINE = re.compile(r"\b\w*Warning: ")
_LATEX_DELIMITERS = re.compile(r"^\s*(\$\$?|\\\[|\\\()\s*(.*?)\s*(\$\$?|\\\]|\\\))\s*$", re.DOTALL)
# IPython's default repr (``<IPython.core.display.HTML object>``): it says nothing to a reader.
_DEFAULT_REPR = re.compile(r"^<[\w.]+ (?:object|at 0x[0-9a-f]+)[^>]*>$")
_WIDGET_NOTE = "Interactive output omitted: a widget"


def clean_text(text: str) -> str:
    """Stream or repr text as a terminal would show it at the end, colour codes removed."""
    return strip_ansi(render_terminal(text))


def latex_body(latex: str) -> str:
    """A formula without the ``$$ … $$`` or ``\\[ … \\]`` around it."""
    match = _LATEX_DELIMITERS.match(latex)
    return match.group(2) if match else latex.strip()


@dataclass
class _Context:
    """What renderers share for one cell."""

    cell: int
    max_rows: int
    add_asset: AddAsset
    widgets: States
    dropped: list[str] = field(default_factory=list)  # what sanitizing removed, for the note

    @property
    def alt(self) -> str:
        return f"output of cell {self.cell}"


Data = Mapping[str, Any]
Renderer = Callable[[Data, _Context], list[Block] | None]


def _plain_hint(data: Data) -> str:
    """`` (`repr`)``: the output's own text as inline code, so none of it is Markdown or HTML.

    A repr can be anything (``<!--`` would hide the rest of the comment, ``<Figure ...>``
    would be taken for a tag).
    """
    plain = clean_text(joined(data.get("text/plain"))).strip().splitlines()
    return f" ({code_span(plain[0][:80])})" if plain else ""


def _omitted(what: str, data: Data, cell: int) -> NoteBlock:
    return NoteBlock(
        f"Interactive output omitted: {what}{_plain_hint(data)}. "
        "Open the notebook in Jupyter to use it.",
        cell=cell,
    )


def _left_out_note(what: str, cell: int) -> NoteBlock:
    return NoteBlock(
        f"Output left out: {what}, which a forge comment cannot show. "
        "Open the notebook in Jupyter to see it.",
        cell=cell,
    )


def _images(data: Data, ctx: _Context) -> list[Block] | None:
    """The first readable image; a note when every image the output holds is unreadable."""
    problems = []
    for mime in _IMAGE_MIMES:
        raw = data.get(mime)
        if raw is None:
            continue
        decoded = decode_image(joined(raw), mime)
        if decoded.problem:
            problems.append(decoded.problem)
            continue
        return [ImageBlock(ctx.add_asset(decoded.data, mime), ctx.alt, cell=ctx.cell)]
    if problems:
        return [NoteBlock(f"Image left out: {problems[0]}{_plain_hint(data)}.", cell=ctx.cell)]
    return None


def _metrics(data: Data, ctx: _Context) -> list[Block] | None:
    return [] if METRICS_MIME in data else None


def _bokeh(data: Data, ctx: _Context) -> list[Block] | None:
    if BOKEH_EXEC_MIME not in data:
        return None
    return _images(data, ctx) or [
        NoteBlock(
            "A Bokeh plot is drawn by JavaScript in Jupyter and cannot be shown here: "
            "display a PNG of it (bokeh.io.export_png) for the report.",
            cell=ctx.cell,
        )
    ]


def _loader(data: Data, ctx: _Context) -> list[Block] | None:
    # Script-only outputs (bokeh's output_notebook, plotly's loader) show nothing in Jupyter.
    visible = [m for m in data if m not in _SCRIPT_MIMES and m != "text/plain"]
    return [] if any(m in data for m in _SCRIPT_MIMES) and not visible else None


def _widget(data: Data, ctx: _Context) -> list[Block] | None:
    if WIDGET_MIME not in data:
        return None
    view = data[WIDGET_MIME]
    model = str(view.get("model_id", "")) if isinstance(view, Mapping) else ""
    text = widget_text(model, ctx.widgets) if model else None
    if text:
        return [TextBlock(text, cell=ctx.cell)]
    return _images(data, ctx) or [_omitted("a widget", data, ctx.cell)]


def _plotly(data: Data, ctx: _Context) -> list[Block] | None:
    if PLOTLY_MIME not in data:
        return None
    found = _images(data, ctx)
    if found and isinstance(found[0], ImageBlock):
        return found
    png, why = plotly_png(data[PLOTLY_MIME])
    if png is not None:
        return [ImageBlock(ctx.add_asset(png, "image/png"), ctx.alt, cell=ctx.cell)]
    return [_omitted(f"a plotly figure ({why})", data, ctx.cell)]


def _markdown(data: Data, ctx: _Context) -> list[Block] | None:
    if "text/markdown" not in data:
        return None
    return [MarkdownBlock(joined(data["text/markdown"]).strip(), cell=ctx.cell)]


def _html(data: Data, ctx: _Context) -> list[Block] | None:
    if "text/html" not in data:
        return None
    html = joined(data["text/html"])
    split = split_html(html, ctx.cell, ctx.max_rows, ctx.add_asset)
    notes: list[Block] = [
        NoteBlock(f"Image left out: {problem}.", cell=ctx.cell) for problem in split.problems
    ]
    if split.dropped and split.blocks:  # shown beside what remains; alone, _left_out says it
        notes.append(_left_out_note(", ".join(split.dropped), ctx.cell))
    if split.blocks:
        return split.blocks + notes
    what = dropped_content(html)
    if what:
        ctx.dropped.append(what)
    return notes or None  # nothing visible: the next MIME type may carry the content


def _json_block(mime: str, language: str) -> Renderer:
    def render(data: Data, ctx: _Context) -> list[Block] | None:
        if mime not in data:
            return None
        value = data[mime]
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
        return [TextBlock(text, language, cell=ctx.cell)]

    return render


def _latex(data: Data, ctx: _Context) -> list[Block] | None:
    if "text/latex" not in data:
        return None
    return [MathBlock(latex_body(joined(data["text/latex"])), cell=ctx.cell)]


def _plain(data: Data, ctx: _Context) -> list[Block] | None:
    if "text/plain" not in data or ctx.dropped:  # a note on the dropped HTML says more
        return None
    text = clean_text(joined(data["text/plain"])).rstrip("\n")
    if not text.strip() or (_DEFAULT_REPR.match(text.strip()) and len(data) > 1):
        return None
    return [TextBlock(text, cell=ctx.cell)]


def _left_out(data: Data, ctx: _Context) -> list[Block] | None:
    if ctx.dropped:
        what = ctx.dropped[-1]
        if what.endswith("JavaScript"):
            return [_omitted(what, data, ctx.cell)]
        return [_left_out_note(what, ctx.cell)]
    vendor = [m for m in data if m.startswith("application/")]
    return [_omitted(vendor[0], data, ctx.cell)] if vendor else []


#: Tried in order for each rich output; the first to return blocks (even none) wins.
RENDERERS: list[tuple[str, Renderer]] = [
    ("metrics", _metrics),
    ("bokeh", _bokeh),
    ("loader", _loader),
    ("widget", _widget),
    ("plotly", _plotly),
    ("markdown", _markdown),
    ("html", _html),
    ("geojson", _json_block(GEOJSON_MIME, "geojson")),
    ("json", _json_block(JSON_MIME, "json")),
    ("latex", _latex),
    ("image", _images),
    ("plain", _plain),
    ("left out", _left_out),
]


def _rich_blocks(output: Mapping[str, Any], ctx: _Context) -> list[Block]:
    data: Data = output.get("data") or {}
    ctx.dropped.clear()
    for _, render in RENDERERS:
        blocks = render(data, ctx)
        if blocks is not None:
            return blocks
    return []


def _stream_blocks(outputs: list[Mapping[str, Any]], cell: int) -> list[Block]:
    text = clean_text("".join(joined(o.get("text")) for o in outputs))
    if not text.strip():
        return []
    name = outputs[0].get("name", "stdout")
    if name == "stderr" and _WARNING_LINE.search(text):
        name = "warning"
    return [StreamBlock(text.rstrip("\n"), name, cell=cell)]


def _one_widget_note(blocks: list[Block]) -> list[Block]:
    """At most one note per cell for widgets that could not be drawn."""
    notes = [b for b in blocks if isinstance(b, NoteBlock) and b.text.startswith(_WIDGET_NOTE)]
    if len(notes) < 2:
        return blocks
    notes[0].text = (
        f"Interactive output omitted: {len(notes)} widgets{_first_hint(notes[0].text)}. "
        "Open the notebook in Jupyter to use them."
    )
    return [b for b in blocks if b is notes[0] or not any(b is n for n in notes)]


def _first_hint(text: str) -> str:
    match = re.match(re.escape(_WIDGET_NOTE) + r"( \(.*?\))?\. ", text)
    return (match.group(1) or "") if match else ""


def output_blocks(
    outputs: Iterable[Mapping[str, Any]],
    cell: int,
    add_asset: AddAsset,
    *,
    max_rows: int = 20,
    widgets: States | None = None,
) -> list[Block]:
    """The blocks showing one code cell's outputs, in order.

    Args:
        outputs: the cell's ``outputs`` list.
        cell: the cell's index, recorded on every block.
        add_asset: stores image bytes and returns the asset name.
        max_rows: rows of a DataFrame to keep (a note says how many there were).
        widgets: the notebook's saved widget states (:func:`widget_state.saved_states`).
    """
    blocks: list[Block] = []
    run: list[Mapping[str, Any]] = []  # consecutive stream outputs of the same name
    ctx = _Context(cell, max_rows, add_asset, widgets or {})

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
            blocks.extend(_rich_blocks(output, ctx))
    flush()
    return _one_widget_note(blocks)
