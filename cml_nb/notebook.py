"""Notebook helpers every stage shares: joined text, ANSI stripping, cell numbers, the failing cell.

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


def joined(text: str | list[str] | None) -> str:
    """Notebook multi-line strings are either a string or a list of lines."""
    if text is None:
        return ""
    return "".join(text) if isinstance(text, list) else str(text)


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


_CELL_TYPES = ("code", "markdown", "raw")
#: Deeper than any real notebook (widget state and Vega specs nest a few dozen levels);
#: every later stage walks notebooks recursively and would overflow Python's stack.
MAX_DEPTH = 200
_LEAVES = frozenset({str, int, float, bool, type(None)})


def too_deep(data: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON-like ``data`` nests deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, Mapping) else value
        for child in children:
            kind = type(child)
            # Only containers are pushed: the numbers of a large figure cost one type check.
            if (
                kind is dict
                or kind is list
                or (kind not in _LEAVES and isinstance(child, Mapping | list))
            ):
                stack.append((child, depth + 1))
    return False


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(line, str) for line in value)
    )


def structure_problem(nb: Any) -> str | None:
    """What makes ``nb`` (parsed JSON, nbformat 4) unusable as a notebook; None when fine.

    Only the shape every stage relies on is checked (a list of cell objects with a
    known type, text sources, output objects, object metadata), not nbformat's
    whole schema: a notebook Jupyter opens runs and reports even when slightly off.
    """
    if not isinstance(nb, Mapping):
        return "it is not a JSON object"
    if too_deep(nb):
        return f"it is nested more than {MAX_DEPTH} levels deep"
    if "cells" not in nb:
        return "it has no 'cells'"
    if not isinstance(nb["cells"], list):
        return "its 'cells' is not a list"
    meta = nb.get("metadata", {})
    if not isinstance(meta, Mapping):
        return "its 'metadata' is not an object"
    for key in ("kernelspec", "language_info", "widgets"):
        if key in meta and not isinstance(meta[key], Mapping):
            return f"its metadata.{key} is not an object"
    for number, cell in enumerate(nb["cells"], start=1):
        problem = _cell_problem(cell)
        if problem:
            return f"cell {number} {problem}"
    return None


def _cell_problem(cell: Any) -> str | None:
    if not isinstance(cell, Mapping):
        return "is not an object"
    kind = cell.get("cell_type")
    if kind not in _CELL_TYPES:
        return f"has cell_type {kind!r}, not code, markdown or raw"
    if not isinstance(cell.get("metadata", {}), Mapping):
        return "has metadata that is not an object"
    if not _is_text(cell.get("source", "")):
        return "has a source that is not text"
    outputs = cell.get("outputs", [])
    if kind == "code" and not isinstance(outputs, list):
        return "has outputs that are not a list"
    if kind == "code" and any(
        not isinstance(o, Mapping) or not isinstance(o.get("output_type"), str) for o in outputs
    ):
        return "has an output that is not an object with an output_type"
    return None
