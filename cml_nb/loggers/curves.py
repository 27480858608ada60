"""Curves for the report: one matplotlib figure per group of related scalar tags.

Tags group by their first path part (``train/loss`` and ``train/acc`` share ``train/``);
tags without a ``/`` share one ``metrics`` figure. Each tag gets its own axes in the
group's figure (a loss and an accuracy rarely share a scale). When the history stage
found the base run's series, the base curve is drawn dashed on the same axes.

The series travel in ``Report.extra["curves"]`` (thinned to :data:`MAX_POINTS` a tag)
so the history stage can redraw the figures with the base overlaid.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cml_nb.report.model import Report

#: Points kept per tag in report.json; longer series are thinned evenly (last one kept).
MAX_POINTS = 500
#: Figures and axes per figure drawn at most, so a run logging 300 tags stays readable.
MAX_GROUPS, MAX_TAGS = 12, 9
EXTRA_KEY = "curves"
ALT_SUFFIX = " curves"
BASE_SUFFIX = " (base dashed)"
#: The label an ungrouped tag's figure gets.
UNGROUPED = "metrics"

Curves = dict[str, list[list[float]]]  # {tag: [[step, value], ...]}


def record_curves(record: Any) -> Curves:
    """Every stepped scalar of a run record: the loggers' series, then ``log_metric``'s.

    A tag logged both ways keeps ``log_metric``'s history, as its last value does.
    """
    series = dict(getattr(record, "series", None) or {})
    series.update(getattr(record, "history", None) or {})
    return series_curves(series)


def series_curves(series: Mapping[str, Any]) -> Curves:
    """``{tag: [{"step", "value", ...}]}`` as curves (tags with one point have none)."""
    curves: Curves = {}
    for tag, points in series.items():
        pairs = [[float(p["step"]), float(p["value"])] for p in points or () if _numeric(p)]
        if len(pairs) > 1:
            curves[tag] = _thin(pairs)
    return curves


def _numeric(point: Any) -> bool:
    if not isinstance(point, Mapping):
        return False
    step, value = point.get("step"), point.get("value")
    number = (int, float)
    return isinstance(step, number) and isinstance(value, number) and not isinstance(value, bool)


def _thin(pairs: list[list[float]]) -> list[list[float]]:
    if len(pairs) <= MAX_POINTS:
        return pairs
    stride = len(pairs) / (MAX_POINTS - 1)
    return [pairs[int(i * stride)] for i in range(MAX_POINTS - 1)] + [pairs[-1]]


def group_of(tag: str) -> str:
    """``train/loss`` -> ``train/``; ``loss`` -> ``metrics``."""
    head, sep, _ = tag.partition("/")
    return f"{head}/" if sep and head else UNGROUPED


def groups(curves: Mapping[str, Any]) -> dict[str, list[str]]:
    """Tags by group, in first-seen order."""
    found: dict[str, list[str]] = {}
    for tag in curves:
        found.setdefault(group_of(tag), []).append(tag)
    return found


def figure_png(group: str, tags: list[str], curves: Curves, base: Curves | None) -> bytes:
    """One PNG: an axes per tag, this run solid, the base dashed."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display in CI; a notebook's backend is left alone
    from matplotlib.figure import Figure

    shown = tags[:MAX_TAGS]
    columns = min(3, len(shown))
    rows = (len(shown) + columns - 1) // columns
    figure = Figure(figsize=(3.6 * columns, 2.6 * rows), dpi=100, layout="constrained")
    for index, tag in enumerate(shown):
        axes = figure.add_subplot(rows, columns, index + 1)
        steps, values = zip(*curves[tag], strict=True)
        axes.plot(steps, values, label="this run", linewidth=1.6)
        if base and base.get(tag):
            base_steps, base_values = zip(*base[tag], strict=True)
            axes.plot(base_steps, base_values, "--", label="base", linewidth=1.2, alpha=0.8)
            axes.legend(fontsize=7, loc="best")
        axes.set_title(_plain(tag), fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    figure.suptitle(_plain(group.rstrip("/")), fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plain(text: str) -> str:
    # Tags are the notebook's text: a "$" would start matplotlib mathtext, and a malformed
    # formula fails the whole drawing. Shown as typed instead.
    return text.replace("$", r"\$")


def add_curves(report: Report, curves: Curves | None = None, base: Curves | None = None) -> None:
    """Put (or redraw) the curve figures at the top of the report body.

    ``curves`` defaults to what an earlier call stored in ``report.extra``; figures an
    earlier call drew are replaced, so the history stage can overlay the base.
    """
    from cml_nb.report.model import ImageBlock, MarkdownBlock, NoteBlock

    if curves is None:
        curves = (report.extra.get(EXTRA_KEY) or {}).get("series") or {}
    if not curves:
        return
    report.extra[EXTRA_KEY] = {"series": curves}
    old = [b for b in report.blocks if b.role == "curves"]
    report.blocks = [b for b in report.blocks if b.role != "curves"]
    for block in old:  # a redraw's figures replace the earlier ones in assets/ too
        if isinstance(block, ImageBlock) and not any(
            isinstance(b, ImageBlock) and b.asset == block.asset for b in report.blocks
        ):
            report.assets.pop(block.asset, None)
    blocks: list[Any] = [MarkdownBlock("### Curves", role="curves")]
    found = groups(curves)
    for group, tags in list(found.items())[:MAX_GROUPS]:
        asset = report.add_asset(figure_png(group, tags, curves, base), "image/png")
        overlaid = bool(base) and any(base.get(t) for t in tags)  # type: ignore[union-attr]
        alt = f"{group}{ALT_SUFFIX}" + (BASE_SUFFIX if overlaid else "")
        blocks.append(ImageBlock(asset.name, alt=alt, role="curves"))
        if len(tags) > MAX_TAGS:
            blocks.append(
                NoteBlock(f"{group}: {len(tags) - MAX_TAGS} more tags in run.json", role="curves")
            )
    if len(found) > MAX_GROUPS:
        more = len(found) - MAX_GROUPS
        blocks.append(NoteBlock(f"{more} more groups of curves in run.json", role="curves"))
    report.blocks[:0] = blocks
