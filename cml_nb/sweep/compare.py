"""The comparison report of a sweep: a ranked table, failures, plots and the best run.

``build_comparison(result)`` returns a ``Report`` made of the report stage's own
blocks, and ``write_report`` writes it with ``write_bundle``, so ``cml-nb publish``
publishes it like any other report. Nothing in it depends on where or when runs
executed (no durations, no paths), so shards merged with ``cml-nb sweep merge``
give the same report as the whole sweep run at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cml_nb.records import RunRecord
from cml_nb.report.markdown import format_value
from cml_nb.report.model import (
    Block,
    DetailsBlock,
    ImageBlock,
    MarkdownBlock,
    NoteBlock,
    Report,
    TableBlock,
)
from cml_nb.sweep.figures import figure as _figure
from cml_nb.sweep.figures import png as _png
from cml_nb.sweep.result import REPORT_DIR, RunEntry, SweepResult

MAX_METRIC_COLUMNS = 8
MAX_PLOTTED_METRICS = 6
BEST_MARK = "★ best"


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _metric_names(result: SweepResult) -> list[str]:
    names: list[str] = [result.metric] if result.metric else []
    for run in result.runs:
        names += [n for n in run.metrics if n not in names]
    return names


def ranking_table(result: SweepResult) -> TableBlock:
    """Runs best first (by metric and goal), then the failed ones; the best run marked."""
    metrics = _metric_names(result)[:MAX_METRIC_COLUMNS]
    best = result.best()
    ranked = result.ranked()
    rows = []
    for rank, run in enumerate([*ranked, *result.pruned, *result.failed], start=1):
        mark = BEST_MARK if best is not None and run.name == best.name else str(rank)
        if not run.succeeded:
            mark = "—"
        rows.append(
            [
                mark,
                run.name,
                *(format_value(run.parameters.get(p, "")) for p in result.swept),
                *(format_value(run.metrics[m]) if m in run.metrics else "" for m in metrics),
                run.status,
            ]
        )
    caption = (
        f"Sorted by {result.metric} ({'higher' if result.goal == 'max' else 'lower'} is better)."
        if result.metric
        else "In the order of the parameter space (pass --metric to rank the runs)."
    )
    return TableBlock(
        ["#", "run", *result.swept, *metrics, "status"], rows, caption=caption, role="output"
    )


def failures_table(failed: Sequence[RunEntry]) -> TableBlock:
    """Each failed run with its status and one-line error."""
    rows = [[run.name, run.status, run.message or "(no message)"] for run in failed]
    return TableBlock(["run", "status", "error"], rows, caption="Failed runs", role="output")


def _axis_values(values: Sequence[Any]) -> tuple[list[float], list[str] | None]:
    """Positions on an axis: numbers as they are, anything else as categories."""
    if all(_numeric(v) for v in values):
        return [float(v) for v in values], None
    labels = sorted({format_value(v) for v in values})
    return [float(labels.index(format_value(v))) for v in values], labels


def metric_plot(result: SweepResult, metric: str) -> bytes | None:
    """One panel per swept parameter: ``metric`` against its values, the best run starred."""
    runs = [r for r in result.runs if r.succeeded and _numeric(r.metrics.get(metric))]
    if not runs or not result.swept:
        return None
    best = result.best()
    figure = _figure(3.2 * len(result.swept) + 0.6, 3.0)
    axes = figure.subplots(1, len(result.swept), squeeze=False)[0]
    for axis, name in zip(axes, result.swept, strict=True):
        xs, labels = _axis_values([r.parameters.get(name) for r in runs])
        ys = [float(r.metrics[metric]) for r in runs]
        axis.scatter(xs, ys, color="tab:blue", alpha=0.8)
        if best is not None and best in runs:
            i = runs.index(best)
            axis.scatter([xs[i]], [ys[i]], marker="*", s=220, color="tab:orange", label="best")
            axis.legend(loc="best", fontsize="small")
        if labels is not None:
            axis.set_xticks(range(len(labels)), labels, rotation=30)
            axis.set_xlim(-0.5, len(labels) - 0.5)
        else:
            if min(xs) > 0 and max(xs) / min(xs) >= 100:
                axis.set_xscale("log")
            distinct = sorted(set(xs))
            if len(distinct) <= 10:  # a grid's few values, not matplotlib's in-between ticks
                axis.set_xticks(distinct, [f"{v:g}" for v in distinct])
                axis.minorticks_off()
        axis.set_xlabel(name)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    figure.suptitle(f"{metric} by parameter")
    return _png(figure)


def parallel_plot(result: SweepResult, metric: str) -> bytes | None:
    """A parallel-coordinates view: one line per run across every swept parameter."""
    runs = [r for r in result.runs if r.succeeded and _numeric(r.metrics.get(metric))]
    if len(result.swept) < 3 or not runs:
        return None
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    columns = [*result.swept, metric]
    scaled, ticks = [], []
    for name in columns:
        values = [r.metrics[metric] if name == metric else r.parameters.get(name) for r in runs]
        positions, labels = _axis_values(values)
        low, high = min(positions), max(positions)
        span = (high - low) or 1.0
        scaled.append([(p - low) / span for p in positions])
        ticks.append((low, high, labels))
    scores = [float(r.metrics[metric]) for r in runs]
    norm = Normalize(min(scores), max(scores) if max(scores) > min(scores) else min(scores) + 1)
    cmap = colormaps["viridis" if result.goal == "max" else "viridis_r"]
    figure = _figure(1.6 * len(columns) + 1.5, 3.6)
    axis = figure.subplots()
    order = sorted(range(len(runs)), key=lambda i: scores[i], reverse=result.goal == "min")
    for i in order:  # the best drawn last, on top
        axis.plot(range(len(columns)), [col[i] for col in scaled], color=cmap(norm(scores[i])))
    axis.set_xticks(range(len(columns)), columns)
    axis.tick_params(axis="x", pad=16, length=0)  # room for each axis's low value
    axis.set_yticks([])
    for x, (low, high, labels) in enumerate(ticks):
        axis.axvline(x, color="grey", linewidth=0.8)
        bottom, top = (labels[0], labels[-1]) if labels else (f"{low:.3g}", f"{high:.3g}")
        axis.annotate(bottom, (x, 0), (0, -14), textcoords="offset points", ha="center", fontsize=7)
        axis.annotate(top, (x, 1), (0, 6), textcoords="offset points", ha="center", fontsize=7)
    figure.colorbar(ScalarMappable(norm, cmap), ax=axis, label=metric)
    axis.set_title(f"Runs across parameters, coloured by {metric}", pad=18)
    return _png(figure)


def _best_run_blocks(result: SweepResult, best: RunEntry, report: Report) -> list[Block]:
    """The best run's own report body, its images moved into ``report``."""
    from cml_nb.report.build import build_report

    folder = result.run_folder(best)
    notebook = folder / Path(result.notebook).name
    if not notebook.is_file():
        return [NoteBlock(f"The best run's notebook is missing from {folder}.", level="warning")]
    record = RunRecord.read(folder)
    own = build_report([notebook], records=[record])
    report.assets.update(own.assets)
    return own.blocks


