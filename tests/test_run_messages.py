"""What `cml-nb run` says on its terminal: errors by name, kernels by language, one numbering.

Runs are real subprocesses (real kernels, the real stderr a CI log shows), so what
jupyter_client, ipykernel and papermill print is in what is checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

v4 = nbformat.v4


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cml_nb", *args],
        capture_output=True, text=True, timeout=180, cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )  # fmt: skip


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, path)
    return path


def parameters_cell(source: str) -> nbformat.NotebookNode:
    cell = v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def test_unknown_magic_names_the_usage_error(tmp_path: Path) -> None:
    nb = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# t"),
            v4.new_code_cell("x = 1"),
            v4.new_code_cell("%nomagic 1"),
        ]
    )
    source = write(nb, tmp_path / "magic.ipynb")
    done = run_cli("run", str(source), "-o", "out/n.ipynb", "--no-report", cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    # Cell 3 as the author counts cells (the Markdown cell is cell 1), In [2] as Jupyter shows.
    assert last.startswith(
        "cml-nb: error: cell 3 (In [2]) raised UsageError: Line magic function `%nomagic` not found"
    ), last
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["error"]["ename"] == "UsageError"
    assert "raised failed" not in done.stderr


@pytest.mark.parametrize(
    ("kernelspec", "language", "package"),
    [
        ({"name": "ir", "display_name": "R", "language": "R"}, "R", "IRkernel"),
        ({"name": "julia-1.10", "display_name": "Julia 1.10", "language": "julia"}, "Julia",
         "IJulia"),
    ],
)  # fmt: skip
def test_missing_kernel_names_its_language_and_package(
    tmp_path: Path, kernelspec: dict[str, str], language: str, package: str
) -> None:
    nb = v4.new_notebook(cells=[v4.new_code_cell("1 + 1")])
    nb.metadata["kernelspec"] = kernelspec
    source = write(nb, tmp_path / "other.ipynb")
    done = run_cli("run", str(source), "-o", "out/n.ipynb", cwd=tmp_path)
    assert done.returncode == 2
    # One line, ours: no jupyter_client traceback or "No such kernel" log before it.
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"the notebook is in {language}" in done.stderr
    assert package in done.stderr
    assert "ipykernel install" not in done.stderr  # that would make a *Python* kernel


@pytest.mark.skipif(sys.platform == "win32", reason="ZeroMQ has no IPC transport on Windows")
def test_local_kernels_run_over_ipc_without_the_tcp_warning(tmp_path: Path) -> None:
    probe = v4.new_code_cell(
        "from ipykernel.kernelapp import IPKernelApp\n"
        "print('transport', IPKernelApp.instance().transport)"
    )
    source = write(v4.new_notebook(cells=[probe]), tmp_path / "t.ipynb")
    private_tmp = tmp_path / "tmp"  # the sockets' folder goes here, and must go away
    private_tmp.mkdir()
    done = run_cli(
        "run", str(source), "-o", "out/n.ipynb", "--no-report", cwd=tmp_path,
        env={"TMPDIR": str(private_tmp)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stderr
    executed = nbformat.read(tmp_path / "out" / "n.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "transport ipc"
    assert list(private_tmp.glob("cml-nb-kernel-*")) == []


def test_log_and_summary_number_cells_as_the_author_does(tmp_path: Path) -> None:
    nb = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# intro"),
            parameters_cell("seconds = 0.0"),
            v4.new_code_cell("import time\ntime.sleep(seconds)\nprint('slept')"),
        ]
    )
    source = write(nb, tmp_path / "n.ipynb")
    done = run_cli(
        "run", str(source), "-o", "out/n.ipynb", "--no-report", "--log-output",
        "-p", "seconds", "0.6", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = done.stderr
    # papermill would say "Executing Cell 4" here (it counts its injected cell).
    assert "Executing Cell" not in log and "Ending Cell" not in log
    assert re.search(r"Executing cell 3\nslept", log), log
    assert "Executing the injected parameters cell" in log
    summary = log[log.index("succeeded:") :].splitlines()
    assert summary[1].split()[:2] == ["cell", "3"], summary  # the slowest one, same number


def test_log_output_shows_results_whole_and_streams_by_line(tmp_path: Path) -> None:
    cells = [
        v4.new_code_cell("6 * 7"),
        v4.new_code_cell("import sys, time\nprint('half', end='', flush=True)\ntime.sleep(0.3)\n"
                         "print(' line')"),
    ]  # fmt: skip
    source = write(v4.new_notebook(cells=cells), tmp_path / "n.ipynb")
    done = run_cli("run", str(source), "-o", "out/n.ipynb", "--no-report", "--log-output",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "42" in lines  # a result's text is its own line, not held for the next output
    assert "half line" in lines  # a line written in two pieces is logged as one


def test_log_output_shows_a_redrawn_bar_as_its_last_frame(tmp_path: Path) -> None:
    loop = (
        "import sys, time\nfrom tqdm import tqdm\n"
        "for _ in tqdm(range(20), file=sys.stdout, mininterval=0, ascii=True, desc='train'):\n"
        "    time.sleep(0.01)\n"
        "print('after')"
    )
    source = write(v4.new_notebook(cells=[v4.new_code_cell(loop)]), tmp_path / "n.ipynb")
    done = run_cli("run", str(source), "-o", "out/n.ipynb", "--no-report", "--log-output",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    bars = [line for line in done.stderr.splitlines() if line.startswith("train:")]
    # One line, the bar's final state, as the terminal showed it: no frame before it.
    assert len(bars) == 1, done.stderr
    assert bars[0].startswith("train: 100%") and "20/20" in bars[0], bars
    assert "\r" not in done.stderr and "train:  50%" not in done.stderr
    assert "after" in done.stderr.splitlines()


def test_log_output_masks_a_secret_before_cursor_codes_overwrite_its_tail(tmp_path: Path) -> None:
    import secrets

    password = "pw-" + secrets.token_hex(12)
    cells = [
        parameters_cell("db_password = ''"),
        # The tail redrawn over: the terminal shows the password's head, which no mask matches.
        v4.new_code_cell("print(db_password + '\\x1b[4D----')"),
    ]
    source = write(v4.new_notebook(cells=cells), tmp_path / "n.ipynb")
    done = run_cli("run", str(source), "-o", "out/n.ipynb", "--no-report", "--log-output",
                   "-p", "db_password", password, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert password[:10] not in done.stderr, done.stderr
    assert "----" in done.stderr.splitlines()  # the mask is drawn over as the password was
