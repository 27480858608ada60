"""Bad input and a full disk under `cml-nb run`: one line, a documented exit code, no stale record.

The full disk is a real one for the process: ``RLIMIT_FSIZE`` caps the size of any
file it writes (``SIGXFSZ`` ignored, so writes fail with ``EFBIG`` as they fail with
``ENOSPC`` on a full filesystem), no root or mount needed.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cml_nb.errors import OutputWriteError
from cml_nb.records import METRICS_NAME, RUN_RECORD_NAME, RunRecord

v4 = nbformat.v4


def run_cli(
    *args: str, cwd: Path, max_file_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # runs in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        [sys.executable, "-m", "cml_nb", *args],
        capture_output=True, text=True, timeout=180, cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=limit if max_file_bytes else None,
    )  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("cml-nb: error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_nbformat_3_notebook_runs(tmp_path: Path) -> None:
    v3 = {
        "metadata": {"name": "old"}, "nbformat": 3, "nbformat_minor": 0,
        "worksheets": [{"metadata": {}, "cells": [
            {"cell_type": "markdown", "source": "# From 2014", "metadata": {}},
            {"cell_type": "code", "input": "print('v3 ran')", "language": "python",
             "outputs": [], "metadata": {}, "collapsed": False},
        ]}],
    }  # fmt: skip
    (tmp_path / "old.ipynb").write_text(json.dumps(v3))
    done = run_cli("run", "old.ipynb", "-o", "out/old.ipynb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    executed = nbformat.read(tmp_path / "out" / "old.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "v3 ran\n"
    assert "v3 ran" in (tmp_path / "out" / "report" / "report.md").read_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"cells": ' + "[" * 50_000 + "]" * 50_000 + ', "nbformat": 4, "nbformat_minor": 5}',
         "nested too deeply"),
        ('{"cells": {"a": 1}, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
         "its 'cells' is not a list"),
        ('{"cells": ["x"], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
         "cell 1 is not an object"),
        ('{"cells": [{"cell_type": "code", "source": 1, "metadata": {}, "outputs": []}],'
         ' "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
         "cell 1 has a source that is not text"),
        ('{"cells": [], "metadata": {"kernelspec": "python3"}, "nbformat": 4, "nbformat_minor": 5}',
         "its metadata.kernelspec is not an object"),
        ('{"cells": [], "metadata": {}, "nbformat": 5, "nbformat_minor": 0}', "nbformat 5"),
        ("[1, 2]", "no nbformat version"),
        ('{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {"x": '
         + '{"a": ' * 300 + "1" + "}" * 300 + "}}", "nested more than 200 levels deep"),
    ],
)  # fmt: skip
def test_malformed_notebook_is_one_line_exit_3(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "bad.ipynb").write_text(text)
    done = run_cli("run", "bad.ipynb", "-o", "out/n.ipynb", cwd=tmp_path)
    assert done.returncode == 3
    assert expected in one_line_error(done)


def test_output_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    deep = v4.new_code_cell(
        "d = cur = {}\nfor _ in range(700):\n    cur['a'] = {}\n    cur = cur['a']\n"
        "from IPython.display import JSON, display\ndisplay(JSON(d))"
    )
    nbformat.write(v4.new_notebook(cells=[deep]), tmp_path / "deep.ipynb")
    done = run_cli("run", "deep.ipynb", "-o", "out/n.ipynb", cwd=tmp_path)
    assert done.returncode == 1
    assert "cell 1 (In [1]) raised RecursionError" in one_line_error(done)
    assert (tmp_path / "out" / "run.json").exists()  # and the record says so


def test_full_disk_leaves_no_record_that_looks_fresh(tmp_path: Path) -> None:
    params = v4.new_code_cell("size = 10")
    params.metadata["tags"] = ["parameters"]
    cells = [params, v4.new_code_cell("print('x' * size)\nfrom cml_nb import log_metric\n"
                                      "log_metric('size', size)")]  # fmt: skip
    nbformat.write(v4.new_notebook(cells=cells), tmp_path / "n.ipynb")
    first = run_cli("run", "n.ipynb", "-o", "out/n.ipynb", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    assert json.loads((out / RUN_RECORD_NAME).read_text())["metrics"] == {"size": 10}

    # The second run's notebook (200 kB of output) no longer fits on the "disk".
    done = run_cli(
        "run", "n.ipynb", "-o", "out/n.ipynb", "-p", "size", "200000",
        cwd=tmp_path, max_file_bytes=100_000,
    )  # fmt: skip
    assert done.returncode == 4
    assert "cannot write the executed notebook" in one_line_error(done)
    # Neither the old record, nor the old notebook, nor the old report is left to pass
    # for this run's (the report's images may stay: nothing points at them).
    assert sorted(p.name for p in out.iterdir()) == ["report"]
    assert not {"report.json", "report.md"} & {p.name for p in (out / "report").iterdir()}


def test_record_write_failure_removes_the_stale_record(tmp_path: Path) -> None:
    # Library level: run.json itself does not fit, after the notebook did.
    folder = tmp_path / "run"
    RunRecord("n.ipynb", "n.ipynb", "succeeded", metrics={"acc": 0.5}).write(folder)
    script = f"""
import resource, signal, sys
from pathlib import Path
from cml_nb.errors import OutputWriteError
from cml_nb.records import RunRecord
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
big = {{"m%d" % i: i for i in range(500)}}
try:
    RunRecord("n.ipynb", "n.ipynb", "failed", metrics=big).write(Path({str(folder)!r}))
except OutputWriteError as error:
    print(error)
    sys.exit(4)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 4, done.stderr
    assert "no run.json is left there" in done.stdout
    assert not (folder / RUN_RECORD_NAME).exists() and not (folder / METRICS_NAME).exists()
    assert [p.name for p in folder.iterdir()] == []  # no temporary files either
    assert issubclass(OutputWriteError, Exception) and OutputWriteError.exit_code == 4


def test_record_files_keep_the_usual_permissions(tmp_path: Path) -> None:
    path = RunRecord("n.ipynb", "n.ipynb", "succeeded").write(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