def build_comparison(result: SweepResult, *, embed_best: bool = True) -> Report:
    """The comparison Report of a sweep (see the module docstring)."""
    best = result.best()
    failed = result.failed
    report = Report(
        title=f"Sweep: {Path(result.notebook).name} ({len(result.runs)} runs)",
        notebook=result.notebook,
        status="succeeded" if not failed else "failed",
        parameters=dict(best.parameters) if best else {},
        metrics=dict(best.metrics) if best else {},
        extra={
            "sweep": {
                "runs": len(result.runs),
                "failed": len(failed),
                "swept": result.swept,
                "metric": result.metric,
                "goal": result.goal,
                "best": best.name if best else None,
                **(
                    {"pruned": len(result.pruned), "search": result.search} if result.search else {}
                ),
            }
        },
    )
    summary = f"**{len(result.runs)} runs** over {', '.join(result.swept) or 'no parameter'}"
    pruned = len(result.pruned)
    summary += f" · {len(result.runs) - len(failed) - pruned} succeeded · {len(failed)} failed"
    summary += f" · {pruned} pruned" if result.search else ""
    if best is not None:
        summary += f" · best by `{result.metric}` ({result.goal}): `{best.name}`"
        summary += " (its metrics and parameters are in the tables above)"
    report.blocks.append(MarkdownBlock(summary, role="markdown"))
    report.blocks.append(ranking_table(result))
    from cml_nb.sweep.search_report import search_blocks  # a search's history and importances

    report.blocks.extend(search_blocks(result, report))
    if failed:
        report.blocks.append(failures_table(failed))
    plotted = [
        m for m in _metric_names(result) if any(_numeric(r.metrics.get(m)) for r in result.runs)
    ]
    for metric in plotted[:MAX_PLOTTED_METRICS]:
        png = metric_plot(result, metric)
        if png is not None:
            asset = report.add_asset(png, "image/png")
            report.blocks.append(ImageBlock(asset.name, alt=f"{metric} by parameter"))
    if plotted:
        png = parallel_plot(result, result.metric or plotted[0])
        if png is not None:
            asset = report.add_asset(png, "image/png")
            report.blocks.append(ImageBlock(asset.name, alt="parallel coordinates"))
    if best is not None and embed_best:
        report.blocks.append(
            DetailsBlock(f"Best run: {best.name}", _best_run_blocks(result, best, report))
        )
    return report


def write_report(result: SweepResult, out_dir: str | Path | None = None) -> Path:
    """Build the comparison and write its bundle (default ``<sweep>/report``); returns the folder."""
    from cml_nb.report.bundle import write_bundle

    folder = Path(out_dir) if out_dir else Path(result.folder) / REPORT_DIR
    return write_bundle(build_comparison(result), folder)
