"""What ``sweep.json`` holds: the sweep's runs and where they were written.

The data model sits apart from ``runner`` so that the comparison report (``compare``)
and ``merge`` can read a sweep without importing the code that runs one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError
from cml_nb.records import SUCCEEDED, write_atomic

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
REPORT_DIR = "report"
SWEEP_VERSION = 1
NOT_RUN = "not_run"
#: A search trial its pruner stopped early (on purpose: not a failure).
PRUNED = "pruned"


@dataclass
class RunEntry:
    """One run as ``sweep.json`` lists it.

    Attributes:
        name: the folder name under ``runs/``.
        index: position in the whole space (shards keep it, so merges keep the order).
        parameters: the injected parameters (secrets masked).
        status: a ``RunRecord`` status, or ``not_run`` when the sweep stopped first.
        metrics: last value of each metric.
        message: the failure, in one line.
        duration: seconds the run took.
        cached: whether the run was reused from the cache instead of executed.
        key: the cache key.
    """

    name: str
    index: int
    parameters: dict[str, Any]
    status: str = NOT_RUN
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    duration: float = 0.0
    cached: bool = False
    key: str = ""

    @property
    def succeeded(self) -> bool:
        """Whether the run finished without error."""
        return self.status == SUCCEEDED


@dataclass
class SweepResult:
    """What ``sweep.json`` holds, and where the sweep wrote things."""

    folder: str
    notebook: str
    kernel: str
    swept: list[str]
    total: int
    space_id: str
    runs: list[RunEntry] = field(default_factory=list)
    metric: str | None = None
    goal: str = "max"
    shards: list[list[int]] = field(default_factory=list)
    #: A search sweep's summary (method, best trial, importances, pruned); empty otherwise.
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[RunEntry]:
        """Runs that did not succeed (not run ones included; pruned ones are not failures)."""
        return [r for r in self.runs if not r.succeeded and r.status != PRUNED]

    @property
    def pruned(self) -> list[RunEntry]:
        """Search trials that their pruner stopped early."""
        return [r for r in self.runs if r.status == PRUNED]

    @property
    def executed(self) -> int:
        """How many runs this invocation actually executed."""
        return sum(1 for r in self.runs if not r.cached and r.status != NOT_RUN)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written as ``sweep.json``."""
        data = asdict(self)
        data["version"] = SWEEP_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepResult:
        """Rebuild from ``to_dict`` output (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        entry_fields = RunEntry.__dataclass_fields__
        known["runs"] = [
            RunEntry(**{k: v for k, v in r.items() if k in entry_fields})
            for r in data.get("runs", [])
        ]
        return cls(**known)

    def write(self) -> Path:
        """Write ``sweep.json`` into the sweep folder; returns its path."""
        path = Path(self.folder) / SWEEP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL temporary under a random name: a planted "sweep.json.tmp" symlink is
        # never followed.
        write_atomic(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> SweepResult:
        """Read ``sweep.json`` from a sweep folder (or the file itself)."""
        path = Path(folder)
        path = path / SWEEP_FILE if path.is_dir() else path
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"{path} not found: is {folder} a sweep folder (cml-nb sweep -o)?"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        result = cls.from_dict(data)
        result.folder = str(path.parent)
        return result

    def run_folder(self, entry: RunEntry) -> Path:
        """The folder of one run."""
        return Path(self.folder) / RUNS_DIR / entry.name

    def ranked(self) -> list[RunEntry]:
        """Succeeded runs best first by ``metric`` and ``goal`` (space order without a metric)."""
        done = [r for r in self.runs if r.succeeded]
        if not self.metric:
            return done
        scored = [r for r in done if isinstance(r.metrics.get(self.metric), int | float)]
        unscored = [r for r in done if r not in scored]
        metric = self.metric
        scored.sort(key=lambda r: float(r.metrics[metric]), reverse=self.goal == "max")
        return scored + unscored

    def best(self) -> RunEntry | None:
        """The best run by ``metric`` and ``goal``, if any run logged it."""
        ranked = self.ranked()
        if not ranked or not self.metric or self.metric not in ranked[0].metrics:
            return None
        return ranked[0]
