"""Render a Report as GitHub/GitLab-flavoured Markdown within a size budget.

Everything here is plain string work: no Markdown library is needed to write
Markdown. Tables are pipe tables with every cell escaped; code and output use
fences longer than any backtick run inside them; stderr and warnings sit in a
quote so they read apart from stdout; long outputs fold into ``<details>``.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from cml_nb.report import budget
from cml_nb.report.inline import code_span as code_span  # re-exported: callers use it here
from cml_nb.report.model import (
    Asset,
    Block,
    CodeBlock,
    DetailsBlock,
    DiffBlock,
    ErrorBlock,
    HtmlBlock,
    ImageBlock,
    MarkdownBlock,
    MathBlock,
    NoteBlock,
    Report,
    StreamBlock,
    TableBlock,
    TextBlock,
)

AssetUrl = Callable[[Asset], str]

DEFAULT_MAX_CHARS = budget.FORGE_LIMITS["github"]
DEFAULT_COLLAPSE_LINES = 40
SUMMARY_TRACEBACK_LINES = 12

STATUS_ICONS = {
    "succeeded": "✅",
    "failed": "❌",
    "timeout": "⏱️",
    "kernel_died": "💥",
    "interrupted": "⏹️",
}
# Intraword underscores (snake_case) never start emphasis in GFM: leave them readable.
_ESCAPE = re.compile(r"([\\`*\[\]<>|~&$#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_BACKTICKS = re.compile(r"`+")
_CODE = re.compile(r"(?ms)^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1|`[^`\n]*`")
_COMMENT_START = re.compile(r"(?m)^ {0,3}<!--")
_MARKER_LIKE = re.compile(r"(<!--\s*cml-nb)(?=\s*:)", re.IGNORECASE)


def relative_url(asset: Asset) -> str:
    """The default link of an asset inside a bundle: ``assets/<sha256>.<ext>``."""
    return f"assets/{asset.name}"


def escape(text: str) -> str:
    """Inline text safe in Markdown and in table cells (one line, nothing interpreted)."""
    return _ESCAPE.sub(r"\\\1", text).replace("\r", "").replace("\n", "<br>")


def fenced(text: str, language: str = "") -> str:
    """A fenced code block with a fence no line inside can close."""
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def quoted(text: str) -> str:
    """``text`` as a Markdown block quote."""
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsible section; the blank lines let Markdown render inside it."""
    state = " open" if open_ else ""
    return f"<details{state}><summary>{html.escape(summary)}</summary>\n\n{body}\n\n</details>"


