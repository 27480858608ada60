"""An 8-configuration `cml-nb sweep -j 2` against a sequential loop of `papermill` calls.

Both execute the same trivial notebook with x = 1..8, in the same run, alternately
(so machine load hits both alike); each sweep starts with an empty cache, so every
run really executes. Target: ratio >= 10 (papermill loop time / sweep time; issue 19).
Usage: python benchmarks/sweep_vs_papermill.py [--repeat N] [--jobs J]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import compile_package

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "tests" / "notebooks" / "trivial.ipynb"
VALUES = range(1, 9)


def run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}")


def sweep(cml_nb: str, tmp: Path, jobs: int) -> float:
    out = Path(tempfile.mkdtemp(dir=tmp))
    args = [cml_nb, "sweep", str(NOTEBOOK), "-g", "x=" + ",".join(map(str, VALUES)),
            "-j", str(jobs), "-o", str(out / "sweep"), "--cache-dir", str(out / "cache")]  # fmt: skip
    start = time.perf_counter()
    run(args)
    return time.perf_counter() - start


def papermill_loop(papermill: str, tmp: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=tmp))
    start = time.perf_counter()
    for x in VALUES:
        args = [papermill, str(NOTEBOOK), str(out / f"x{x}.ipynb"), "-p", "x", str(x),
                "--no-progress-bar"]  # fmt: skip
        run(args)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    cml_nb, papermill = shutil.which("cml-nb", path=bindir), shutil.which("papermill", path=bindir)
    assert cml_nb and papermill, "install cml-nb and papermill in this environment"
    ours, theirs = [], []
    compile_package()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        sweep(cml_nb, tmp, args.jobs)  # warm the file cache for both
        papermill_loop(papermill, tmp)
        for _ in range(args.repeat):
            ours.append(sweep(cml_nb, tmp, args.jobs))
            theirs.append(papermill_loop(papermill, tmp))
    mine, other = statistics.median(ours), statistics.median(theirs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"cml-nb sweep -j {args.jobs} (8 runs): {mine:.2f} s   papermill loop (8 runs): "
        f"{other:.2f} s   ratio {other / mine:.2f}x faster (target >= 10)"
    )
    print(f"runs: sweep {[round(t, 2) for t in ours]}  papermill {[round(t, 2) for t in theirs]}")
    print(f"cpus {os.cpu_count()}, load average at the end {load:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
