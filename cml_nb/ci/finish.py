"""What each verb leaves for the CI system once its stage returned.

One call per verb, so the CLI's edits stay one line each: the JUnit file, the
annotations, the job summary and the step outputs, each only where asked for
(``--junit``) or where the CI system provides it (``GITHUB_ACTIONS``,
``GITHUB_STEP_SUMMARY``, ``GITHUB_OUTPUT``, ``GITLAB_CI``).

They run after the stage, on its typed result (RunRecord, bundle, PublishResult,
SweepResult), rather than as execution hooks: the record's error is already masked
(the notebook's secret parameters included), while a hook would see the raw outputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from cml_nb.ci import outputs, summary
from cml_nb.ci.annotations import Annotator


def finish_run(
    record: Any,
    *,
    junit_path: Path | None = None,
    comparison: Any = None,
    published: Any = None,
    report: bool = True,
    secrets: Iterable[str] = (),
) -> None:
    """After ``cml-nb run``: JUnit, annotations, job summary, step outputs."""
    keep = list(secrets)
    if junit_path is not None:
        from cml_nb.ci import junit  # xml.etree: not on `report`'s path

        junit.write(junit_path, [record], secrets=keep)
        click.echo(f"junit: {junit_path}", err=True)
    notes = Annotator(keep)
    notes.run_failed(record)
    if comparison is not None:
        notes.gates(comparison, record.notebook)
    if published is not None and published.body:
        summary.append_markdown(published.body)
    elif report:
        summary.append_bundle(Path(record.output).parent / "report")
    outputs.set_output("status", record.status)
    outputs.set_output("report-dir", str(Path(record.output).parent / "report") if report else "")
    if published is not None:
        outputs.set_output("report-url", published.url)


def finish_report(bundle: Path, comparison: Any = None, notebook: str | None = None) -> None:
    """After ``cml-nb report``: the job summary and the gates' annotations."""
    summary.append_bundle(bundle)
    if comparison is not None:
        Annotator().gates(comparison, notebook)


def finish_publish(result: Any) -> None:
    """After ``cml-nb publish``: the comment (hosted images) in the job summary; its URL."""
    if result.body:
        summary.append_markdown(result.body)
    outputs.set_output("report-url", result.url)


def finish_sweep(result: Any, junit_path: Path | None = None) -> None:
    """After ``cml-nb sweep`` (and merge): JUnit of every run, an annotation per failed run."""
    from cml_nb.ci import junit

    records, names = junit.sweep_records(Path(result.folder), result.runs)
    if junit_path is not None:
        junit.write(junit_path, records, names)
        click.echo(f"junit: {junit_path}", err=True)
    notes = Annotator()
    for record in records:
        notes.run_failed(record)
