"""The "Changes" section: a notebook against its version at a base ref, cell by cell.

nbdime (the Jupyter project's notebook differ) aligns the two cell lists, so an
inserted cell shows as one added cell rather than every later cell "modified".
Each modified cell's source becomes a compact unified diff (Markdown cells too);
where the base notebook carries outputs, changed text outputs are diffs as well
and changed images are shown base | head. Only what a reviewer reads is compared:
cell ids, execution counts and metadata are ignored, and the cells papermill
injects or adds (parameters, error banners) are left out of the head.

The section is one :class:`DetailsBlock` of ordinary blocks (plus :class:`DiffBlock`),
so the Markdown renderer folds it, the size budget shortens it like any output and
report.html shows it whole.
"""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError, MissingDependencyError, NotebookReadError
from cml_nb.notebook import ERROR_MARKER_TAG, INJECTED_TAG, joined
from cml_nb.report.model import (
    Block,
    DetailsBlock,
    DiffBlock,
    ImageBlock,
    MarkdownBlock,
    NoteBlock,
    Report,
)
from cml_nb.report.outputs import clean_text

#: Lines of context around each change in the source and output diffs.
CONTEXT_LINES = 2
#: Lines of each cell's source that nbdime aligns cells on (see ``_matchable``).
MATCH_LINES = 20
_IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
_TEXT_MIMES = ("text/plain",)
_GIT_TIMEOUT = 30


@dataclass
class CellChange:
    """One cell that differs: ``kind`` is ``added``, ``removed`` or ``modified``.

    ``number`` is the 1-based position in the head notebook (in the base one for a
    removed cell), as the author counts cells.
    """

    kind: str
    number: int
    cell_type: str
    source_diff: str = ""
    output_diff: str = ""
    images: list[tuple[str | None, str | None]] = field(default_factory=list)


@dataclass
class Changes:
    """Every changed cell of a notebook against its base."""

    cells: list[CellChange] = field(default_factory=list)
    compared_outputs: bool = False

    def count(self, kind: str) -> int:
        """How many cells changed in this way."""
        return sum(1 for c in self.cells if c.kind == kind)

    def summary(self) -> str:
        """``2 cells changed, 1 added, 1 removed`` (or ``no cell changed``)."""
        parts: list[str] = []
        for kind, word in (("modified", "changed"), ("added", "added"), ("removed", "removed")):
            n = self.count(kind)
            if n:
                parts.append(f"{n} {word}" if parts else f"{n} cell{'s' * (n != 1)} {word}")
        return ", ".join(parts) or "no cell changed"


# --- reading the base ---------------------------------------------------------------------------


def read_at_ref(ref: str, path: Path) -> dict[str, Any] | None:
    """The notebook ``path`` as committed at ``ref``, or None when it was not there.

    ``git show --end-of-options REF:./NAME`` runs in the notebook's folder, so the
    path is relative to it (not to the repository root) and a ref that starts with
    ``-`` cannot be taken for an option.

    Raises:
        ConfigError: ``ref`` names no commit of the repository (exit 2).
        NotebookReadError: git is missing, or the file at ``ref`` is not a notebook.
    """
    import json

    folder = path.parent if str(path.parent) else Path(".")
    verify = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
                  folder)  # fmt: skip
    if verify.returncode != 0:
        if _git(["rev-parse", "--git-dir"], folder).returncode != 0:
            raise ConfigError(f"--compare-to {ref}: {path} is not in a git repository")
        raise ConfigError(
            f"--compare-to {ref}: no such commit in the repository of {path} "
            "(fetch it, e.g. actions/checkout with fetch-depth: 0)"
        )
    shown = _git(["show", "--end-of-options", f"{ref}:./{path.name}"], folder)
    if shown.returncode != 0:
        return None  # a notebook new in this change
    try:
        data = json.loads(shown.stdout)
    except json.JSONDecodeError:
        raise NotebookReadError(f"{path} at {ref} is not valid JSON: is it a notebook?") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookReadError(f"{path} at {ref} is not a Jupyter notebook")
    return data


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8",
            errors="replace", timeout=_GIT_TIMEOUT, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise NotebookReadError("--compare-to needs git: install git") from None
    except NotADirectoryError:
        raise NotebookReadError(f"--compare-to: {cwd} is not a folder") from None
    except subprocess.TimeoutExpired:
        raise NotebookReadError(f"git {args[0]} took over {_GIT_TIMEOUT} s in {cwd}") from None


# --- comparing ----------------------------------------------------------------------------------


