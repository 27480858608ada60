"""Helpers shared by the benchmarks: interleaved repetitions and medians."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence


def time_command(args: Sequence[str], cwd: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, cwd=cwd, capture_output=True)
    return time.perf_counter() - start


def compare(
    ours: Sequence[str], theirs: Sequence[str], repeat: int, cwd: str | None = None
) -> tuple[float, float]:
    """Median seconds of each command, run alternately so load affects both alike."""
    mine, other = [], []
    for _ in range(repeat):
        mine.append(time_command(ours, cwd))
        other.append(time_command(theirs, cwd))
    return statistics.median(mine), statistics.median(other)
