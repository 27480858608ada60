"""``cml-nb sweep`` end to end with real kernels: runs, cache, resume, failures, shards, report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner, Result
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cml_nb.cli import main
from cml_nb.report.bundle import load_bundle
from cml_nb.report.model import ImageBlock, TableBlock
from cml_nb.sweep.executors import register_executor
from cml_nb.sweep.runner import SweepResult, run_sweep
from cml_nb.sweep.space import SweepSpace
from cml_nb.sweep.worker import RunTask, TaskResult, execute_task

pytestmark = pytest.mark.timeout(240)

PARAMETERS = "a = 1\nb = 'x'\ncounter = ''\nfail_flag = ''\ndata = ''"
BODY = """\
import os
import cml_nb
with open(counter, "a") as handle:
    handle.write(f"{a},{b}\\n")  # one line per real execution
if fail_flag and os.path.exists(fail_flag) and a == 2:
    raise ValueError(f"boom for a={a}")
extra = len(open(data).read()) if data else 0
cml_nb.log_metric("score", a * (2 if b == "y" else 1) + extra)
print("score logged")
"""


def write_notebook(path: Path) -> Path:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# Toy model"),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(BODY),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def sweep(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@dataclass
class Swept:
    root: Path
    notebook: Path
    counter: Path
    out: Path
    cache: Path
    first: Result

    def args(self, *extra: str | Path) -> list[str | Path]:
        return [
            self.notebook, "-g", "a=1,2", "-g", "b=x,y", "-p", "counter", self.counter,
            "-j", "2", "--metric", "score", "--goal", "max", *extra,
        ]  # fmt: skip


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swept]:
    root = tmp_path_factory.mktemp("sweep")
    notebook = write_notebook(root / "toy.ipynb")
    state = Swept(root, notebook, root / "counter.txt", root / "out", root / "cache", None)  # type: ignore[arg-type]
    state.first = sweep(*state.args("-o", state.out, "--cache-dir", state.cache))
    yield state


def test_grid_sweep_writes_every_run_sweep_json_and_a_ranked_report(swept: Swept) -> None:
    assert swept.first.exit_code == 0, swept.first.output
    assert sorted(lines(swept.counter)) == ["1,x", "1,y", "2,x", "2,y"]
    names = ["a=1,b=x", "a=1,b=y", "a=2,b=x", "a=2,b=y"]
    for name in names:
        folder = swept.out / "runs" / name
        assert {"toy.ipynb", "run.json", "metrics.json"} <= {p.name for p in folder.iterdir()}
        record = json.loads((folder / "run.json").read_text())
        assert record["status"] == "succeeded"
        assert Path(record["output"]) == folder / "toy.ipynb"
    sweep_json = json.loads((swept.out / "sweep.json").read_text())
    assert [r["name"] for r in sweep_json["runs"]] == names
    assert {r["name"]: r["metrics"]["score"] for r in sweep_json["runs"]} == {
        "a=1,b=x": 1, "a=1,b=y": 2, "a=2,b=x": 2, "a=2,b=y": 4,
    }  # fmt: skip
    report = load_bundle(swept.out / "report")
    table = next(b for b in report.blocks if isinstance(b, TableBlock))
    assert table.columns[:4] == ["#", "run", "a", "b"]
    assert table.rows[0][:2] == ["★ best", "a=2,b=y"]
    assert [row[1] for row in table.rows][-1] == "a=1,b=x"  # lowest score last (goal max)
    images = [b for b in report.blocks if isinstance(b, ImageBlock)]
    assert images and all((swept.out / "report" / "assets" / i.asset).is_file() for i in images)
    markdown = (swept.out / "report" / "report.md").read_text()
    assert "score logged" in markdown  # the best run's own report is embedded
    assert "best by score (max): a=2,b=y" in swept.first.output


def test_markdown_table_survives_githubs_renderer(swept: Swept) -> None:
    cmarkgfm = pytest.importorskip("cmarkgfm")
    from cmarkgfm.cmark import Options

    html = cmarkgfm.github_flavored_markdown_to_html(
        (swept.out / "report" / "report.md").read_text(), options=Options.CMARK_OPT_UNSAFE
    )
    assert "<td>★ best</td>" in html and "<td>a=2,b=y</td>" in html
    assert '<img src="assets/' in html


def test_a_second_identical_sweep_executes_nothing(swept: Swept) -> None:
    before = lines(swept.counter)
    again = sweep(*swept.args("-o", swept.out, "--cache-dir", swept.cache))
    assert again.exit_code == 0, again.output
    assert lines(swept.counter) == before
    assert "(0 executed, 4 reused from the cache)" in again.output
    result = SweepResult.read(swept.out)
    assert all(r.cached and r.succeeded for r in result.runs)
    # The cache alone is enough: a new output folder with the same cache executes nothing.
    elsewhere = sweep(*swept.args("-o", swept.root / "elsewhere", "--cache-dir", swept.cache))
    assert elsewhere.exit_code == 0 and lines(swept.counter) == before
    assert (swept.root / "elsewhere" / "runs" / "a=2,b=y" / "toy.ipynb").is_file()


def test_shards_merge_into_the_same_report_as_one_sweep(swept: Swept) -> None:
    shards = []
    for k in (1, 2):
        folder = swept.root / f"shard{k}"
        done = sweep(
            *swept.args("-o", folder, "--cache-dir", swept.root / f"cache{k}", "--shard", f"{k}/2")
        )
        assert done.exit_code == 0, done.output
        assert len(SweepResult.read(folder).runs) == 2
        shards.append(folder)
    merged = swept.root / "merged"
    joined = CliRunner().invoke(main, ["sweep", "merge", *map(str, shards), "-o", str(merged)])
    assert joined.exit_code == 0, joined.output

    def comparable(folder: Path) -> dict[str, object]:
        data = json.loads((folder / "report" / "report.json").read_text())
        data.pop("duration")
        return data

    assert comparable(merged) == comparable(swept.out)
    assert [r.name for r in SweepResult.read(merged).runs] == [
        r.name for r in SweepResult.read(swept.out).runs
    ]
    partial = CliRunner().invoke(
        main, ["sweep", "merge", str(shards[0]), "-o", str(swept.root / "m1")]
    )
    assert partial.exit_code == 2 and "missing" in partial.output


def test_parameters_are_validated_before_anything_runs(swept: Swept, tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    unknown = sweep(
        swept.notebook, "-g", "a=1", "-g", "zzz=1,2", "-p", "counter", counter, "-o", tmp_path / "o"
    )
    assert unknown.exit_code == 2 and "zzz" in unknown.output
    wrong_type = sweep(
        swept.notebook, "-g", "a=1,oops", "-p", "counter", counter, "-o", tmp_path / "o"
    )
    assert wrong_type.exit_code == 2 and "'a' expects int" in wrong_type.output
    assert not counter.exists() and not (tmp_path / "o").exists()


def test_failed_runs_fail_the_sweep_and_a_rerun_resumes_only_them(
    swept: Swept, tmp_path: Path
) -> None:
    flag, counter, out = tmp_path / "flag", tmp_path / "counter.txt", tmp_path / "out"
    flag.touch()
    args = [
        swept.notebook, "-g", "a=1,2", "-p", "counter", counter, "-p", "fail_flag", flag,
        "-o", out, "--cache-dir", tmp_path / "cache", "-j", "2", "--metric", "score",
    ]  # fmt: skip
    failed = sweep(*args)
    assert failed.exit_code == 1
    assert re.search(
        r"1 of 2 runs failed \(first: a=2: cell \d+ \(In \[3\]\) raised ValueError: boom",
        failed.output,
    )
    result = SweepResult.read(out)
    assert [r.status for r in result.runs] == ["succeeded", "failed"]
    failures = [b for b in load_bundle(out / "report").blocks if isinstance(b, TableBlock)][1]
    assert [row[:2] for row in failures.rows] == [["a=2", "failed"]]
    assert failures.rows[0][2].endswith("raised ValueError: boom for a=2")

    allowed = sweep(*args, "--allow-failures")
    assert allowed.exit_code == 0
    assert sorted(lines(counter)) == ["1,x", "2,x", "2,x"]  # only the failed run executed again

    flag.unlink()
    resumed = sweep(*args)
    assert resumed.exit_code == 0, resumed.output
    assert sorted(lines(counter)) == ["1,x", "2,x", "2,x", "2,x"]
    assert [r.cached for r in SweepResult.read(out).runs] == [True, False]


def test_dependency_content_is_part_of_the_cache_key(swept: Swept, tmp_path: Path) -> None:
    data, counter = tmp_path / "data.csv", tmp_path / "counter.txt"
    data.write_text("abc")
    args = [
        swept.notebook, "-g", "a=1", "-p", "counter", counter, "-p", "data", data, "--dep", data,
        "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--no-report",
    ]  # fmt: skip
    assert sweep(*args).exit_code == 0
    assert sweep(*args).exit_code == 0
    assert len(lines(counter)) == 1
    data.write_text("abcdef")
    assert sweep(*args).exit_code == 0
    assert len(lines(counter)) == 2
    assert SweepResult.read(tmp_path / "out").runs[0].metrics == {"score": 7}
    assert sweep(*args, "--force").exit_code == 0
    assert len(lines(counter)) == 3
    missing = sweep(*args[:-6], "--dep", tmp_path / "nope.csv", "-o", tmp_path / "o2")
    assert missing.exit_code == 2 and "nope.csv" in missing.output


def test_yaml_space_with_random_and_list_sections(swept: Swept, tmp_path: Path) -> None:
    spec = tmp_path / "sweep.yaml"
    counter = tmp_path / "counter.txt"
    spec.write_text(
        f"parameters: {{counter: '{counter}'}}\n"
        "random: {n: 2, seed: 3, parameters: {a: {randint: [10, 1000]}, b: {choice: [x, y]}}}\n"
        "list:\n  - {a: 5, b: y}\n"
    )
    done = sweep(
        swept.notebook, "-f", spec, "-o", tmp_path / "out", "--cache-dir", tmp_path / "c", "-j", "2"
    )
    assert done.exit_code == 0, done.output
    result = SweepResult.read(tmp_path / "out")
    assert len(result.runs) == 3 and result.runs[-1].name == "a=5,b=y"
    assert all(10 <= r.parameters["a"] <= 1000 for r in result.runs[:2])
    assert len(lines(counter)) == 3
    assert {r.name for r in result.runs} == {p.name for p in (tmp_path / "out" / "runs").iterdir()}


class InlineExecutor:
    """A third-party-style executor: runs each task in this process, one after another."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs

    def run(self, tasks: Sequence[RunTask]) -> Iterator[tuple[RunTask, TaskResult | BaseException]]:
        for task in tasks:
            yield task, execute_task(task, use_pool=False)


