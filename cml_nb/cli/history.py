"""``cml-nb history``: a metric across the last commits; and the compare options of report/run."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from cml_nb.history import CommentReader, Comparison
    from cml_nb.report.model import Report

F = TypeVar("F", bound=Callable[..., Any])
SOURCE_NAMES = ("git", "comment", "records")


def source_options(func: F) -> F:
    """Where earlier metrics come from: ``--metrics-path``, ``--history``, ``--source``."""
    decorators = [
        click.option(
            "--metrics-path", default="metrics.json", show_default=True, metavar="PATH",
            help="Metrics file read at each commit (git show REF:PATH), relative to the working directory.",
        ),
        click.option(
            "--history", type=click.Path(file_okay=False, path_type=Path),
            help="Folder of earlier run records (a CI cache or artifact), matched by commit.",
        ),
        click.option(
            "--source", multiple=True, type=click.Choice(SOURCE_NAMES),
            help="Sources to try, in order (repeatable; default: git, comment, records).",
        ),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def compare_options(func: F) -> F:
    """``--compare-to``, ``--goal``, ``--fail-if``, ``--fail-on-regression``, ``--trend``."""
    decorators = [
        click.option(
            "--compare-to", metavar="REF|auto",
            help="Show each metric's base value and change against REF; auto: the PR's base "
            "branch in CI, else the previous commit.",
        ),
        click.option(
            "--goal", multiple=True, metavar="NAME=max|min,...",
            help="Which direction is better per metric (default max), e.g. --goal loss=min.",
        ),
        click.option(
            "--fail-if", multiple=True, metavar="CONDITION",
            help='Exit 6 when CONDITION holds, e.g. "accuracy < base - 0.01" (after writing outputs).',
        ),
        click.option(
            "--fail-on-regression", multiple=True, metavar="METRIC:TOLERANCE",
            help="Exit 6 when METRIC got worse than the base by more than TOLERANCE (0.01 or 5%).",
        ),
        click.option(
            "--trend", multiple=True, metavar="METRIC",
            help="Add METRIC's trend over the last --trend-last commits (table and plot).",
        ),
        click.option(
            "--trend-last", type=click.IntRange(min=1), default=20, show_default=True,
            help="Commits in the --trend table and plot.",
        ),
        source_options,
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def comment_reader(cwd: Path | None = None) -> CommentReader | None:
    """The forge for the comment source when a forge, repository and token are found.

    None otherwise: the git and records sources still work, and the report says that
    the comment source had no forge connection.
    """
    from cml_nb.errors import CmlNbError
    from cml_nb.forge.connect import connect, context_for

    try:
        ctx = context_for(cwd=cwd)
        return connect(ctx) if ctx.token else None
    except CmlNbError:  # no forge or repository known here
        return None


def compare_report(
    report: Report,
    *,
    compare_to: str | None = None,
    goal: tuple[str, ...] = (),
    fail_if: tuple[str, ...] = (),
    fail_on_regression: tuple[str, ...] = (),
    trend: tuple[str, ...] = (),
    trend_last: int = 20,
    metrics_path: str = "metrics.json",
    history: Path | None = None,
    source: tuple[str, ...] = (),
    forge: CommentReader | None = None,
) -> Comparison | None:
    """Fill ``report.baseline`` and add the trend; None when no comparison was asked for.

    The keyword arguments are the values of :func:`compare_options`. Call
    ``Comparison.enforce()`` after writing the report, so a failing gate leaves it behind.
    """
    wants_base = compare_to or goal or fail_if or fail_on_regression
    if not wants_base and not trend:
        return None
    from cml_nb import history as hist  # after the early return: `report` alone needs none

    sources = source or hist.SOURCES
    if forge is None and "comment" in sources:
        forge = comment_reader()
    comparison = None
    if wants_base:
        comparison = hist.compare(
            report.metrics,
            report.parameters,
            ref=compare_to or "auto",
            goals=list(goal),
            fail_if=list(fail_if),
            fail_on_regression=list(fail_on_regression),
            metrics_path=metrics_path,
            history_dir=history,
            forge=forge,
            sources=sources,
            head_commit=report.commit,
        )
        report.baseline = comparison.report
        if comparison.baseline.series:  # the base run's curves, dashed under this run's
            from cml_nb.loggers.curves import add_curves, series_curves

            add_curves(report, base=series_curves(comparison.baseline.series))
        from cml_nb.history.dvc_data import report_data_changes  # in a DVC repository only

        report_data_changes(report, comparison.baseline.commit, comparison.baseline.ref, Path.cwd())
        if history is not None:  # the base run's bundle, if cached, gives base | head images
            hist.pair_with_history(report, history, comparison.baseline.commit)
        for line in [f"base: {comparison.baseline.summary()}", *comparison.gate_lines()]:
            click.echo(line, err=True)
    if trend:
        result = hist.trend(
            list(trend),
            last=trend_last,
            metrics_path=metrics_path,
            history_dir=history,
            forge=forge,
            sources=sources,
            head_metrics=report.metrics,
        )
        hist.add_trend(report, result)
    return comparison


@click.command()
@click.option(
    "-m", "--metric", multiple=True, required=True,
    help="Metric to follow (repeatable).",
)  # fmt: skip
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many commits, newest included.")  # fmt: skip
@click.option(
    "--ref", default="HEAD", show_default=True, help="Branch or commit to walk back from."
)
@source_options
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a PNG line plot of the metric(s) here.")  # fmt: skip
@click.option("--trend", is_flag=True,
              help="Print a Markdown section (table, and the --plot image) to embed in a report.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the points as JSON.")
def command(
    metric: tuple[str, ...],
    last: int,
    ref: str,
    metrics_path: str,
    history: Path | None,
    source: tuple[str, ...],
    plot: Path | None,
    trend: bool,
    as_json: bool,
) -> None:
    """Show METRIC across the last commits of a branch, as a table and a plot.

    \b
    Each commit's value comes from the first source that has it: the metrics
    file committed at that commit, cml-nb's report comment on it (through the
    forge, when a token is set), or a --history folder of run records.
    Example: cml-nb history --metric accuracy --last 20 --plot accuracy.png
    Exit codes: 0 shown (also when no value was found), 2 bad usage.
    """
    from cml_nb import history as hist

    sources = source or hist.SOURCES
    result = hist.trend(
        list(metric),
        last=last,
        ref=ref,
        metrics_path=metrics_path,
        history_dir=history,
        forge=comment_reader() if "comment" in sources else None,
        sources=sources,
    )
    if plot is not None:
        hist.plot_trend(result, plot)
        click.echo(f"plot: {plot}", err=True)
    if as_json:
        click.echo(json.dumps(_points(result), indent=2))
    elif trend:
        click.echo(hist.trend_markdown(result, image=str(plot) if plot else None))
    else:
        click.echo(hist.trend_text(result))


def _points(result: Any) -> dict[str, Any]:
    points: list[Mapping[str, Any]] = [
        {"commit": p.commit, "date": p.date, "subject": p.subject, "source": p.source,
         "metrics": {m: p.metrics.get(m) for m in result.metrics}}
        for p in result.points
    ]  # fmt: skip
    return {"ref": result.ref, "metrics": result.metrics, "points": points, "notes": result.notes}
