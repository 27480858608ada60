"""The run record: what one execution of a notebook produced, as ``run.json``.

``RunRecord`` is the typed hand-off between ``execute`` and every later stage
(report, publish, sweep, history). ``metrics.json`` holds just the flat metrics.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cml_nb.errors import OutputWriteError

if TYPE_CHECKING:
    from cml_nb.secrets import Scrubber

RUN_RECORD_NAME = "run.json"
METRICS_NAME = "metrics.json"

#: Values of ``RunRecord.status``.
SUCCEEDED, FAILED, TIMEOUT, KERNEL_DIED, INTERRUPTED = (
    "succeeded",
    "failed",
    "timeout",
    "kernel_died",
    "interrupted",
)


@dataclass
class CellError:
    """The first failing cell: where and what (traceback without ANSI codes)."""

    cell_index: int
    execution_count: int | None
    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)


@dataclass
class CellTiming:
    """One code cell's execution time in seconds (None when it never ran).

    ``cell_index`` counts the executed notebook's cells from 0 (papermill's added
    cells included); ``number`` is the cell's 1-based number in the author's
    notebook, the one every message shows (None for the injected parameters cell).
    """

    cell_index: int
    execution_count: int | None
    duration: float | None
    status: str
    number: int | None = None


@dataclass
class RunRecord:
    """Everything about one run except the notebook itself.

    Attributes:
        notebook: the input notebook path, as given.
        output: the executed notebook's path.
        status: ``succeeded``, ``failed``, ``timeout``, ``kernel_died`` or ``interrupted``.
        parameters: parameters as injected (secret-looking ones masked as ``***``).
        metrics: last value of each metric the notebook logged.
        history: stepped metrics, ``{name: [{"step", "value"}]}``.
        logged_params: parameters the notebook logged with ``log_param``.
        error: the first failing cell, when the run failed.
        message: a one-line summary of the failure, when it failed.
        cells: per code cell timings.
        duration: total seconds, kernel start included.
        started_at / finished_at: ISO 8601 UTC timestamps.
        kernel: the kernel name used.
        environment: Python, platform, packages, git, GPUs and CI provider.
        series: the full series of each scalar the notebook's loggers wrote (TensorBoard,
            DVCLive, MLflow), ``{tag: [{"step", "value", "wall_time"}]}``.
        metric_sources: which source each metric came from (``cml_nb`` for
            ``log_metric``, else the logger's name).
        loggers: the loggers read, their notes and the seconds reading took.
    """

    notebook: str
    output: str
    status: str
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logged_params: dict[str, Any] = field(default_factory=dict)
    error: CellError | None = None
    message: str = ""
    cells: list[CellTiming] = field(default_factory=list)
    duration: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    kernel: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metric_sources: dict[str, str] = field(default_factory=dict)
    loggers: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """Whether every cell ran without error."""
        return self.status == SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the format of ``run.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Rebuild a record from ``to_dict`` output (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("error"):
            known["error"] = CellError(**known["error"])
        known["cells"] = [CellTiming(**c) for c in known.get("cells", [])]
        return cls(**known)

    def write(self, folder: Path, scrubber: Scrubber | None = None) -> Path:
        """Write ``run.json`` and ``metrics.json`` into ``folder``; returns run.json's path.

        The previous run's files go first and each new one lands whole (a temporary
        file renamed into place), so a write that fails (a full disk) leaves no
        record rather than an old one that looks like this run's. ``scrubber``
        masks every string of both files.

        Raises:
            OutputWriteError: the folder cannot be written (nothing stale is left).
        """
        record, metrics = self.to_dict(), dict(self.metrics)
        if scrubber is not None:
            record, metrics = scrubber.scrub_data(record), scrubber.scrub_data(metrics)
        path = folder / RUN_RECORD_NAME
        try:
            folder.mkdir(parents=True, exist_ok=True)
            discard_stale(folder)
            # metrics.json first: run.json, the record later stages trust, comes last.
            write_atomic(folder / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
            write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
        except OSError as exc:
            discard_stale(folder)
            raise OutputWriteError(
                f"cannot write the run record in {folder}: {exc.strerror or exc} "
                "(no run.json is left there, so no later step reads an old one as this run's)"
            ) from None
        return path

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """Read a ``run.json`` (or the folder holding one)."""
        if path.is_dir():
            path = path / RUN_RECORD_NAME
        return cls.from_dict(json.loads(path.read_text()))


def discard_stale(folder: Path) -> None:
    """Remove a previous run's ``run.json`` and ``metrics.json`` from ``folder``."""
    for name in (RUN_RECORD_NAME, METRICS_NAME):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()


@functools.cache
def _umask() -> int:
    current = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(current)
    return current


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` (str or bytes) to ``path`` whole or not at all (temp file, fsync, rename).

    The temporary file is created with ``O_EXCL`` under a random name in the same
    folder, so a symlink planted in a shared folder is never followed.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; keep what open() would make
        if isinstance(text, str):
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            with os.fdopen(fd, "wb") as binary:
                binary.write(text)
                binary.flush()
                os.fsync(binary.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
