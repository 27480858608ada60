"""The floor for one run: a fresh Python process that starts a kernel, runs the cells, stops it.

Nothing else: no parameters, no notebook written, no record. `run_vs_floor.py` times
`cml-nb run --no-report` against this script on the same notebook.
Usage: python benchmarks/floor_run.py NOTEBOOK.ipynb
"""

from __future__ import annotations

import json
import sys

from jupyter_client.manager import start_new_kernel


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        cells = [c for c in json.load(handle)["cells"] if c["cell_type"] == "code"]
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        for cell in cells:
            source = cell["source"]
            reply = kc.execute_interactive(
                "".join(source) if isinstance(source, list) else source, output_hook=lambda m: None
            )
            if reply["content"]["status"] != "ok":
                return 1
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
