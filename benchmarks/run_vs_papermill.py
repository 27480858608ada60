"""`cml-nb run` against `papermill` on the same trivial notebook, and `cml-nb --help`.

Targets: run ratio <= 1.0 (no overhead of our own); `cml-nb --help` under 0.25 s.
Usage: python benchmarks/run_vs_papermill.py [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _timing import compare, compile_package, time_command

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "tests" / "notebooks" / "trivial.ipynb"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    cml_nb, papermill = shutil.which("cml-nb", path=bindir), shutil.which("papermill", path=bindir)
    assert cml_nb and papermill, "install cml-nb and papermill in this environment"
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        ours = [cml_nb, "run", str(NOTEBOOK), "-o", f"{tmp}/a/out.ipynb", "-p", "x", "2",
                "--no-log-output", "--no-progress"]  # fmt: skip
        theirs = [papermill, str(NOTEBOOK), f"{tmp}/b.ipynb", "-p", "x", "2", "--no-progress-bar"]
        time_command(ours)  # warm the file cache for both
        time_command(theirs)
        mine, other = compare(ours, theirs, args.repeat)
    helps = sorted(time_command([cml_nb, "--help"]) for _ in range(args.repeat))
    help_median = helps[len(helps) // 2]
    print(
        f"cml-nb run: {mine:.2f} s   papermill: {other:.2f} s   ratio {mine / other:.2f}x (target <= 1.0)"
    )
    print(f"cml-nb --help: {help_median:.3f} s (target < 0.25 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
