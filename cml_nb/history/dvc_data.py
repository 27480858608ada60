"""Which DVC-tracked data changed against the base, for the report (``dvc diff``).

"Which data changed" is what CML users put in their reports with ``dvc diff``. This
asks DVC's Python API, ``dvc.repo.Repo(root).diff(base, None)``: the base commit
against the working tree, which holds the data this run read
(https://dvc.org/doc/command-reference/diff). Hashes come from the ``.dvc`` files and
DVC's cache, so no remote is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cml_nb.report.model import Report

#: DVC's change kinds, in the order the report lists them.
KINDS = ("added", "modified", "renamed", "deleted", "not in cache")
#: Rows shown at most; the rest are counted in the caption.
MAX_ROWS = 50
EXTRA_KEY = "dvc_diff"


@dataclass
class DataChange:
    """One changed path: ``kind`` is one of :data:`KINDS`; hashes shortened, "" if none."""

    path: str
    kind: str
    old: str = ""
    new: str = ""


def uses_dvc(root: Path) -> bool:
    """Whether ``root`` (or a parent) is a DVC repository."""
    return any((folder / ".dvc").is_dir() for folder in (root, *root.parents))


def data_changes(base: str, root: Path) -> list[DataChange]:
    """What ``dvc diff BASE`` lists for the repository holding ``root``.

    Raises:
        MissingDependencyError: DVC is not installed.
        Exception: whatever DVC raises (an unknown revision); the caller notes it.
    """
    try:
        from dvc.repo import Repo
    except ImportError:
        from cml_nb.errors import MissingDependencyError

        raise MissingDependencyError("the DVC data diff", "dvc", "dvc") from None
    with Repo(str(root)) as repo:
        found = repo.diff(base, None)
    return parse_diff(found)


def parse_diff(found: Mapping[str, Any]) -> list[DataChange]:
    """``Repo.diff``'s mapping as a flat, ordered list."""
    changes: list[DataChange] = []
    for kind in KINDS:
        for entry in found.get(kind) or ():
            path, digest = entry.get("path"), entry.get("hash")
            if isinstance(path, Mapping):  # renamed: {"old": a, "new": b}
                path = f"{path.get('old')} → {path.get('new')}"
            old = new = ""
            if isinstance(digest, Mapping):
                old, new = str(digest.get("old") or "")[:8], str(digest.get("new") or "")[:8]
            elif digest:
                new = str(digest)[:8]
            changes.append(DataChange(str(path), kind, old, new))
    return changes


def add_data_changes(
    report: Report, changes: Sequence[DataChange], ref: str, problem: str = ""
) -> None:
    """A "DVC-tracked data" section at the top of the report body (also when none changed)."""
    from dataclasses import asdict

    from cml_nb.report.model import MarkdownBlock, NoteBlock, TableBlock

    blocks: list[Any] = [MarkdownBlock(f"### DVC-tracked data against {ref}", role="markdown")]
    if problem:
        blocks.append(NoteBlock(problem, level="warning"))
    elif not changes:
        blocks.append(NoteBlock(f"No DVC-tracked data changed against {ref}."))
    else:
        rows = [[c.path, c.kind, c.old, c.new] for c in changes[:MAX_ROWS]]
        caption = f"dvc diff {ref}: {len(changes)} path(s) changed"
        blocks.append(
            TableBlock(["Path", "Change", "Old hash", "New hash"], rows, len(changes), caption)
        )
    report.extra[EXTRA_KEY] = {"ref": ref, "changes": [asdict(c) for c in changes],
                               "problem": problem}  # fmt: skip
    report.blocks[0:0] = blocks


def report_data_changes(report: Report, base_commit: str | None, ref: str, root: Path) -> None:
    """Add the section when ``root`` uses DVC; a failing diff becomes a warning note."""
    if not uses_dvc(root):
        return
    if base_commit is None:
        add_data_changes(report, [], ref, f"no DVC data diff: {ref} is not in this clone")
        return
    from cml_nb.errors import CmlNbError

    try:
        changes = data_changes(base_commit, root)
    except CmlNbError as error:
        add_data_changes(report, [], ref, str(error))
        return
    except Exception as exc:  # DVC's own errors are many; the report still gets written
        add_data_changes(report, [], ref, f"dvc diff {ref} failed: {type(exc).__name__}: {exc}")
        return
    add_data_changes(report, changes, ref)
