"""``--compare-to REF`` on run and report: add the notebook's "Changes" section.

The glue between the CLI and :mod:`cml_nb.report.diff`: it resolves ``auto`` the way
the metrics comparison does (the PR's base branch in CI, else ``HEAD~1``), finds the
source notebook of an executed one (its run.json names it), and appends one folded
section per notebook to the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cml_nb.report.model import Report


def _source_of(executed: Path) -> Path:
    """The notebook as committed: what run.json beside ``executed`` names, else itself."""
    from cml_nb.records import RUN_RECORD_NAME, RunRecord

    record_path = executed.parent / RUN_RECORD_NAME
    if record_path.is_file():
        try:
            record = RunRecord.read(record_path)
        except (OSError, ValueError, TypeError):
            return executed
        if Path(record.output).name == executed.name and record.notebook:
            return Path(record.notebook)
    return executed


def resolve_ref(compare_to: str, cwd: Path) -> tuple[str, str]:
    """``(commit or ref for git, name for the reader)``; ``auto`` as the metrics comparison reads it.

    A CI checkout may hold the base branch only as ``origin/NAME`` or not at all:
    ``resolve_commit`` tries both and fetches once, as for the metrics.
    """
    from cml_nb.history.base import auto_ref, resolve_commit

    name = auto_ref() if compare_to == "auto" else compare_to
    return resolve_commit(name, cwd) or name, name


def add_changes(report: Report, executed: Sequence[Path], compare_to: str | None) -> None:
    """Put the Changes section of each executed notebook first in the report body.

    Does nothing when ``compare_to`` is None. The new blocks are masked like the rest
    of the report (the base notebook's outputs may print anything).

    Raises:
        NotebookReadError: git is missing, or ``compare_to`` names no commit.
    """
    if not compare_to:
        return
    from cml_nb.report import diff
    from cml_nb.report.build import read_notebook
    from cml_nb.report.redact import make_scrubber, redact_report

    # First in the body, right under the metrics: the budget keeps the end for the
    # notebook's results, and a reviewer reads the one-line summary before the outputs.
    for position, path in enumerate(executed):
        source = _source_of(path)
        ref, name = resolve_ref(compare_to, source.parent)
        label = str(source) if len(executed) > 1 else ""
        section = diff.notebook_changes(read_notebook(path), source, ref, report, label, name)
        report.blocks.insert(position, section)
    redact_report(report, make_scrubber())
