"""Helpers shared by the benchmarks: interleaved repetitions and medians."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compile_package() -> None:
    """Write cml_nb's bytecode, as ``pip install`` does for the tools compared against.

    In an editable install with ``PYTHONDONTWRITEBYTECODE=1`` (this project's shared
    environment sets it) every ``cml-nb`` process would compile cml_nb from source, about
    0.1 s that no installed copy pays, while the peers' site-packages are compiled.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "cml_nb")], check=True)


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
