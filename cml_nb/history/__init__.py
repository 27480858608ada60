"""Compare with history: base metrics, deltas with goal directions, trends, regression gates.

What CML users get from DVC (``dvc metrics diff``, ``dvc plots diff``), cml-nb does itself:

- :func:`find_baseline`: the base's metrics, from a committed metrics file, cml-nb's comment
  on the base commit (through the forge), or a folder of earlier run records;
- :func:`compare_metrics`: each metric's change, marked better or worse by its goal;
- :func:`trend` and :func:`plot_trend`: a metric across the last N commits;
- :func:`parse_gate`, :func:`regression_gate`, :func:`check_gates`, :func:`enforce`: the
  regression gate that makes CI fail with exit code 6 when the model got worse.

:func:`compare` runs the whole step for a report: base, deltas, gates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cml_nb.history.base import (
    DEFAULT_METRICS_PATH,
    SOURCES,
    Baseline,
    MetricDelta,
    auto_ref,
    check_ref,
    compare_metrics,
    compare_parameters,
    find_baseline,
    parse_goals,
    parse_metrics_file,
    read_records,
    report_baseline,
    resolve_commit,
)
from cml_nb.history.comments import CommentReader, trusted_author
from cml_nb.history.gate import (
    Gate,
    GateResult,
    check_gates,
    enforce,
    evaluate,
    parse_gate,
    regression_gate,
)
from cml_nb.history.images import find_bundle, pair_images, pair_with_history
from cml_nb.history.trend import (
    Trend,
    TrendPoint,
    plot_trend,
    trend,
    trend_markdown,
    trend_table,
    trend_text,
)

if TYPE_CHECKING:
    from cml_nb.report.model import Report

__all__ = [
    "DEFAULT_METRICS_PATH",
    "SOURCES",
    "Baseline",
    "Comparison",
    "CommentReader",
    "Gate",
    "GateResult",
    "MetricDelta",
    "Trend",
    "TrendPoint",
    "add_trend",
    "auto_ref",
    "check_ref",
    "check_gates",
    "compare",
    "compare_metrics",
    "compare_parameters",
    "enforce",
    "evaluate",
    "find_baseline",
    "find_bundle",
    "parse_gate",
    "parse_goals",
    "pair_images",
    "pair_with_history",
    "parse_metrics_file",
    "plot_trend",
    "read_records",
    "regression_gate",
    "report_baseline",
    "resolve_commit",
    "trend",
    "trend_markdown",
    "trend_table",
    "trend_text",
    "trusted_author",
]


@dataclass
class Comparison:
    """This run against its base: what the report shows and what the gate decided.

    Attributes:
        baseline: where the base came from (``found`` False when nowhere).
        deltas: each metric's change and verdict.
        parameters: changed parameters as ``(name, head, base)``.
        gates: each gate's result.
        report: the dict for ``Report.baseline``.
    """

    baseline: Baseline
    deltas: list[MetricDelta] = field(default_factory=list)
    parameters: list[tuple[str, Any, Any]] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def gate_lines(self) -> list[str]:
        """One line per gate, for the log and the report."""
        marks = {"passed": "✅", "failed": "❌", "skipped": "⏭️"}
        return [f"{marks[r.status]} {r.gate}: {r.status} ({r.reason})" for r in self.gates]

    def enforce(self) -> None:
        """Raise RegressionError (exit 6) if a gate failed; call it after writing the report."""
        enforce(self.gates)


def compare(
    head_metrics: Mapping[str, Any],
    head_parameters: Mapping[str, Any] | None = None,
    *,
    ref: str = "auto",
    goals: Mapping[str, str] | Sequence[str] | str | None = None,
    fail_if: Sequence[str] = (),
    fail_on_regression: Sequence[str] = (),
    metrics_path: str = DEFAULT_METRICS_PATH,
    history_dir: Path | None = None,
    forge: CommentReader | None = None,
    sources: Sequence[str] = SOURCES,
    head_commit: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Comparison:
    """Find the base for ``ref``, compute deltas, evaluate the gates (without raising).

    Gates are parsed first, so a malformed ``--fail-if`` fails (ConfigError, exit 2) before
    any git or forge work. Call ``Comparison.enforce()`` once the report is written.
    """
    goal_map = dict(goals) if isinstance(goals, Mapping) else parse_goals(goals)
    gates = [parse_gate(text) for text in fail_if]
    gates += [regression_gate(spec, goal_map) for spec in fail_on_regression]
    baseline = find_baseline(
        ref,
        metrics_path=metrics_path,
        history_dir=history_dir,
        forge=forge,
        head_commit=head_commit,
        sources=sources,
        cwd=cwd,
        env=env,
    )
    result = Comparison(baseline)
    result.report = report_baseline(baseline, head_metrics, goal_map)
    result.deltas = (
        compare_metrics(head_metrics, baseline.metrics, goal_map) if baseline.found else []
    )
    result.parameters = compare_parameters(head_parameters or {}, baseline.parameters)
    unreadable = "" if baseline.found else baseline.unreadable
    result.gates = check_gates(gates, head_metrics, baseline.metrics, base_unreadable=unreadable)
    if result.gates:
        result.report["gates"] = result.gate_lines()
    return result


def add_trend(report: Report, result: Trend) -> None:
    """Put the trend (heading, plot, table, notes) at the top of the report's body."""
    from cml_nb.report.model import ImageBlock, MarkdownBlock, NoteBlock, TableBlock

    names = ", ".join(result.metrics)
    asset = report.add_asset(plot_trend(result), "image/png")
    columns, rows = trend_table(result)
    blocks = [
        MarkdownBlock(f"### Trend of {names} on {result.ref}", role="markdown"),
        ImageBlock(asset.name, alt=f"trend of {names}"),
        TableBlock(columns, rows, caption=f"{names} over the last {len(rows)} commits"),
        *(NoteBlock(note, level="warning") for note in result.notes),
    ]
    report.blocks[0:0] = blocks
