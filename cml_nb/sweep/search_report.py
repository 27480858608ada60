"""The search part of a sweep's comparison report: history, importances, best trial, pruned.

Everything comes from ``sweep.json`` (``SweepResult.search`` and the runs), not from
the study's storage, so a report is rebuilt (``cml-nb sweep merge``, ``cml-nb
report``) without Optuna installed. The slice plot is the comparison's own
``metric by parameter`` figure, which ``compare`` draws for every sweep.
"""

from __future__ import annotations

from typing import Any

from cml_nb.report.markdown import format_value
from cml_nb.report.model import Block, ImageBlock, MarkdownBlock, Report, TableBlock
from cml_nb.sweep.result import SweepResult


def search_blocks(result: SweepResult, report: Report) -> list[Block]:
    """The blocks that describe the search; empty for a grid, random or list sweep."""
    search = result.search
    if not search:
        return []
    blocks: list[Block] = [MarkdownBlock(_summary(result, search), role="markdown")]
    best = search.get("best")
    if best:
        shown = {n: v for n, v in best["parameters"].items() if n in result.swept}
        rows = [[name, format_value(value)] for name, value in shown.items()]
        blocks.append(
            TableBlock(
                ["parameter", "value"],
                rows,
                caption=f"Best trial: #{best['trial']} ({result.metric} = "
                f"{format_value(best['value'])})",
                role="output",
            )
        )
    importances = search.get("importances") or {}
    if importances:
        rows = [[name, f"{share:.3f}"] for name, share in importances.items()]
        blocks.append(
            TableBlock(
                ["parameter", "importance"],
                rows,
                caption="Parameter importances (Optuna's fANOVA evaluator; they sum to 1).",
                role="output",
            )
        )
    png = history_plot(result)
    if png is not None:
        asset = report.add_asset(png, "image/png")
        blocks.append(ImageBlock(asset.name, alt="optimisation history"))
    return blocks


def _summary(result: SweepResult, search: dict[str, Any]) -> str:
    pruner = search.get("pruner", "none")
    text = (
        f"**Search**: `{search.get('method')}` over {', '.join(result.swept)}, "
        f"{search.get('complete', 0)} of {search.get('trials')} trials complete · "
        f"**{search.get('pruned', 0)} pruned**"
        + (f" (pruner `{pruner}`)" if pruner != "none" else " (no pruner)")
        + f" · {search.get('failed', 0)} failed"
    )
    if search.get("seed") is not None:
        text += f" · seed {search['seed']}"
    return text + f" · study in `{search.get('storage')}`"


def history_plot(result: SweepResult) -> bytes | None:
    """Each complete trial's value by trial number, and the best value so far."""
    from cml_nb.sweep.figures import figure as _figure
    from cml_nb.sweep.figures import png as _png

    points = [(int(n), float(v)) for n, v in result.search.get("history", []) if v is not None]
    if not points:
        return None
    points.sort()
    pick = min if result.goal == "min" else max
    best, running = [], None
    for _, value in points:
        running = value if running is None else pick(running, value)
        best.append(running)
    figure = _figure(6.0, 3.2)
    axis = figure.subplots()
    xs = [n for n, _ in points]
    axis.scatter(xs, [v for _, v in points], color="tab:blue", alpha=0.8, label="trial")
    axis.step(xs, best, where="post", color="tab:orange", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel(str(result.metric))
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize="small")
    axis.set_title("Optimisation history")
    return _png(figure)