def test_an_executor_plugs_in_by_name(swept: Swept, tmp_path: Path) -> None:
    register_executor("inline-test", InlineExecutor)
    counter = tmp_path / "counter.txt"
    result = run_sweep(
        swept.notebook,
        SweepSpace(grid={"a": [3]}, fixed={"counter": str(counter)}),
        tmp_path / "out",
        executor="inline-test",
        cache_dir=tmp_path / "cache",
        metric="score",
    )
    assert [r.metrics for r in result.runs] == [{"score": 3}]
    assert lines(counter) == ["3,x"]
    assert (tmp_path / "out" / "report" / "report.html").is_file()


def test_help_shows_both_spellings() -> None:
    runner = CliRunner()
    helped = runner.invoke(main, ["sweep", "--help"])
    assert helped.exit_code == 0 and "merge [OPTIONS] DIR..." in helped.output
    assert "--shard" in helped.output and "--executor" in helped.output
    merge_help = runner.invoke(main, ["sweep", "merge", "--help"])
    assert merge_help.exit_code == 0 and "Join the sweep folders" in merge_help.output


def test_secret_parameters_never_reach_folder_names_records_or_the_cache(tmp_path: Path) -> None:
    import secrets

    fakes = ["ghp_" + secrets.token_hex(18), "glpat-" + secrets.token_hex(10)]
    notebook = Path(__file__).parent / "notebooks" / "emits_metrics.ipynb"
    out, store = tmp_path / "out", tmp_path / "cache"
    done = sweep(
        notebook, "-g", f"token={fakes[0]},{fakes[1]}", "-o", out, "--cache-dir", store,
        "-j", "2", "--metric", "accuracy",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    names = [r.name for r in SweepResult.read(out).runs]
    assert len(set(names)) == 2 and all(n.startswith("token=masked-") for n in names)
    written = [p for folder in (out, store) for p in folder.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        data = path.read_bytes()
        assert not any(fake.encode() in data for fake in fakes), path
    assert not any(fake in done.output for fake in fakes)


def test_an_interrupted_sweep_stops_promptly_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    notebook = Path(__file__).parent / "notebooks" / "sleeps.ipynb"
    out = tmp_path / "out"
    cli = shutil.which("cml-nb", path=str(Path(sys.executable).parent))
    assert cli is not None
    args = [cli, "sweep", str(notebook), "-g", "seconds=0,1,60", "-j", "2", "-o", str(out)]
    args += ["--cache-dir", str(tmp_path / "cache"), "--no-report"]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    finished = [out / "runs" / f"seconds={s}" / "run.json" for s in (0, 1)]
    deadline = time.monotonic() + 90
    while not all(p.exists() for p in finished) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the 60 s run is under way
    os.kill(process.pid, signal.SIGTERM)  # as a CI system cancels a job
    start = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert time.monotonic() - start < 10
    result = SweepResult.read(out)
    assert [r.status for r in result.runs] == ["succeeded", "succeeded", "not_run"]

    resumed = sweep(notebook, "-g", "seconds=0,1,60", "-j", "2", "-o", out, "--cache-dir",
                    tmp_path / "cache", "--no-report", "--timeout", "1")  # fmt: skip
    assert resumed.exit_code == 1
    runs = SweepResult.read(out).runs
    assert [(r.cached, r.status) for r in runs] == [
        (True, "succeeded"), (True, "succeeded"), (False, "timeout"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-g", "a=1", "--kernel", "no-such-kernel"], "kernel 'no-such-kernel' is not installed"),
        ([], "the sweep space is empty"),
        (["-g", "a=1", "--executor", "nope"], "unknown executor 'nope': use one of"),
        (["-g", "a=1", "--shard", "3/2"], "--shard '3/2' is not K/N"),
        (["-g", "a=1", "--goal", "best"], "Invalid value for '--goal'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    swept: Swept, tmp_path: Path, extra: list[str], message: str
) -> None:
    done = sweep(swept.notebook, *extra, "-o", tmp_path / "o", "--cache-dir", tmp_path / "c")
    assert done.exit_code == 2
    assert message in done.output
    assert not (tmp_path / "o" / "runs").exists()


def test_runs_see_the_environment_of_the_sweep_that_started_them(
    swept: Swept, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Local workers fork from a forkserver started by an earlier sweep in this process
    # (the module fixture's); a variable set since then must still reach the kernels.
    nb = new_notebook()
    nb.cells = [
        new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
        new_code_cell(
            'import os, cml_nb\ncml_nb.log_metric("v", int(os.environ["SWEEP_TEST_ENV"]) + a)'
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "env.ipynb")
    monkeypatch.setenv("SWEEP_TEST_ENV", "40")
    result = run_sweep(
        tmp_path / "env.ipynb",
        SweepSpace(grid={"a": [1, 2, 3]}),
        tmp_path / "out",
        jobs=2,
        cache_dir=tmp_path / "cache",
        report=False,
    )
    assert [r.metrics for r in result.runs] == [{"v": 41}, {"v": 42}, {"v": 43}]
