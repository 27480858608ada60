"""`cml-nb report` against `jupyter nbconvert --to markdown` on the same executed notebook.

Generates a 104-cell notebook (20 matplotlib PNGs, 20 DataFrames, 64 Markdown and
print cells), executes it once with `cml-nb run --no-report`, then times both
converters alternately in this environment (JupyterLab installed: nbconvert pays
for the Jupyter server stack's imports and jsonschema format checks). Also times
the conversion alone, in process, on the already-started interpreter.
Target: ratio >= 15x (issue 19; was 5x); conversion < 0.1 s.
Usage: python benchmarks/report_vs_nbconvert.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _timing import compare, compile_package, time_command

SETUP = """import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
%matplotlib inline
from IPython.display import display
rng = np.random.default_rng(0)"""


def build_notebook(path: Path) -> int:
    """Write the benchmark notebook; returns its cell count."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [new_code_cell(SETUP)]
    for i in range(20):
        cells.append(new_markdown_cell(f"## Section {i}\nA short paragraph about step {i}."))
        cells.append(
            new_code_cell(
                f"fig, ax = plt.subplots(figsize=(4, 3))\nax.plot(rng.random(50))\n"
                f"ax.set_title('plot {i}')\ndisplay(fig)\nplt.close(fig)"
            )
        )
        cells.append(new_code_cell(f"pd.DataFrame(rng.random((8, 4)), columns=list('abcd')) * {i}"))
        cells.append(new_code_cell(f"print('step {i}:', rng.random())"))
        cells.append(new_markdown_cell(f"Result of step {i} is above."))
    cells.append(new_code_cell("print('done')"))
    cells.append(new_markdown_cell("## The end"))
    cells.append(new_code_cell("rng.random(3)"))
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=cells, metadata=meta), path)
    return len(cells)


def conversion_seconds(executed: Path, out: Path, repeat: int) -> float:
    """Best in-process time of build_report + write_bundle (imports already paid)."""
    from cml_nb.report import build_report, write_bundle

    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        write_bundle(build_report([executed]), out)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    cml_nb, jupyter = shutil.which("cml-nb", path=bindir), shutil.which("jupyter", path=bindir)
    assert cml_nb and jupyter, "install cml-nb and nbconvert in this environment"
    lab = shutil.which("jupyter-lab", path=bindir)
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        source, executed = Path(tmp) / "bench.ipynb", Path(tmp) / "run" / "bench.ipynb"
        cells = build_notebook(source)
        time_command([cml_nb, "run", str(source), "-o", str(executed), "--no-report",
                      "--no-log-output", "--no-progress"])  # fmt: skip
        ours = [cml_nb, "report", str(executed), "-o", f"{tmp}/ours"]
        theirs = [jupyter, "nbconvert", "--to", "markdown", str(executed),
                  "--output-dir", f"{tmp}/theirs"]  # fmt: skip
        time_command(ours)  # warm the file cache for both
        time_command(theirs)
        mine, other = compare(ours, theirs, args.repeat)
        convert = conversion_seconds(executed, Path(tmp) / "inproc", args.repeat)
    print(f"notebook: {cells} cells, 20 PNGs, 20 DataFrames; JupyterLab installed: {bool(lab)}")
    print(
        f"cml-nb report: {mine:.3f} s   nbconvert --to markdown: {other:.3f} s   "
        f"ratio {other / mine:.1f}x faster (target >= 15x)"
    )
    print(f"conversion alone (in process): {convert:.3f} s (target < 0.1 s)")
    print(f"cpus {os.cpu_count()}, load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
