"""What reading the loggers adds to `cml-nb run`: the same notebook with --loggers none vs all.

The notebook logs 3 scalars x 50 steps to TensorBoard (tensorboardX), DVCLive and MLflow
(a local sqlite store, created before timing so MLflow's one-off schema set-up is not
counted). Each run gets a fresh folder; runs alternate so machine load hits both alike.
Prints the median wall time of each, their difference, and the median of the reading
time the run records itself (run.json's loggers.seconds), which kernel start-up noise
does not blur; and the same in-record time for a notebook that logs to none of them
(what every other run pays: a few directory scans).

Usage: python benchmarks/loggers_overhead.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from _timing import time_command

STEPS = 50
LOGGING = f"""
import mlflow
from dvclive import Live
from tensorboardX import SummaryWriter
mlflow.set_tracking_uri("sqlite:///mlflow.db")
writer = SummaryWriter("runs/bench")
with mlflow.start_run(), Live(save_dvc_exp=False) as live:
    for step in range({STEPS}):
        values = {{"train/loss": 1 / (step + 1), "train/acc": step / {STEPS}, "val/loss": 2 / (step + 1)}}
        for name, value in values.items():
            writer.add_scalar(name, value, step)
            live.log_metric(name, value)
        mlflow.log_metrics(values, step=step)
        live.next_step()
writer.close()
"""


def notebook(folder: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source)]
    path = folder / "bench.ipynb"
    nbformat.write(nb, path)
    return path


def run(
    cml_nb: str, template: Path, loggers: str, index: int, source: str
) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one run in a fresh folder, and run.json's ``loggers`` entry."""
    folder = template.parent / f"{loggers}-{index}"
    folder.mkdir()
    if (template / "mlflow.db").exists():
        shutil.copy(template / "mlflow.db", folder / "mlflow.db")
    path = notebook(folder, source)
    wall = time_command([cml_nb, "run", str(path), "-o", str(folder / "out" / "bench.ipynb"),
                         "--loggers", loggers, "--no-report", "--no-log-output", "--no-progress"])  # fmt: skip
    record = json.loads((folder / "out" / "run.json").read_text())
    return wall, dict(record.get("loggers") or {})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cml_nb = shutil.which("cml-nb", path=Path(sys.executable).parent)
    assert cml_nb, "install cml-nb in this environment"
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        # MLflow's schema set-up (~10 s) happens once here, not in the timed runs.
        subprocess.run([sys.executable, "-c", "import mlflow; mlflow.set_tracking_uri("
                        "'sqlite:///mlflow.db'); mlflow.search_experiments()"],
                       cwd=template, check=True, capture_output=True)  # fmt: skip
        run(cml_nb, template, "none", 99, LOGGING)  # warm the file cache and imports
        walls: dict[str, list[float]] = {"none": [], "all": []}
        reads: list[dict[str, Any]] = []
        for index in range(args.repeat):
            for loggers in ("none", "all"):
                wall, read = run(cml_nb, template, loggers, index, LOGGING)
                walls[loggers].append(wall)
                if loggers == "all":
                    reads.append(read)
        (template / "mlflow.db").unlink()
        idle = [run(cml_nb, template, "all", 100 + i, "x = 1")[1]["seconds"]
                for i in range(args.repeat)]  # fmt: skip
    none, every = statistics.median(walls["none"]), statistics.median(walls["all"])
    print(f"notebook logging 3 scalars x {STEPS} steps to TensorBoard, DVCLive and MLflow, "
          f"median of {args.repeat}:")  # fmt: skip
    print(f"  --loggers none: {none:.2f} s   --loggers all: {every:.2f} s   "
          f"difference {every - none:+.2f} s ({(every - none) / none:+.0%})")  # fmt: skip
    total = statistics.median(r["seconds"] for r in reads)
    print(f"  reading time recorded in run.json (loggers.seconds): {total:.3f} s, of which")
    for name in reads[0].get("timings", {}):
        each = statistics.median(r["timings"][name] for r in reads)
        print(f"    {name:<12} {each:.3f} s")
    idle_ms = statistics.median(idle) * 1000
    print(f"notebook logging to none of them, --loggers all: {idle_ms:.1f} ms read")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
