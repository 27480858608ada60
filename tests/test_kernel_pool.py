"""Kernels started ahead (sweep workers' spares, ``cml-nb run``'s early start) stay fresh.

Each run gets its own kernel process: nothing a run defined or imported is there in the
next run, even when the next run's kernel was started while the previous one ran on the
same worker; IPython history stays in memory, so no run reads another's code (kernels
started with jupyter_client's defaults share ~/.ipython's history database, parameter
values included); and a run leaves no kernel process or IPC folder behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nbformat.v4 import new_code_cell, new_notebook

from cml_nb.cli import main

pytestmark = pytest.mark.timeout(240)

PROBE = """\
import os, random, sys
import cml_nb
cml_nb.log_metric("random", random.random())
cml_nb.log_metric("pid", os.getpid())
cml_nb.log_metric("variable_seen", int("left_by_a_run" in globals()))
cml_nb.log_metric("module_seen", int("fresh_probe_module" in sys.modules))
cml_nb.log_metric("history_in_memory", int(get_ipython().history_manager.hist_file == ":memory:"))
# Injected-parameter cells of any other session (IPython's history database is shared
# between kernels unless it is kept in memory); the pattern is split so that this
# cell's own source does not match it.
hits = [h for *_, h in get_ipython().history_manager.search("*# " + "Param" + "eters*")]
cml_nb.log_metric("foreign_history", sum(f"x = {x}" not in h for h in hits))
left_by_a_run = x
import fresh_probe_module
"""


def write_probe(folder: Path) -> Path:
    (folder / "fresh_probe_module.py").write_text("VALUE = 1\n")
    nb = new_notebook(
        cells=[new_code_cell("x = 0", metadata={"tags": ["parameters"]}), new_code_cell(PROBE)]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def test_one_worker_runs_each_configuration_in_a_fresh_kernel(tmp_path: Path) -> None:
    notebook = write_probe(tmp_path)
    # -j 1: every run happens on the same worker, whose spare kernel for the next run
    # boots while the current run executes.
    done = CliRunner().invoke(
        main,
        ["sweep", str(notebook), "-g", "x=1,2,3,4", "-j", "1", "-o", str(tmp_path / "out"),
         "--cache-dir", str(tmp_path / "cache")],
        catch_exceptions=False,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    runs = json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]
    metrics = [run["metrics"] for run in runs]
    assert len(metrics) == 4
    assert [m["variable_seen"] for m in metrics] == [0, 0, 0, 0]
    assert [m["module_seen"] for m in metrics] == [0, 0, 0, 0]
    assert [m["history_in_memory"] for m in metrics] == [1, 1, 1, 1]
    assert [m["foreign_history"] for m in metrics] == [0, 0, 0, 0]  # no run reads another's code
    assert len({m["pid"] for m in metrics}) == 4  # four kernel processes
    assert len({m["random"] for m in metrics}) == 4  # forked kernels reseed, as new ones do


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_run_leaves_no_kernel_or_ipc_folder_behind(tmp_path: Path) -> None:
    notebook = write_probe(tmp_path)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    for x in (1, 2):
        done = subprocess.run(
            [sys.executable, "-m", "cml_nb", "run", str(notebook), "-o", f"out{x}/probe.ipynb",
             "-p", "x", str(x), "--no-report", "--no-log-output"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        record = json.loads((tmp_path / f"out{x}" / "run.json").read_text())
        assert record["metrics"]["variable_seen"] == 0
        assert record["metrics"]["module_seen"] == 0
        assert record["metrics"]["history_in_memory"] == 1
        assert record["metrics"]["foreign_history"] == 0
        assert not _alive(int(record["metrics"]["pid"]))
    assert list(private_tmp.glob("cml-nb-kernel-*")) == []


def test_a_run_refused_for_its_parameters_starts_no_kernel(tmp_path: Path) -> None:
    notebook = write_probe(tmp_path)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "cml_nb", "run", str(notebook), "-p", "nope", "1", "--no-report"],
        cwd=tmp_path, env={**os.environ, "TMPDIR": str(private_tmp)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert list(private_tmp.glob("cml-nb-kernel-*")) == []


STATE = """\
import json, os, random, sys
print(json.dumps({"modules": sorted(sys.modules), "path": sys.path, "argv0": sys.argv[0],
                  "cwd": os.getcwd(), "parent": os.environ.get("JPY_PARENT_PID"),
                  "leader": os.getpgid(0) == os.getpid(), "random": random.random()}))
"""


def _kernel_state(km: object) -> dict[str, object]:
    from jupyter_core.utils import run_sync

    kc = km.client()  # type: ignore[attr-defined]
    kc.start_channels()
    run_sync(kc.wait_for_ready)(timeout=60)
    msg_id, text = kc.execute(STATE), ""
    while True:
        msg = run_sync(kc.get_iopub_msg)(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return json.loads(text)  # type: ignore[no-any-return]


def test_a_kernel_forked_from_the_template_starts_as_a_launched_one(tmp_path: Path) -> None:
    from cml_nb import kernel_pool

    templates = kernel_pool.KernelTemplates()
    kms = []
    try:
        launched = kernel_pool.start("python3", str(tmp_path))
        kms.append(launched)
        forked = [kernel_pool.start("python3", str(tmp_path), templates) for _ in range(2)]
        kms.extend(forked)
        assert templates._by_python, "the python3 kernel spec is not forked"
        plain = _kernel_state(launched)
        states = [_kernel_state(km) for km in forked]
        for state in states:
            assert state["modules"] == plain["modules"]  # nothing imported ahead, nothing left
            assert state["path"] == plain["path"]  # no cml_nb folder on the path
            assert state["argv0"] == plain["argv0"]
            assert state["cwd"] == plain["cwd"] == str(tmp_path)
            assert state["parent"] == plain["parent"] == str(os.getpid())
            assert state["leader"] is plain["leader"] is True  # own session: interrupts
        assert len({s["random"] for s in [plain, *states]}) == 3
        pids = [km.provisioner.pid for km in forked]
    finally:
        for km in kms:
            kernel_pool.shutdown(km)
        templates.close()
    assert not any(_alive(pid) for pid in pids)


def test_a_library_run_that_fails_after_the_early_start_leaves_no_kernel_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from cml_nb.errors import OutputWriteError
    from cml_nb.execute import run

    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # where the IPC folder goes
    nb = new_notebook(cells=[new_code_cell("import os\nopen('pid', 'w').write(str(os.getpid()))")])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook = tmp_path / "n.ipynb"
    nbformat.write(nb, notebook)
    output = tmp_path / "out" / "n.ipynb"
    output.mkdir(parents=True)  # a folder where the executed notebook should go
    # The kernel runs the notebook, then writing its output fails: a long-lived caller (the
    # Jupyter server extension) goes on, so nothing may wait for process exit to clean up.
    with pytest.raises(OutputWriteError):
        run(notebook, output)
    pid = int((tmp_path / "pid").read_text())
    assert not _alive(pid)  # not running, and reaped (a zombie still answers kill(pid, 0))
    assert list(private_tmp.glob("cml-nb-kernel-*")) == []
