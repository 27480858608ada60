"""`cml-nb run` end to end: real kernels, every documented exit code, nothing lost."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from cml_nb.cli import main

NOTEBOOKS = Path(__file__).parent / "notebooks"


def cml_nb(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def record(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def test_success_writes_notebook_record_and_metrics(tmp_path: Path) -> None:
    out = tmp_path / "out" / "nb.ipynb"
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "emits_metrics.ipynb"), "-o", str(out), "-p", "lr", "0.25",
        "-p", "epochs", "2",
    )  # fmt: skip
    assert code == 0, output
    run = record(out.parent)
    assert run["status"] == "succeeded"
    assert run["parameters"]["lr"] == 0.25 and run["parameters"]["epochs"] == 2
    assert run["metrics"] == {"loss": 0.5, "accuracy": 0.75, "epochs_run": 2}
    assert run["history"]["loss"] == [{"step": 0, "value": 1.0}, {"step": 1, "value": 0.5}]
    assert run["logged_params"] == {"optimizer": "sgd"}
    assert json.loads((out.parent / "metrics.json").read_text())["accuracy"] == 0.75
    assert all(c["duration"] is not None for c in run["cells"])
    assert run["environment"]["python"] and "papermill" in run["environment"]["packages"]
    executed = nbformat.read(out, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_parameters_from_file_yaml_and_flags_later_wins(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("lr: 0.1\nepochs: 4\nname: from-file\n")
    out = tmp_path / "nb.ipynb"
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "emits_metrics.ipynb"), "-o", str(out), "-f", str(params),
        "-y", "epochs: 1", "-p", "name", "flag",
    )  # fmt: skip
    assert code == 0, output
    assert record(tmp_path)["parameters"] == {"lr": 0.1, "epochs": 1, "name": "flag"}


def test_failing_cell_exit_1_and_notebook_saved(tmp_path: Path) -> None:
    out = tmp_path / "nb.ipynb"
    code, output = cml_nb("run", str(NOTEBOOKS / "raises_in_cell_2.ipynb"), "-o", str(out))
    assert code == 1
    assert "cell 3 (In [3]) raised ValueError: bad value 1" in output  # the author's numbering
    run = record(tmp_path)
    assert run["status"] == "failed"
    assert run["error"]["ename"] == "ValueError"
    assert not any("\x1b[" in line for line in run["error"]["traceback"])
    executed = nbformat.read(out, as_version=4)
    failing = executed.cells[run["error"]["cell_index"]]
    assert "raise ValueError" in failing.source
    assert executed.cells[-1].get("outputs") == []  # the last cell never ran


def test_keep_going_runs_every_cell_then_fails(tmp_path: Path) -> None:
    out = tmp_path / "nb.ipynb"
    code, _ = cml_nb(
        "run", str(NOTEBOOKS / "raises_in_cell_2.ipynb"), "-o", str(out), "--keep-going"
    )
    assert code == 1
    executed = nbformat.read(out, as_version=4)
    assert "never" in executed.cells[-1].outputs[0]["text"]


def test_sys_exit_nonzero_is_a_failure(tmp_path: Path) -> None:
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "calls_sys_exit.ipynb"), "-o", str(tmp_path / "n.ipynb")
    )
    assert code == 1
    assert "sys.exit(3)" in output
    assert (tmp_path / "n.ipynb").exists()


def test_sys_exit_zero_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "n.ipynb"
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "calls_sys_exit.ipynb"), "-o", str(out), "-p", "code", "0"
    )
    assert code == 0, output
    assert record(tmp_path)["status"] == "succeeded"


def test_timeout_exit_124(tmp_path: Path) -> None:
    out = tmp_path / "n.ipynb"
    code, output = cml_nb("run", str(NOTEBOOKS / "sleeps.ipynb"), "-o", str(out), "--timeout", "1")
    assert code == 124
    assert "timeout" in output
    assert record(tmp_path)["status"] == "timeout"
    assert out.exists()


def test_kernel_death_exit_138_with_memory_hint(tmp_path: Path) -> None:
    out = tmp_path / "n.ipynb"
    code, output = cml_nb("run", str(NOTEBOOKS / "kills_kernel.ipynb"), "-o", str(out))
    assert code == 138
    assert "out of memory" in output
    assert record(tmp_path)["status"] == "kernel_died"
    executed = nbformat.read(out, as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "alive"


def test_interrupt_exit_130_and_notebook_saved(tmp_path: Path) -> None:
    out = tmp_path / "n.ipynb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cml_nb", "run", str(NOTEBOOKS / "sleeps.ipynb"), "-o", str(out),
         "--log-output"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # wait until the sleeping cell is running
        if "Executing cell 2" in line or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert out.exists() and record(tmp_path)["status"] == "interrupted"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "nope", "1"], "unknown parameter nope: the notebook declares x"),
        (["-p", "x", "abc"], "parameter 'x' expects int"),
        (["--kernel", "no-such-kernel"], "kernel 'no-such-kernel' is not installed"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "trivial.ipynb"), "-o", str(tmp_path / "n.ipynb"), *args
    )
    assert code == 2
    assert expected in output
    assert len(output.strip().splitlines()) == 1  # one actionable line


def test_allow_unknown_injects_anyway(tmp_path: Path) -> None:
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "trivial.ipynb"), "-o", str(tmp_path / "n.ipynb"), "-p", "z", "1",
        "--allow-unknown",
    )  # fmt: skip
    assert code == 0, output


def test_no_parameters_cell_injects_at_top(tmp_path: Path) -> None:
    out = tmp_path / "n.ipynb"
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "no_parameters_cell.ipynb"), "-o", str(out), "-p", "alpha", "7"
    )
    assert code == 0, output
    executed = nbformat.read(out, as_version=4)
    assert "injected-parameters" in executed.cells[0].metadata["tags"]
    assert executed.cells[1].outputs[0]["text"].strip() == "7"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("malformed.ipynb", "is not valid JSON"),
        ("not_a_notebook.ipynb", "is not a Jupyter notebook"),
        ("missing.ipynb", "notebook not found"),
    ],
)
def test_unreadable_notebook_exit_3(tmp_path: Path, name: str, expected: str) -> None:
    code, output = cml_nb("run", str(NOTEBOOKS / name), "-o", str(tmp_path / "n.ipynb"))
    assert code == 3
    assert expected in output


def test_secret_parameters_never_saved(tmp_path: Path) -> None:
    token = "ghp_" + secrets.token_hex(18)
    out = tmp_path / "n.ipynb"
    code, output = cml_nb(
        "run", str(NOTEBOOKS / "emits_metrics.ipynb"), "-o", str(out), "-p", "token", token
    )
    assert code == 0, output
    for path in tmp_path.rglob("*"):  # the report bundle too
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    assert token not in output
    assert record(tmp_path)["parameters"]["token"] == "***"
    executed = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "token is ***" in printed


def test_module_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cml_nb", "--version"], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0 and "cml-nb" in done.stdout


def test_secret_in_an_exception_never_reaches_record_or_message(tmp_path: Path) -> None:
    token = "ghp_" + secrets.token_hex(18)
    cell = nbformat.v4.new_code_cell("raise RuntimeError('auth failed for ' + token)")
    params = nbformat.v4.new_code_cell("token = ''")
    params.metadata["tags"] = ["parameters"]
    source = tmp_path / "leaks.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[params, cell]), source)
    out = tmp_path / "out" / "n.ipynb"
    code, output = cml_nb("run", str(source), "-o", str(out), "-p", "token", token)
    assert code == 1
    assert "auth failed for ***" in output and token not in output
    for path in out.parent.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".ipynb", ".md", ".html"):
            assert token not in path.read_text(), path
