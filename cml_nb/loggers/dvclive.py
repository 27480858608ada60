"""DVCLive: ``<dir>/metrics.json`` (last values) and ``<dir>/plots/metrics/**.tsv`` (steps).

DVCLive writes ``live.log_metric("train/loss", v)`` as ``plots/metrics/train/loss.tsv``
(columns ``step`` and ``loss``, plus ``timestamp`` with ``Live(..., timestamp=True)``)
and nests the last values in ``metrics.json`` (``{"train": {"loss": v}, "step": 2}``);
https://dvc.org/doc/dvclive/how-it-works. Its folder is ``dvclive/`` unless the notebook
passes ``Live(dir=...)``: any folder under the kernel's working directory holding a
``plots/metrics`` folder this run wrote counts. Files are plain text, so reading them
needs no package; the ``dvclive`` extra only matters to the notebook itself.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cml_nb.loggers.base import Found, Point, RunContext, finite, recent_files

DEFAULT_DIR = "dvclive"
#: How deep below the working directory a DVCLive folder is looked for.
MAX_DEPTH = 2


class DvcLiveReader:
    """Scalars from the DVCLive folders this run wrote."""

    name = "dvclive"
    extra = "dvclive"
    module = "csv"  # the stdlib reads DVCLive's files: never skipped for a missing package

    def _folders(self, ctx: RunContext) -> list[Path]:
        found: list[Path] = []
        candidates = [ctx.cwd / DEFAULT_DIR]
        for depth in range(1, MAX_DEPTH + 1):
            candidates += sorted(ctx.cwd.glob("/".join(["*"] * depth) + "/plots/metrics"))
        for candidate in candidates:
            folder = candidate.parent.parent if candidate.name == "metrics" else candidate
            if folder in found or not folder.is_dir():
                continue
            summary = folder / "metrics.json"
            steps = list(recent_files(ctx, [folder / "plots" / "metrics"], "*.tsv"))
            if steps or (summary.is_file() and ctx.written_during_run(summary)):
                found.append(folder)
        return found

    def present(self, ctx: RunContext) -> str | None:
        """The DVCLive folders this run wrote, or None."""
        folders = self._folders(ctx)
        if not folders:
            return None
        return "DVCLive folder(s) " + ", ".join(_shown(f, ctx.cwd) for f in folders)

    def read(self, ctx: RunContext) -> Found:
        """Step series from the ``.tsv`` files, last values from ``metrics.json``."""
        found = Found()
        for folder in self._folders(ctx):
            metrics = folder / "plots" / "metrics"
            for path in recent_files(ctx, [metrics], "*.tsv"):
                tag = path.relative_to(metrics).with_suffix("").as_posix()
                try:
                    found.series[tag] = _steps(path)
                except (OSError, ValueError, csv.Error) as exc:
                    found.notes.append(f"dvclive: {_shown(path, ctx.cwd)} unreadable ({exc})")
            found.last.update({t: p[-1][1] for t, p in found.series.items() if p})
            summary = folder / "metrics.json"
            if summary.is_file() and ctx.written_during_run(summary):
                try:
                    data = json.loads(summary.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    found.notes.append(f"dvclive: {_shown(summary, ctx.cwd)} unreadable ({exc})")
                    continue
                if isinstance(data, Mapping):
                    data = {k: v for k, v in data.items() if k != "step"}  # DVCLive's counter
                    found.last.update(_flatten(data))
        return found


def _steps(path: Path) -> list[Point]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    points: list[Point] = []
    for row in rows:
        value_column = next((c for c in row if c not in ("step", "timestamp")), None)
        value = finite(row.get(value_column or "", ""))
        if value is None:
            continue
        step = int(float(row.get("step") or len(points)))
        stamp = finite(row.get("timestamp", ""))
        # DVCLive's timestamps are milliseconds since the epoch.
        points.append((step, value, stamp / 1000 if stamp is not None else None))
    return points


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    # DVCLive nests "train/loss" as {"train": {"loss": ...}}: join the keys back with "/".
    flat: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif not isinstance(value, bool):
            number = finite(value)
            if number is not None:
                flat[f"{prefix}{key}"] = number
    return flat


def _shown(path: Path, cwd: Path) -> str:
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return str(path)