def format_value(value: Any) -> str:
    """A metric or parameter value, short and exact enough to compare."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = f"{value:.6g}"
        return text if any(c in text for c in ".e") else text + ".0"  # 1.0 stays a float
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def pipe_table(columns: list[str], rows: list[list[str]]) -> str:
    """A GitHub pipe table of escaped cells."""
    width = max(len(columns), *(len(r) for r in rows)) if rows else len(columns)
    head = [*columns, *[""] * (width - len(columns))]
    lines = [
        "| " + " | ".join(escape(c) for c in head) + " |",
        "|" + "---|" * width,
    ]
    for row in rows:
        cells = [*row, *[""] * (width - len(row))]
        lines.append("| " + " | ".join(escape(c) for c in cells) + " |")
    return "\n".join(lines)


def _delta(value: Any, base: Any) -> str:
    if isinstance(value, bool) or isinstance(base, bool):
        return ""
    if not isinstance(value, int | float) or not isinstance(base, int | float):
        return "" if value == base else "changed"
    change = value - base
    relative = f" ({change / abs(base):+.1%})" if base else ""
    return f"{change:+.4g}{relative}"


def metrics_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """The header's metrics table; base and delta columns with a ``baseline``.

    When a logger (TensorBoard, DVCLive, MLflow) supplied a metric, a Source column
    says where each value came from (``cml_nb`` for ``log_metric``).
    """
    columns, rows = _metrics_rows(report)
    sources: Mapping[str, str] = report.extra.get("metric_sources") or {}
    if any(s != "cml_nb" for s in sources.values()):
        columns = [*columns, "Source"]
        rows = [[*row, sources.get(row[0], "")] for row in rows]
    return columns, rows


def _metrics_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    base: Mapping[str, Any] | None = (report.baseline or {}).get("metrics")
    if base is None:
        return ["Metric", "Value"], [[k, format_value(v)] for k, v in report.metrics.items()]
    # The history stage's delta cells know each metric's goal (better/worse marks).
    deltas: Mapping[str, str] = (report.baseline or {}).get("deltas") or {}
    rows = []
    for name in [*report.metrics, *(k for k in base if k not in report.metrics)]:
        value, old = report.metrics.get(name), base.get(name)
        rows.append(
            [
                name,
                format_value(value) if name in report.metrics else "—",
                format_value(old) if name in base else "—",
                deltas[name]
                if name in deltas
                else (_delta(value, old) if name in report.metrics and name in base else ""),
            ]
        )
    return ["Metric", "Value", "Base", "Δ"], rows


def _summary_line(report: Report) -> str:
    if report.status == "unknown" and report.error_outputs is not None:
        # Not run by cml-nb: how its run went is unknown; what it holds is not.
        count = report.error_outputs
        what = "no error outputs" if not count else f"{count} error output{'s' * (count > 1)}"
        parts = [f"**📓 {what}**"]
    else:
        icon = STATUS_ICONS.get(report.status, "❔")
        parts = [f"**{icon} {escape(report.status)}**"]
    if report.notebook:
        parts.append(code_span(report.notebook))
    if report.duration is not None:
        parts.append(f"{report.duration:.1f} s")
    if report.commit:
        parts.append(f"commit {code_span(report.commit[:12])}")
    if report.runner:
        parts.append(f"runner: {escape(report.runner)}")
    return " · ".join(parts)


def _error_summary(report: Report) -> str:
    err = report.error
    if err is None:
        return ""
    number = err.cell_number if err.cell_number is not None else err.cell_index
    where = "A cell" if number is None else f"Cell {number}"
    if err.execution_count:
        where += f" (In [{err.execution_count}])"
    what = f"{err.ename}: {err.evalue}" if err.evalue else err.ename
    text = f"**{STATUS_ICONS.get(report.status, '❌')} {where} raised {code_span(what)}**"
    lines = "\n".join(err.traceback).rstrip("\n").split("\n") if err.traceback else []
    if lines and lines != [""]:
        short = lines[-SUMMARY_TRACEBACK_LINES:]
        text += "\n\n" + fenced("\n".join(short), "pytb")
    return quoted(text)


def header_markdown(report: Report) -> str:
    """Title, status line, error summary, metrics and parameters tables."""
    parts = [f"## {escape(report.title)}", _summary_line(report)]
    if report.error is not None:
        parts.append(_error_summary(report))
    if report.metrics or (report.baseline or {}).get("metrics"):
        columns, rows = metrics_table(report)
        source = (report.baseline or {}).get("source")
        note = f"\n\n<sub>Base: {escape(str(source))}</sub>" if source else ""
        gates = "".join(f"\n- {escape(line)}" for line in (report.baseline or {}).get("gates", []))
        parts.append(pipe_table(columns, rows) + note + ("\n" + gates if gates else ""))
    base_params: Mapping[str, Any] = (report.baseline or {}).get("parameters") or {}
    if report.parameters and base_params:  # the parameters diff: base value where it differs
        rows = [
            [
                k,
                format_value(v),
                format_value(base_params.get(k)) if base_params.get(k) != v else "",
            ]
            for k, v in report.parameters.items()
        ]
        parts.append(pipe_table(["Parameter", "Value", "Base (if changed)"], rows))
    elif report.parameters:
        rows = [[k, format_value(v)] for k, v in report.parameters.items()]
        parts.append(pipe_table(["Parameter", "Value"], rows))
    parts.append("---")
    return "\n\n".join(parts)


def _text_output(text: str, label: str, collapse_lines: int, language: str = "text") -> str:
    count = text.count("\n") + 1
    body = fenced(text, language)
    if count > collapse_lines:
        return details(f"{label} ({count} lines)", body)
    return body


def _stream(block: StreamBlock, collapse_lines: int) -> str:
    if block.name == "stdout":
        return _text_output(block.text, "Output", collapse_lines)
    label = "⚠️ Warning" if block.name == "warning" else "stderr"
    return quoted(f"**{label}**\n\n" + _text_output(block.text, label, collapse_lines))


def _error(block: ErrorBlock, collapse_lines: int) -> str:
    what = f"{block.ename}: {block.evalue}" if block.evalue else block.ename
    title = f"**❌ {code_span(what)}**"
    trace = "\n".join(block.traceback).rstrip("\n")
    if not trace:
        return title
    return f"{title}\n\n" + _text_output(trace, "Traceback", collapse_lines, "pytb")


def _html(block: HtmlBlock) -> str:
    # A blank line would end the HTML block and turn the rest into Markdown.
    lines = [line for line in block.html.split("\n") if line.strip()]
    return "<div>\n" + "\n".join(lines) + "\n</div>"


def _table(block: TableBlock) -> str:
    text = pipe_table(block.columns, block.rows)
    notes = []
    if block.caption:
        notes.append(escape(block.caption))
    if block.total_rows is not None and block.total_rows > len(block.rows):
        # pandas' own "..." row stands for the hidden ones; it is not a row shown.
        shown = sum(1 for row in block.rows if any(c not in ("...", "…", "") for c in row))
        notes.append(f"Showing {shown} of {block.total_rows} rows.")
    return text + ("\n\n<sub>" + " ".join(notes) + "</sub>" if notes else "")


def _linked(text: str, names: list[str], report: Report, asset_url: AssetUrl) -> str:
    """``text`` with its ``assets/<name>`` links pointing where ``asset_url`` says."""
    for name in names:
        if name in report.assets:
            text = text.replace(f"assets/{name}", asset_url(report.assets[name]))
    return text


def close_comment(text: str) -> str:
    """Markdown whose unclosed ``<!--`` is closed at its end.

    An HTML comment opened at the start of a line runs until the next ``-->``
    (CommonMark HTML block type 2): left open in one cell, it would hide the rest
    of the comment, cml-nb's own metrics trailer included. Jupyter hides only the
    rest of that cell, and so does the report.
    """
    if "<!--" not in text:
        return text
    prose = _CODE.sub("", text)
    opened = [m.end() for m in _COMMENT_START.finditer(prose)]
    if opened and prose.find("-->", opened[-1]) < 0:
        return text + "\n-->"
    return text


def neutralize_markers(text: str) -> str:
    """``text`` where nothing reads as cml-nb's comment marker or metrics trailer.

    Notebook output can print ``<!-- cml-nb:report … -->``; a zero-width space after
    ``cml-nb`` keeps it looking the same while no forge-side pattern matches it.
    """
    return _MARKER_LIKE.sub("\\1\u200b", text) if "cml-nb" in text.lower() else text


def _diff(block: DiffBlock, collapse_lines: int) -> str:
    """A :class:`DiffBlock` as a ``diff`` fence, folded when longer than ``collapse_lines``."""
    body = fenced(block.text, "diff")
    count = block.text.count("\n") + 1
    if count > collapse_lines:
        return details(f"Diff of the {block.label or 'cell'} ({count} lines)", body)
    return body


def block_markdown(block: Block, report: Report, asset_url: AssetUrl, collapse_lines: int) -> str:
    """One block as Markdown."""
    if isinstance(block, MarkdownBlock):
        return close_comment(_linked(block.text, block.assets, report, asset_url))
    if isinstance(block, CodeBlock):
        code = fenced(block.source.rstrip("\n"), block.language)
        return details("Code", code) if block.collapsed else code
    if isinstance(block, StreamBlock):
        return _stream(block, collapse_lines)
    if isinstance(block, DiffBlock):  # before TextBlock, its base class
        return _diff(block, collapse_lines)
    if isinstance(block, TextBlock):
        return _text_output(block.text, "Output", collapse_lines, block.language)
    if isinstance(block, ImageBlock):
        asset = report.assets.get(block.asset) or Asset(block.asset, "")
        alt = block.alt.replace("[", "(").replace("]", ")").replace("\n", " ")
        if block.base and block.base in report.assets:  # base | head, set by the history stage
            base_url, cell_alt = asset_url(report.assets[block.base]), alt.replace("|", "\\|")
            return (
                pipe_table(["Base", "This run"], [])
                + f"\n| ![{cell_alt}]({base_url}) | ![{cell_alt}]({asset_url(asset)}) |"
            )
        return f"![{alt}]({asset_url(asset)})"
    if isinstance(block, TableBlock):
        return _table(block)
    if isinstance(block, HtmlBlock):
        return _linked(_html(block), block.assets, report, asset_url)
    if isinstance(block, MathBlock):
        return fenced(block.latex, "math")
    if isinstance(block, ErrorBlock):
        return _error(block, collapse_lines)
    if isinstance(block, NoteBlock):
        icon = "⚠️" if block.level == "warning" else "ℹ️"
        return quoted(f"{icon} {block.text}")
    if isinstance(block, DetailsBlock):
        inner = "\n\n".join(
            block_markdown(b, report, asset_url, collapse_lines) for b in block.blocks
        )
        return details(block.summary, inner)
    return ""


def to_markdown(
    report: Report,
    *,
    asset_url: AssetUrl | None = None,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    collapse_lines: int = DEFAULT_COLLAPSE_LINES,
    full_report_url: str | None = None,
) -> str:
    """The report as Markdown of at most ``max_chars`` characters.

    Args:
        report: the report.
        asset_url: maps an asset to its link (default ``assets/<name>``); the
            publisher passes hosted URLs here.
        max_chars: size budget (GitHub comments hold 65,536; GitLab 1,000,000);
            None for no limit. Past it the report degrades step by step and says so,
            keeping the header, the failing cell and the end of the notebook.
        collapse_lines: outputs longer than this fold into ``<details>``.
        full_report_url: where the complete report is hosted, linked from the
            notice of a shortened report (default: ``report.extra["full_report_url"]``,
            else the notice names report.html in the run's artifact).
    """
    url = asset_url or relative_url
    hosted = full_report_url or report.extra.get("full_report_url")
    failing = report.error.cell_number if report.error is not None else None
    plan = budget.Plan(
        keep_cells=frozenset({failing} if failing is not None else ()),
        full_report=str(hosted) if hosted else None,
    )

    def render(blocks: list[Block], collapse: int) -> tuple[str, list[str]]:
        parts = [neutralize_markers(block_markdown(b, report, url, collapse)) for b in blocks]
        return neutralize_markers(header_markdown(report)), parts

    return budget.fit(report.blocks, render, max_chars, collapse_lines, plan)
