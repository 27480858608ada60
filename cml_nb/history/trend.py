"""Trends: metrics across the last N commits of a branch, as a table and a matplotlib plot.

Each commit's metrics come from the same sources as the base, in the same order: the
metrics file committed at that commit, cml-nb's comment on it, a folder of run records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml_nb.errors import CmlNbError, ConfigError
from cml_nb.history.base import (
    DEFAULT_METRICS_PATH,
    SOURCES,
    _number,
    check_ref,
    from_git,
    parse_metrics_file,
    read_records,
)
from cml_nb.history.comments import CommentReader, report_metrics
from cml_nb.history.gitfiles import _git

THIS_RUN = "this run"


@dataclass
class TrendPoint:
    """One commit (oldest first in a Trend) and the metrics found for it.

    Attributes:
        commit: the full SHA; empty for the current, not yet committed, run.
        date: the commit date (ISO 8601).
        subject: the commit message's first line.
        metrics: every metric found for the commit (empty when no source had any).
        source: ``git``, ``comment``, ``records``, ``run`` or ``""`` (nothing found).
    """

    commit: str
    date: str
    subject: str
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def label(self) -> str:
        """Short name for tables and plot ticks."""
        return self.commit[:7] if self.commit else THIS_RUN


@dataclass
class Trend:
    """The points (oldest first), the metrics asked for, and notes for the reader."""

    metrics: list[str]
    points: list[TrendPoint]
    ref: str
    notes: list[str] = field(default_factory=list)

    def values(self, metric: str) -> list[float | None]:
        """The metric at each point, None where it is missing or not a number."""
        return [_number(p.metrics.get(metric)) for p in self.points]


def commits(ref: str = "HEAD", last: int = 20, cwd: Path | None = None) -> list[TrendPoint]:
    """The last ``last`` first-parent commits of ``ref``, oldest first, without metrics."""
    check_ref(ref)
    log = ["log", "--first-parent", f"-n{last}", "--format=%H%x1f%cI%x1f%s", "--end-of-options"]
    out = _git([*log, ref, "--"], cwd)
    if out is None:
        return []
    points = []
    for line in out.splitlines():
        sha, date, subject = (line.split("\x1f") + ["", ""])[:3]
        points.append(TrendPoint(sha, date, subject))
    return points[::-1]


def trend(
    metrics: Sequence[str],
    *,
    last: int = 20,
    ref: str = "HEAD",
    metrics_path: str = DEFAULT_METRICS_PATH,
    history_dir: Path | None = None,
    forge: CommentReader | None = None,
    sources: Sequence[str] = SOURCES,
    head_metrics: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Trend:
    """Metrics over the last ``last`` commits of ``ref``, each from the first source that has them.

    Args:
        metrics: the metric names to follow (the table and plot show these).
        last: how many commits, newest included.
        ref: the branch or commit to walk back from.
        metrics_path: the metrics file to read at each commit.
        history_dir: a folder of run records, matched to commits by their recorded SHA.
        forge: the forge holding cml-nb's report comments (only its own are read).
        sources: which sources to try, in order.
        head_metrics: the current run's metrics, appended as the newest point ``this run``.
        cwd: a directory inside the git repository.

    Raises:
        ConfigError: no metric was named, ``last`` is not positive, or ``ref`` starts with
            ``-`` (git would read it as an option).
    """
    if not metrics:
        raise ConfigError("name at least one metric to follow, e.g. --metric accuracy")
    if last < 1:
        raise ConfigError(f"--last must be at least 1, not {last}")
    check_ref(ref)
    points = commits(ref, last, cwd)
    result = Trend(list(metrics), points, ref)
    if not points:
        result.notes.append(f"{ref} has no commits here (not a git repository, or not fetched)")
    elif len(points) < last and _git(["rev-parse", "--is-shallow-repository"], cwd) == "true\n":
        result.notes.append(
            f"only {len(points)} commits in this shallow clone: fetch more history "
            "(actions/checkout fetch-depth: 0, GIT_DEPTH: 0 in GitLab)"
        )
    records = read_records(history_dir) if history_dir and "records" in sources else []
    by_commit: dict[str, dict[str, Any]] = {}
    for record in reversed(records):  # newest last, so the newest record per commit wins
        if record.commit:
            by_commit[record.commit] = record.metrics
    for point in points:
        for source in sources:
            found: Mapping[str, Any] | None = None
            if source == "git":
                found = (from_git(point.commit, metrics_path, cwd) or ({}, {}))[0]
            elif source == "comment" and forge is not None:
                try:
                    payload = report_metrics(forge, point.commit).payload
                    found = parse_metrics_file(payload or {})[0]
                except CmlNbError as error:  # one refusal is enough: skip the forge from now on
                    result.notes.append(f"comment source skipped: {error}")
                    forge = None
            elif source == "records":
                found = by_commit.get(point.commit)
            if found:
                point.metrics, point.source = dict(found), source
                break
    if head_metrics is not None:
        points.append(TrendPoint("", "", THIS_RUN, dict(head_metrics), "run"))
    if points and not any(v is not None for m in metrics for v in result.values(m)):
        result.notes.append(f"no value of {', '.join(metrics)} found in any source")
    return result


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def trend_table(result: Trend) -> tuple[list[str], list[list[str]]]:
    """Columns and rows: commit, date, one column per metric, source; oldest first."""
    columns = ["Commit", "Date", *result.metrics, "Source", "Subject"]
    rows = [
        [
            p.label,
            p.date[:10],
            *(_cell(p.metrics.get(m)) for m in result.metrics),
            p.source or "—",
            p.subject[:60],
        ]
        for p in result.points
    ]
    return columns, rows


def trend_text(result: Trend) -> str:
    """The table as aligned plain text, notes after it."""
    columns, rows = trend_table(result)
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines + [f"note: {n}" for n in result.notes])


def trend_markdown(result: Trend, image: str | None = None) -> str:
    """A report section: heading, optional plot image, the table in a ``<details>``."""
    columns, rows = trend_table(result)
    table = "\n".join(
        ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    )
    parts = [f"### Trend of {', '.join(result.metrics)} on {result.ref}"]
    if image:
        parts.append(f"![trend of {', '.join(result.metrics)}]({image})")
    parts.append(f"<details><summary>last {len(rows)} commits</summary>\n\n{table}\n\n</details>")
    parts += [f"<sub>{n}</sub>" for n in result.notes]
    return "\n\n".join(parts)


def plot_trend(result: Trend, path: Path | None = None, *, dpi: int = 100) -> bytes:
    """A PNG line plot, one line per metric over the commits; written to ``path`` if given."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    labels = [p.label for p in result.points]
    figure = Figure(figsize=(max(6.0, 0.45 * len(labels)), 3.6), layout="constrained")
    axes = figure.subplots()
    for metric in result.metrics:
        values = [math.nan if v is None else v for v in result.values(metric)]
        axes.plot(range(len(labels)), values, marker="o", label=metric)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_xlabel(f"commits on {result.ref} (oldest first)")
    axes.grid(True, alpha=0.3)
    if len(result.metrics) > 1:
        axes.legend()
    else:
        axes.set_ylabel(result.metrics[0])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    data = buffer.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data
