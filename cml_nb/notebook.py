"""Notebook helpers every stage shares: ANSI stripping, cell numbering, the failing cell.

They live here rather than in ``execute`` so that ``report`` (and anything else
that reads an executed notebook) does not depend on the execution stage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cml_nb.records import CellError

#: Tag papermill puts on the cell it injects with the run's parameters.
INJECTED_TAG = "injected-parameters"
#: Tag papermill puts on the banner cells it adds above a failing cell.
ERROR_MARKER_TAG = "papermill-error-cell-tag"

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # CSI and 2-byte escapes


def strip_ansi(text: str) -> str:
    """Text without terminal colour and cursor codes."""
    return _ANSI.sub("", text)


def _tags(cell: Mapping[str, Any]) -> Any:
    return (cell.get("metadata", {}) or {}).get("tags", ()) or ()


def cell_numbers(nb: Mapping[str, Any]) -> dict[int, int]:
    """Executed-notebook index -> 1-based number of the cell in the author's notebook.

    papermill adds cells (the injected parameters, error banners) that the author
    never wrote; a reader looks for "cell 3" in their own notebook.
    """
    numbers: dict[int, int] = {}
    for index, cell in enumerate(nb.get("cells", ())):
        tags = _tags(cell)
        if ERROR_MARKER_TAG not in tags and INJECTED_TAG not in tags:
            numbers[index] = len(numbers) + 1
    return numbers


def first_error(nb: Mapping[str, Any]) -> CellError | None:
    """The first cell that raised (``sys.exit(0)`` and papermill's banners excepted)."""
    for index, cell in enumerate(nb.get("cells", ())):
        if ERROR_MARKER_TAG in _tags(cell):
            continue
        for output in cell.get("outputs", ()) or ():
            if output.get("output_type") != "error":
                continue
            if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0", "None"):
                continue
            return CellError(
                cell_index=index,
                execution_count=cell.get("execution_count"),
                ename=strip_ansi(str(output.get("ename", ""))),
                evalue=strip_ansi(str(output.get("evalue", ""))),
                traceback=[strip_ansi(line) for line in output.get("traceback") or []],
            )
    return None