def _authored_cells(nb: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cells = []
    for cell in nb.get("cells", ()):
        tags = (cell.get("metadata", {}) or {}).get("tags", ()) or ()
        if INJECTED_TAG not in tags and ERROR_MARKER_TAG not in tags:
            cells.append(cell)
    return cells


def _output_text(cell: Mapping[str, Any]) -> str:
    """What a reader sees as text in a cell's outputs, in order."""
    parts = []
    for output in cell.get("outputs", ()) or ():
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(clean_text(joined(output.get("text"))))
        elif kind == "error":
            parts.append(f"{output.get('ename', '')}: {clean_text(str(output.get('evalue', '')))}")
        else:
            data = output.get("data", {}) or {}
            if any(m in data for m in _IMAGE_MIMES):
                continue  # compared as images
            for mime in _TEXT_MIMES:
                if mime in data:
                    parts.append(clean_text(joined(data[mime])))
    return "\n".join(p.rstrip("\n") for p in parts)


def _images(cell: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(mime, payload)`` of each image a cell shows."""
    found = []
    for output in cell.get("outputs", ()) or ():
        data = output.get("data", {}) or {}
        for mime in _IMAGE_MIMES:
            if mime in data:
                found.append((mime, "".join(joined(data[mime]).split())))
                break
    return found


def _comparable(cell: Mapping[str, Any], outputs: bool) -> dict[str, Any]:
    # What nbdime compares: ids, counts and metadata change on every run and mean nothing.
    source = joined(cell.get("source"))
    kept: dict[str, Any] = {"cell_type": cell.get("cell_type", ""), "source": _matchable(source)}
    if cell.get("cell_type") == "code":
        kept["outputs"] = []  # nbdime's cell matcher expects the key on code cells
    if outputs and cell.get("cell_type") == "code":
        # Images by hash: nbdime would otherwise diff megabytes of base64 line by line.
        # Shaped as nbformat outputs, which nbdime's cell matcher reads.
        text = {"output_type": "stream", "name": "stdout", "text": _output_text(cell)}
        images = [
            {"output_type": "display_data", "metadata": {}, "data": {"text/plain": _digest(p)}}
            for _, p in _images(cell)
        ]
        kept["outputs"] = [text, *images]
    return kept


def _matchable(source: str) -> str:
    """What nbdime matches cells on: the first lines, and a hash of the whole source.

    nbdime also diffs matched cells line by line with fuzzy comparisons, quadratic
    in the lines (a 200-line cell with every line changed took 5 s); the diffs shown
    come from difflib instead, so nbdime only needs enough to align and to see a change.
    """
    lines = source.split("\n")
    if len(lines) <= MATCH_LINES:
        return source
    return "\n".join([*lines[:MATCH_LINES], f"#{_digest(source)}"])


def _digest(payload: str) -> str:
    import hashlib

    return hashlib.sha256(payload.encode()).hexdigest()


def _unified(base: str, head: str) -> str:
    lines = difflib.unified_diff(base.splitlines(), head.splitlines(), n=CONTEXT_LINES, lineterm="")
    return "\n".join(line for line in lines if not line.startswith(("---", "+++")))


def _whole(text: str, mark: str) -> str:
    return "\n".join(f"{mark}{line}" for line in text.splitlines())


def _align(
    diff: list[Mapping[str, Any]], n_base: int, n_head: int
) -> list[tuple[int | None, int | None, bool]]:  # noqa: E501
    """``(base index, head index, patched)`` for every cell, from nbdime's cell-list diff.

    nbdime's ops are keyed by base index, in order; at one key an ``addrange`` comes
    before a ``removerange`` or ``patch`` (nbdime.diff_format: sequence diffs are sorted).
    """
    pairs: list[tuple[int | None, int | None, bool]] = []
    b = h = 0
    for op in sorted(diff, key=lambda o: (o["key"], o["op"] != "addrange")):
        while b < op["key"]:
            pairs.append((b, h, False))
            b, h = b + 1, h + 1
        if op["op"] == "addrange":
            for _ in op["valuelist"]:
                pairs.append((None, h, False))
                h += 1
        elif op["op"] == "removerange":
            for _ in range(op["length"]):
                pairs.append((b, None, False))
                b += 1
        elif op["op"] == "patch":
            pairs.append((b, h, True))
            b, h = b + 1, h + 1
    while b < n_base and h < n_head:
        pairs.append((b, h, False))
        b, h = b + 1, h + 1
    return pairs


def compare(base: Mapping[str, Any], head: Mapping[str, Any]) -> Changes:
    """The cells of ``head`` that differ from ``base``.

    Outputs are compared only when the base notebook carries some (a notebook
    committed without outputs says nothing about what its outputs were).

    Raises:
        MissingDependencyError: nbdime is not installed (the ``review`` extra).
    """
    try:
        from nbdime.diffing.notebooks import diff_notebooks
    except ImportError as exc:
        raise MissingDependencyError("--compare-to's Changes section", "review", "nbdime") from exc
    from nbformat import from_dict  # nbdime reads attributes (cell.output_type)

    base_cells, head_cells = _authored_cells(base), _authored_cells(head)
    outputs = any(c.get("outputs") for c in base_cells)
    left = {"cells": [_comparable(c, outputs) for c in base_cells]}
    right = {"cells": [_comparable(c, outputs) for c in head_cells]}
    cell_ops: list[Mapping[str, Any]] = []
    for op in diff_notebooks(from_dict(left), from_dict(right)):  # type: ignore[no-untyped-call]
        if op["key"] == "cells":
            cell_ops = op["diff"]
    changes = Changes(compared_outputs=outputs)
    for b, h, patched in _align(cell_ops, len(base_cells), len(head_cells)):
        if b is None and h is not None:
            cell = head_cells[h]
            changes.cells.append(CellChange(
                "added", h + 1, str(cell.get("cell_type", "")), _whole(joined(cell.get("source")), "+")
            ))  # fmt: skip
        elif h is None and b is not None:
            cell = base_cells[b]
            changes.cells.append(CellChange(
                "removed", b + 1, str(cell.get("cell_type", "")), _whole(joined(cell.get("source")), "-")
            ))  # fmt: skip
        elif patched and b is not None and h is not None:
            changes.cells.append(_modified(base_cells[b], head_cells[h], h + 1, outputs))
    return changes


def _modified(
    base: Mapping[str, Any], head: Mapping[str, Any], number: int, outputs: bool
) -> CellChange:
    change = CellChange("modified", number, str(head.get("cell_type", "")))
    change.source_diff = _unified(joined(base.get("source")), joined(head.get("source")))
    if outputs and head.get("cell_type") == "code":
        change.output_diff = _unified(_output_text(base), _output_text(head))
        old, new = _images(base), _images(head)
        if [p for _, p in old] != [p for _, p in new]:
            for i in range(max(len(old), len(new))):
                pair = (old[i] if i < len(old) else None, new[i] if i < len(new) else None)
                if pair[0] is None or pair[1] is None or pair[0][1] != pair[1][1]:
                    change.images.append((_key(pair[0]), _key(pair[1])))
    return change


def _key(image: tuple[str, str] | None) -> str | None:
    return None if image is None else f"{image[0]};{image[1]}"


# --- the report section -------------------------------------------------------------------------


def _asset(report: Report, key: str | None) -> str | None:
    import base64
    import binascii

    if key is None:
        return None
    mime, payload = key.split(";", 1)
    try:
        raw = (
            payload.encode()
            if mime == "image/svg+xml"
            else base64.b64decode(payload, validate=True)
        )
    except (binascii.Error, ValueError):
        return None
    return report.add_asset(raw, mime).name


_WHAT = {"added": "added", "removed": "removed", "modified": "changed"}


def _cell_blocks(change: CellChange, report: Report) -> list[Block]:
    where = f"Cell {change.number}" + (" of the base" if change.kind == "removed" else "")
    blocks: list[Block] = [MarkdownBlock(
        f"**{where}** ({change.cell_type}) {_WHAT[change.kind]}", role="output"
    )]  # fmt: skip
    if change.source_diff:
        blocks.append(DiffBlock(change.source_diff, label="source"))
    if change.output_diff:
        blocks.append(DiffBlock(change.output_diff, label="output"))
    for old, new in change.images:
        base_name, head_name = _asset(report, old), _asset(report, new)
        if head_name is not None:
            blocks.append(ImageBlock(head_name, f"cell {change.number} image", base=base_name))
        elif base_name is not None:
            blocks.append(NoteBlock(f"An image of cell {change.number} was removed."))
            blocks.append(ImageBlock(base_name, f"cell {change.number} image (base)"))
    if change.kind != "removed":
        for block in blocks:
            block.cell = change.number
    return blocks


def changes_section(
    changes: Changes | None, report: Report, ref: str, notebook: str = ""
) -> DetailsBlock:
    """The folded "Changes" block for the report; images are added to ``report.assets``.

    ``changes`` is None when the notebook did not exist at ``ref``.
    """
    label = f" of {notebook}" if notebook else ""
    if changes is None:
        return DetailsBlock(
            f"Changes{label} against {ref}: new notebook",
            [
                NoteBlock(
                    f"{notebook or 'The notebook'} does not exist at {ref}: every cell is new."
                )
            ],
        )
    blocks: list[Block] = []
    for change in changes.cells:
        blocks.extend(_cell_blocks(change, report))
    if not changes.compared_outputs:
        blocks.append(NoteBlock(f"The notebook at {ref} has no outputs: only sources compared."))
    return DetailsBlock(f"Changes{label} against {ref}: {changes.summary()}", blocks)


def notebook_changes(
    head: Mapping[str, Any],
    path: Path,
    ref: str,
    report: Report,
    label: str = "",
    shown_ref: str | None = None,
) -> DetailsBlock:
    """The Changes block of ``head`` (an executed notebook) against ``path`` at ``ref``.

    ``shown_ref`` names the base for the reader (``main`` rather than its SHA).

    A ref that names no commit gives a section that says so (a shallow CI clone
    should not fail the run).

    Raises:
        NotebookReadError: git is missing, or the file at ``ref`` is not a notebook.
    """
    try:
        base = read_at_ref(ref, path)
    except ConfigError as error:  # like the metrics: no base is a note, not a failed run
        summary = f"Changes{' of ' + label if label else ''} against {shown_ref or ref}"
        return DetailsBlock(f"{summary}: base not found", [NoteBlock(str(error), "warning")])
    changes = compare(base, head) if base is not None else None
    return changes_section(changes, report, shown_ref or ref, label)


__all__: Sequence[str] = [
    "CellChange",
    "Changes",
    "changes_section",
    "compare",
    "notebook_changes",
    "read_at_ref",
]
