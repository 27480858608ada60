"""`cml-nb run --no-report` against the floor on the same three-cell notebook.

The floor (`floor_run.py`) is a fresh Python process that starts a kernel with
jupyter_client, executes the notebook's code cells and shuts the kernel down: what any
tool that runs a notebook must at least pay. Both run alternately, so machine load
hits both alike. Target: ratio <= 1.25.
Usage: python benchmarks/run_vs_floor.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _timing import compile_package, time_command

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE.parent / "tests" / "notebooks" / "trivial.ipynb"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cml_nb = shutil.which("cml-nb", path=str(Path(sys.executable).parent))
    assert cml_nb, "install cml-nb in this environment"
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        ours = [cml_nb, "run", str(NOTEBOOK), "-o", f"{tmp}/a/out.ipynb", "-p", "x", "2",
                "--no-report", "--no-log-output", "--no-progress"]  # fmt: skip
        floor = [sys.executable, str(HERE / "floor_run.py"), str(NOTEBOOK)]
        time_command(ours)  # warm the file cache for both
        time_command(floor)
        mine, other, ratios = [], [], []
        for _ in range(args.repeat):
            mine.append(time_command(ours))
            other.append(time_command(floor))
            ratios.append(mine[-1] / other[-1])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"cml-nb run --no-report: {statistics.median(mine):.2f} s   floor: "
        f"{statistics.median(other):.2f} s   ratio of medians "
        f"{statistics.median(mine) / statistics.median(other):.2f}x   median of pair ratios "
        f"{statistics.median(ratios):.2f}x (target <= 1.25)"
    )
    print(f"runs: ours {[round(t, 2) for t in mine]}  floor {[round(t, 2) for t in other]}")
    print(f"cpus {os.cpu_count()}, load average at the end {load:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
