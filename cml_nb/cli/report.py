"""``cml-nb report``: turn executed notebooks into a report bundle."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cml_nb.cli.history import compare_options, compare_report

if TYPE_CHECKING:
    from cml_nb.history import Comparison

FORGES = ("github", "gitlab")


def default_forge() -> str:
    """The forge whose size limit applies: GitLab inside GitLab CI, else GitHub."""
    return "gitlab" if os.environ.get("GITLAB_CI") == "true" else "github"


def report_options(func: click.decorators.FC) -> click.decorators.FC:
    """Options shared by ``cml-nb report`` and ``cml-nb run --report``."""
    decorators = [
        click.option(
            "--show-code/--hide-code", default=False,
            help="Show code cells (hide-input ones folded). Default: outputs and Markdown only.",
        ),
        click.option(
            "--forge", type=click.Choice(FORGES), default=None,
            help="Size limit to fit: github 65,536 or gitlab 1,000,000 characters "
            "(default: gitlab inside GitLab CI, else github).",
        ),
        click.option(
            "--max-chars", type=click.IntRange(min=500), default=None,
            help="Size budget of report.md in characters (overrides --forge).",
        ),
        click.option(
            "--collapse-lines", type=click.IntRange(min=1), default=40, show_default=True,
            help="Fold outputs longer than this many lines into <details>.",
        ),
        click.option(
            "--max-table-rows", type=click.IntRange(min=1), default=20, show_default=True,
            help="Rows of a DataFrame to show before truncating with a note.",
        ),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def budget(forge: str | None, max_chars: int | None) -> int:
    """The character budget from ``--max-chars`` or the forge's limit."""
    from cml_nb.report.budget import FORGE_LIMITS

    return max_chars if max_chars is not None else FORGE_LIMITS[forge or default_forge()]


def write_run_report(record: Any, prepare: Callable[[Any], None] | None = None) -> Path | None:
    """The bundle of a ``cml-nb run`` in ``report/`` beside its executed notebook.

    When the run failed, a report that cannot be written is only a warning, so
    the run's own exit code (the more useful one) still comes out. ``prepare`` may
    amend the Report before it is written (the history comparison does).
    """
    from cml_nb.errors import CmlNbError
    from cml_nb.report import build_report, write_bundle

    executed = Path(record.output)
    try:
        built = build_report([executed], records=[record])
        if prepare is not None:
            prepare(built)
        bundle = write_bundle(built, executed.parent / "report", max_chars=budget(None, None))
    except CmlNbError as error:
        if record.succeeded:
            raise
        click.secho(f"cml-nb: warning: no report: {error}", err=True, fg="yellow")
        from cml_nb.ci.annotations import Annotator

        Annotator().warning(str(error), file=record.notebook, title="no report")
        return None
    click.echo(f"report: {bundle / 'report.md'}", err=True)
    return bundle


#: The compare_options whose values make compare_report compare (cli/history.py).
_COMPARISON_ASKS = ("compare_to", "goal", "fail_if", "fail_on_regression", "trend")


def write_report_and_compare(record: Any, *, report: bool, **compare: Any) -> Comparison | None:
    """For ``cml-nb run``: write the report bundle (when ``report``) with the comparison.

    Without a bundle the comparison still runs on the record's metrics, so the gate works
    with ``--no-report`` too. Returns None when no comparison was asked for.
    """
    if not report and not any(compare.get(name) for name in _COMPARISON_ASKS):
        return None  # compare_report would return None: skip importing cml_nb.report (~0.1 s)
    from cml_nb.report.model import Report

    found: list[Comparison | None] = []
    if report:
        from cml_nb.ci.changes import add_changes

        def prepare(built: Report) -> None:
            found.append(compare_report(built, **compare))
            add_changes(built, [Path(record.output)], compare.get("compare_to"))

        write_run_report(record, prepare=prepare)
    else:
        commit = (record.environment.get("git") or {}).get("commit")
        bare = Report(record.notebook, metrics=record.metrics, parameters=record.parameters)
        bare.commit = commit
        found.append(compare_report(bare, **compare))
    return found[0] if found else None


@click.command()
@click.argument(
    "notebooks", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Bundle folder (default: report/ beside the first notebook).",
)  # fmt: skip
@click.option("--title", help="Report heading (default: 'Report: <notebook>').")
@report_options
@compare_options
def command(
    notebooks: tuple[Path, ...],
    output: Path | None,
    title: str | None,
    show_code: bool,
    forge: str | None,
    max_chars: int | None,
    collapse_lines: int,
    max_table_rows: int,
    **compare: Any,
) -> None:
    """Make a report bundle from executed NOTEBOOKS.

    \b
    The bundle holds report.md (GitHub/GitLab Markdown within the size budget),
    report.html (self-contained), assets/ (images by content hash) and
    report.json (the Report model that `cml-nb publish` reads). Facts come from
    the run.json that `cml-nb run` wrote beside each notebook, when present.
    With --compare-to, metrics show their base value and change (docs/history.md).
    Exit codes: 0 written, 3 a notebook is unreadable, 4 the folder is unwritable,
    6 a --fail-if / --fail-on-regression gate failed (the bundle is written first).
    """
    from cml_nb.report import build_report, write_bundle

    out_dir = output or notebooks[0].parent / "report"
    report = build_report(
        list(notebooks), title=title, show_code=show_code, max_table_rows=max_table_rows
    )
    comparison = compare_report(report, **compare)
    from cml_nb.ci.changes import add_changes  # the Changes section, against the same REF

    add_changes(report, notebooks, compare.get("compare_to"))
    write_bundle(report, out_dir, max_chars=budget(forge, max_chars), collapse_lines=collapse_lines)
    click.echo(f"report ({report.status}): {out_dir / 'report.md'}", err=True)
    from cml_nb.ci.finish import finish_report  # job summary, gate annotations

    finish_report(out_dir, comparison, report.notebook)
    click.echo(str(out_dir))
    if comparison is not None:
        comparison.enforce()
