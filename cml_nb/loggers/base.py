"""What every logger reader shares: the context of one run and the series it returns.

A reader looks only at what the notebook wrote *during this run*: files modified after
the run started, MLflow runs that started after it. It returns scalar series keyed by
the logger's own tag names (``train/loss``), each point ``(step, value, wall_time)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

#: One scalar point: ``(step, value, wall_time)``; wall time in seconds since the epoch, or
#: None where the logger keeps none (DVCLive's step files, unless it logs timestamps).
Point = tuple[int, float, float | None]
Series = dict[str, list[Point]]

#: Files whose mtime is this much before the run's start still count: the kernel's file
#: timestamps come from a coarse clock that can lag ``time.time()`` by a tick (~4 ms).
MTIME_SLACK = 0.05


@dataclass
class RunContext:
    """Where and when the notebook ran, and what the user asked to read.

    Attributes:
        cwd: the kernel's working directory.
        started: when the run started, seconds since the epoch.
        tensorboard_dirs: ``--tensorboard DIR`` folders (relative ones to ``cwd``).
        mlflow_experiment: ``--mlflow-experiment``: only this experiment's runs.
        env: the environment the kernel inherited (``MLFLOW_TRACKING_URI``).
    """

    cwd: Path
    started: float
    tensorboard_dirs: list[Path] = field(default_factory=list)
    mlflow_experiment: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def written_during_run(self, path: Path) -> bool:
        """Whether ``path`` was modified after the run started."""
        try:
            return path.stat().st_mtime >= self.started - MTIME_SLACK
        except OSError:
            return False

    def resolve(self, folder: Path) -> Path:
        """``folder`` relative to the kernel's working directory."""
        return folder if folder.is_absolute() else self.cwd / folder


@dataclass
class Found:
    """What one logger read: series, last values, and notes for the run's log.

    ``last`` holds the last value of each scalar; it may name scalars without a series
    (DVCLive's ``metrics.json`` keeps values logged without a step).
    """

    series: Series = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class LoggerReader(Protocol):
    """One metric source a notebook may write to.

    Attributes:
        name: the registry key and ``--loggers`` name (``tensorboard``).
        extra: the cml-nb extra that installs what ``read`` needs.
        module: the module ``read`` imports; when it is missing, found files are
            skipped with a one-line hint instead of being read.
    """

    name: str
    extra: str
    module: str

    def present(self, ctx: RunContext) -> str | None:
        """A short description of what this run wrote for this logger, or None.

        Must be cheap and import nothing heavy: it runs for every logger on every run.
        """

    def read(self, ctx: RunContext) -> Found:
        """The series this run wrote (only called when ``present`` found something)."""


def finite(value: object) -> float | None:
    """``value`` as a finite float, or None (NaN, inf, not a number)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def recent_files(ctx: RunContext, roots: Iterable[Path], pattern: str) -> Iterator[Path]:
    """Files under ``roots`` matching ``pattern`` that this run wrote, each once, sorted."""
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(pattern)):
            key = path.resolve()
            if key not in seen and path.is_file() and ctx.written_during_run(path):
                seen.add(key)
                yield path
