"""The Dask executor on a real ``distributed.LocalCluster`` (worker processes, real kernels)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_sweep import lines, write_notebook

from cml_nb.cli import main
from cml_nb.sweep.runner import SweepResult

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_dask_executor_runs_each_notebook_on_a_worker_and_brings_back_its_files(
    scheduler: str, tmp_path: Path
) -> None:
    notebook = write_notebook(tmp_path / "toy.ipynb")
    counter, out = tmp_path / "counter.txt", tmp_path / "out"
    args = [
        "sweep", str(notebook), "-g", "a=1,2", "-g", "b=x,y", "-p", "counter", str(counter),
        "--executor", "dask", "--scheduler", scheduler, "-o", str(out),
        "--cache-dir", str(tmp_path / "cache"), "--metric", "score",
    ]  # fmt: skip
    done = CliRunner().invoke(main, args, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert sorted(lines(counter)) == ["1,x", "1,y", "2,x", "2,y"]
    result = SweepResult.read(out)
    assert {r.name: r.metrics["score"] for r in result.runs} == {
        "a=1,b=x": 1, "a=1,b=y": 2, "a=2,b=x": 2, "a=2,b=y": 4,
    }  # fmt: skip
    assert result.best() is not None and result.best().name == "a=2,b=y"  # type: ignore[union-attr]
    for run in result.runs:
        folder = out / "runs" / run.name
        assert {"toy.ipynb", "run.json", "metrics.json"} <= {p.name for p in folder.iterdir()}
    # Dask runs fill the same cache as local ones: a local rerun executes nothing.
    local = [a for a in args if a not in ("--executor", "dask", "--scheduler", scheduler)]
    again = CliRunner().invoke(main, local, catch_exceptions=False)
    assert again.exit_code == 0 and len(lines(counter)) == 4


def test_unreachable_scheduler_is_a_one_line_error(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "toy.ipynb")
    args = [
        "sweep", str(notebook), "-g", "a=1", "-p", "counter", str(tmp_path / "c.txt"),
        "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "-o", str(tmp_path / "o"),
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        done = CliRunner().invoke(main, args)
    assert done.exit_code == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.output
