"""Annotations: a failing cell or gate shown on the PR's "Files changed" and run summary.

In GitHub Actions these are workflow commands on stdout,
``::error file=train.ipynb,title=cell 3 raised ValueError::bad value``, escaped as the
runner reads them (docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands,
and actions/toolkit packages/core/src/command.ts: ``%``, ``\\r``, ``\\n`` in the message;
also ``:`` and ``,`` in properties). GitLab CI has no equivalent, so it gets the same
facts as a plain log line (``ERROR: train.ipynb: cell 3 raised ValueError: bad value``).
Outside CI nothing is printed: the CLI's own error line says it already.

Every text is masked with :class:`cml_nb.secrets.Scrubber` before it is printed: a
notebook's exception message can hold anything, and annotations are public on a PR.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from cml_nb.secrets import Scrubber

ERROR, WARNING, NOTICE = "error", "warning", "notice"
_MAX_MESSAGE = 4000  # a traceback-sized message is noise on the diff view

_WHAT = {
    "failed": "raised {ename}",
    "timeout": "timed out",
    "kernel_died": "killed the kernel",
    "interrupted": "was interrupted",
}


def escape_data(text: str) -> str:
    """A message as the runner unescapes it (toolkit ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value (``file=``, ``title=``) as the runner unescapes it."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(level: str, message: str, **properties: str | int | None) -> str:
    """``::LEVEL k=v,k=v::MESSAGE`` with every part escaped."""
    props = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in properties.items()
        if value is not None and value != ""
    )
    return f"::{level}{' ' + props if props else ''}::{escape_data(message)}"


def plain_line(level: str, message: str, **properties: str | int | None) -> str:
    """The same facts as one log line, for CI systems without workflow commands."""
    where = [str(properties[k]) for k in ("file", "title") if properties.get(k)]
    text = " ".join(message.split()) if "\n" in message else message
    return ": ".join([level.upper(), *where, text])


def _provider(env: Mapping[str, str]) -> str | None:
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return None


def _workspace_relative(path: str, env: Mapping[str, str]) -> str:
    # GitHub matches annotations to files by their path from the repository root.
    workspace = env.get("GITHUB_WORKSPACE")
    if workspace:
        try:
            return Path(path).resolve().relative_to(Path(workspace).resolve()).as_posix()
        except ValueError:
            pass
    return Path(path).as_posix()


class Annotator:
    """Prints annotations for the CI system it runs in (none outside CI).

    Args:
        secrets: values to mask besides token formats and secret-looking variables.
        env: the environment (default ``os.environ``).
        stream: where lines go (default stdout, which the runner reads commands from).
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.env = os.environ if env is None else env
        self.provider = _provider(self.env)
        self.scrubber = Scrubber(secrets, include_env=True)
        self.stream = stream
        self.lines: list[str] = []

    def emit(
        self, level: str, message: str, *, file: str | None = None, title: str = "",
        line: int | None = None,
    ) -> None:  # fmt: skip
        """One annotation; ``file`` is the notebook (made relative to the workspace).

        ``line`` is the line of the notebook file where the cell starts, so GitHub
        shows the annotation at that cell in the pull request's diff.
        """
        if self.provider is None:
            return
        scrub = self.scrubber.scrub
        message = scrub(message)[:_MAX_MESSAGE]
        props: dict[str, str | int | None] = {
            "file": scrub(_workspace_relative(file, self.env)) if file else None,
            "line": line if file else None,
            "title": scrub(title) or None,
        }
        render = workflow_command if self.provider == "github" else plain_line
        printed = render(level, message, **props)
        self.lines.append(printed)
        stream = self.stream or sys.stdout
        stream.write(printed + "\n")
        stream.flush()

    def run_failed(self, record: Any) -> None:
        """The failing cell of a run (a ``RunRecord``), as ``cell N raised ENAME``."""
        if record.succeeded or record.status == "pruned":  # a search's pruner stopped it
            return
        error = record.error
        number = _cell_number(record.output, error.cell_index) if error else None
        what = _WHAT.get(record.status, "failed").format(ename=error.ename if error else "")
        title = f"cell {number} {what}" if number is not None else f"the run {what}"
        if error is not None and error.ename not in ("", record.status) and error.evalue:
            message = f"{error.ename}: {error.evalue}"
        else:
            message = record.message or record.status
        line = _cell_line(record.notebook, number) if number is not None else None
        self.emit(ERROR, message, file=record.notebook, title=title, line=line)

    def gates(self, comparison: Any, notebook: str | None = None) -> None:
        """Each failed regression gate as an error, each skipped one as a warning."""
        for gate in getattr(comparison, "gates", ()):
            if gate.status == "failed":
                self.emit(ERROR, gate.reason, file=notebook, title=f"regression: {gate.gate}")
            elif gate.status == "skipped":
                self.emit(WARNING, gate.reason, file=notebook, title=f"gate skipped: {gate.gate}")

    def warning(self, message: str, *, file: str | None = None, title: str = "") -> None:
        """A cml-nb warning (e.g. the report was not published)."""
        self.emit(WARNING, message, file=file, title=title)


def _cell_line(notebook: str, number: int) -> int | None:
    """The 1-based line of the notebook file where cell ``number`` (the author's) starts.

    Found by the cell's ``id`` (nbformat 4.5+), which appears once in the file; None for
    notebooks without ids or when the file cannot be read.
    """
    try:
        text = Path(notebook).read_text(encoding="utf-8")
        cells = json.loads(text).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return None
    if not 0 < number <= len(cells) or not isinstance(cells[number - 1], dict):
        return None
    cell_id = cells[number - 1].get("id")
    if not isinstance(cell_id, str) or not cell_id:
        return None
    needle = json.dumps(cell_id)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if '"id":' in line and needle in line:
            return lineno
    return None


def _cell_number(executed: str, index: int) -> int:
    """The author's number of executed cell ``index`` (papermill's cells not counted)."""
    from cml_nb.notebook import cell_numbers

    try:
        nb = json.loads(Path(executed).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return index + 1
    return cell_numbers(nb).get(index, index + 1)
