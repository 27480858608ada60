"""Trials-to-target: a TPE search against a random search on the same notebook, in one run.

The notebook computes loss = (x - 0.3)^2 + (y - 2)^2 over x in [0, 1], y in [0, 4]
(optimum 0 at x = 0.3, y = 2). For each seed, `cml-nb sweep -f search.yaml` runs
--trials trials with method tpe, then with method random (alternately, so machine
load hits both alike), every trial a real kernel; a search's trials-to-target is the
number of the first trial whose loss is at most --target (--trials + 1 when none
reached it). Prints each seed's counts and the medians.
Usage: python benchmarks/sweep_search.py [--seeds N] [--trials T] [--target L] [--jobs J]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

BODY = "import cml_nb\ncml_nb.log_metric('loss', (x - 0.3) ** 2 + (y - 2) ** 2)"
SEARCH = """\
method: {method}
trials: {trials}
seed: {seed}
metric: loss
goal: min
parameters:
  x: {{type: float, low: 0.0, high: 1.0}}
  y: {{type: float, low: 0.0, high: 4.0}}
"""


def write_notebook(path: Path) -> Path:
    nb = new_notebook()
    nb.cells = [new_code_cell("x = 0.0\ny = 0.0", metadata={"tags": ["parameters"]})]
    nb.cells.append(new_code_cell(BODY))
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def trials_to_target(
    cml_nb: str, notebook: Path, tmp: Path, method: str, seed: int, args: argparse.Namespace
) -> tuple[int, float]:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    spec = folder / "search.yaml"
    spec.write_text(SEARCH.format(method=method, trials=args.trials, seed=seed))
    command = [cml_nb, "sweep", str(notebook), "-f", str(spec), "-j", str(args.jobs),
               "-o", str(folder / "sweep"), "--no-cache", "--no-report"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"cml-nb sweep exited {done.returncode}:\n{done.stderr[-3000:]}")
    history = json.loads((folder / "sweep" / "sweep.json").read_text())["search"]["history"]
    for number, value in sorted(history):
        if value <= args.target:
            return number + 1, elapsed
    return args.trials + 1, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--target", type=float, default=0.01)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    cml_nb = shutil.which("cml-nb", path=str(Path(sys.executable).parent)) or "cml-nb"
    with tempfile.TemporaryDirectory(prefix="cml-nb-bench-") as name:
        tmp = Path(name)
        notebook = write_notebook(tmp / "quadratic.ipynb")
        counts: dict[str, list[int]] = {"tpe": [], "random": []}
        seconds: dict[str, float] = {"tpe": 0.0, "random": 0.0}
        for seed in range(args.seeds):
            for method in counts:
                found, elapsed = trials_to_target(cml_nb, notebook, tmp, method, seed, args)
                counts[method].append(found)
                seconds[method] += elapsed
            print(
                f"seed {seed}: tpe {counts['tpe'][-1]}, random {counts['random'][-1]}", flush=True
            )
    tpe, rnd = statistics.median(counts["tpe"]), statistics.median(counts["random"])
    print(
        f"trials to loss <= {args.target:g} (of {args.trials}; {args.trials + 1} = not reached), "
        f"median of {args.seeds} seeds, -j {args.jobs}: tpe {tpe:g}, random {rnd:g} "
        f"({rnd / tpe:.2f}x fewer with tpe); sweep time tpe {seconds['tpe']:.0f} s, "
        f"random {seconds['random']:.0f} s"
    )


if __name__ == "__main__":
    main()
