"""report.md and report.html of a 2,000-image notebook, against nbconvert --to markdown / html.

Generates an executed-looking notebook of N cells (default 2,000), each a display_data
of an incompressible PNG (~18 KB of noise, so the file is ~50 MB like a long training
notebook's), plus a Markdown cell every 20. Times, as separate processes in one run,
alternating so that load affects all alike (median of --repeat, at least 5):

- ``cml-nb report NB -o DIR`` (writes report.md, report.html, assets/ and report.json);
- ``jupyter nbconvert --to markdown`` and ``jupyter nbconvert --to html``;

then, in process (imports paid), ``build_report`` and each renderer alone: ``to_markdown``
(report.md) and ``to_html`` (report.html), so the two formats are compared one by one.
Goal (issue 13, item 8): report.html linear in the images, faster than nbconvert.
Usage: python benchmarks/report_images_vs_nbconvert.py [--images 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from _timing import time_command


def noise_png(seed: int, width: int = 96, height: int = 64) -> bytes:
    """A valid RGB PNG of pseudo-random pixels (incompressible, ~18 KB)."""
    pixels = random.Random(seed).randbytes(width * 3 * height)
    stride = width * 3
    rows = [b"\x00" + pixels[r * stride : (r + 1) * stride] for r in range(height)]  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 1))
        + chunk(b"IEND", b"")
    )


def build_notebook(path: Path, images: int) -> int:
    """Write the notebook (nbformat 4 JSON); returns its size in bytes."""
    cells = []
    for i in range(images):
        if i % 20 == 0:
            cells.append({"cell_type": "markdown", "id": f"m{i}", "metadata": {},
                          "source": f"## Epoch {i // 20}\nPlots of this epoch."})  # fmt: skip
        png = base64.b64encode(noise_png(i)).decode()
        cells.append({
            "cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": i + 1,
            "source": f"plot({i})",
            "outputs": [{"output_type": "display_data", "metadata": {},
                         "data": {"image/png": png, "text/plain": "<Figure size 96x64>"}}],
        })  # fmt: skip
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path.stat().st_size


def median_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    repeat = max(5, args.repeat)
    bindir = Path(sys.executable).parent
    cml_nb, jupyter = shutil.which("cml-nb", path=bindir), shutil.which("jupyter", path=bindir)
    assert cml_nb and jupyter, "install cml-nb and nbconvert in this environment"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CML_NB_")}
    os.environ.clear()
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        nb = Path(tmp) / "images.ipynb"
        size = build_notebook(nb, args.images)
        commands = {
            "cml-nb report (md + html + assets)": [cml_nb, "report", str(nb), "-o", f"{tmp}/ours"],
            "nbconvert --to markdown": [jupyter, "nbconvert", "--to", "markdown", str(nb),
                                        "--output-dir", f"{tmp}/md"],
            "nbconvert --to html": [jupyter, "nbconvert", "--to", "html", str(nb),
                                    "--output-dir", f"{tmp}/html"],
        }  # fmt: skip
        for command in commands.values():  # warm the file cache for all
            time_command(command)
        runs: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):
            for name, command in commands.items():
                runs[name].append(time_command(command))
        wall = {name: statistics.median(times) for name, times in runs.items()}

        from cml_nb.report import build_report, to_html, to_markdown

        report = build_report([nb])
        build = median_of(lambda: build_report([nb]), repeat)
        md = median_of(lambda: to_markdown(report, max_chars=None), repeat)
        page = median_of(lambda: to_html(report), repeat)
    print(f"notebook: {args.images} PNG images, {size / 1e6:.1f} MB; median of {repeat} runs")
    for name, seconds in wall.items():
        print(f"  {name:38s} {seconds:7.2f} s")
    ours = wall["cml-nb report (md + html + assets)"]
    print(f"  ratio vs nbconvert --to markdown: {wall['nbconvert --to markdown'] / ours:.1f}x, "
          f"vs --to html: {wall['nbconvert --to html'] / ours:.1f}x "
          "(cml-nb writes both formats in its one run)")  # fmt: skip
    print(
        f"in process: build_report {build:.3f} s, to_markdown (report.md) {md * 1000:.1f} ms, "
        f"to_html (report.html) {page:.3f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
