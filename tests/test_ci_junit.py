"""--junit FILE on run and sweep: parsed back with xml.etree, in the shape GitLab reads."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner

from cml_nb.cli import main

NOTEBOOKS = Path(__file__).parent / "notebooks"


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def check_gitlab_shape(root: ET.Element) -> None:
    """What GitLab's JUnit parser reads (docs.gitlab.com/ci/testing/unit_test_reports/).

    A ``testsuites`` root (or one ``testsuite``); each ``testcase`` has ``name`` and
    ``classname``, a numeric ``time``; a ``failure`` carries ``message`` and ``type``;
    suite counts agree with their cases (as the JUnit XSD requires).
    """
    assert root.tag == "testsuites"
    for suite in root:
        assert suite.tag == "testsuite" and suite.get("name")
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "-1")) == len(cases)
        assert int(suite.get("failures", "-1")) == len(suite.findall("testcase/failure"))
        float(suite.get("time", "x"))
        for case in cases:
            assert case.get("name") and case.get("classname")
            float(case.get("time", "x"))
            assert set(c.tag for c in case) <= {"failure", "error", "skipped", "system-out"}
            for failure in case.findall("failure"):
                assert failure.get("message") and failure.get("type")
    assert int(root.get("tests", "-1")) == sum(int(s.get("tests", "0")) for s in root)


def test_run_junit_holds_the_failing_cell(tmp_path: Path) -> None:
    notebook = tmp_path / "raises_in_cell_2.ipynb"
    shutil.copy(NOTEBOOKS / "raises_in_cell_2.ipynb", notebook)
    report = tmp_path / "junit.xml"
    code, output = _cli(
        "run", str(notebook), "-o", str(tmp_path / "out" / "nb.ipynb"), "--no-report",
        "--junit", str(report), "-p", "x", "5", "--no-progress",
    )  # fmt: skip
    assert code == 1, output
    root = ET.parse(report).getroot()
    check_gitlab_shape(root)
    (suite,) = root
    names = [c.get("name") for c in suite.findall("testcase")]
    # Cells 1-3 ran (the injected parameters too); cell 4 never did.
    assert names == [
        "cell 1: x = 1",
        "parameters (injected): # Parameters",
        "cell 2: print('before')",
        "cell 3: raise ValueError('bad value ' + str(x))",
    ]
    failing = suite.findall("testcase/failure")
    assert len(failing) == 1
    failure = failing[0]
    assert failure.get("type") == "ValueError"
    assert failure.get("message") == "ValueError: bad value 5"
    assert "raise ValueError" in (failure.text or "") and "\x1b[" not in (failure.text or "")
    times = [float(c.get("time", "0")) for c in suite.findall("testcase")]
    assert all(t >= 0 for t in times) and sum(times) > 0


def test_run_junit_of_a_passing_run_masks_secrets(tmp_path: Path) -> None:
    report = tmp_path / "j" / "junit.xml"
    token = "ghp_" + "A1b2C3d4" * 5
    code, output = _cli(
        "run", str(NOTEBOOKS / "trivial.ipynb"), "-o", str(tmp_path / "o" / "t.ipynb"),
        "--no-report", "--junit", str(report), "-p", "api_token", token, "--allow-unknown",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, output
    text = report.read_text()
    assert token not in text
    root = ET.fromstring(text)
    check_gitlab_shape(root)
    assert root.get("failures") == "0" and root.get("tests") == "4"


@pytest.mark.timeout(240)
def test_sweep_junit_has_one_suite_per_run(tmp_path: Path) -> None:
    report = tmp_path / "sweep.xml"
    code, output = _cli(
        "sweep", str(NOTEBOOKS / "raises_in_cell_2.ipynb"), "-g", "x=1,2", "-j", "1",
        "-o", str(tmp_path / "sw"), "--no-cache", "--no-report", "--junit", str(report),
        "--allow-failures",
    )  # fmt: skip
    assert code == 0, output
    root = ET.parse(report).getroot()
    check_gitlab_shape(root)
    assert sorted(s.get("name") for s in root) == [
        "raises_in_cell_2.ipynb [x=1]",
        "raises_in_cell_2.ipynb [x=2]",
    ]
    messages = sorted(f.get("message") for f in root.iter("failure"))
    assert messages == ["ValueError: bad value 1", "ValueError: bad value 2"]


def test_unwritable_junit_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, output = _cli(
        "run", str(NOTEBOOKS / "trivial.ipynb"), "-o", str(tmp_path / "o" / "t.ipynb"),
        "--no-report", "--junit", str(blocker / "junit.xml"), "--no-progress",
    )  # fmt: skip
    assert code == 4
    assert "cannot write --junit" in output and "Traceback" not in output


def test_init_wires_junit_into_both_pipelines() -> None:
    import shlex

    import yaml

    from cml_nb.pipelines import PipelineOptions, render

    gitlab = yaml.safe_load(render(PipelineOptions("gitlab", "train.ipynb")).text)
    words = shlex.split(gitlab["cml-nb"]["script"][0])
    junit = words[words.index("--junit") + 1]
    assert gitlab["cml-nb"]["artifacts"]["reports"]["junit"] == junit
    sweep = yaml.safe_load(render(PipelineOptions("gitlab", "train.ipynb", sweep=True)).text)
    job = next(j for j in sweep.values() if isinstance(j, dict) and j.get("stage") == "sweep")
    assert job["artifacts"]["reports"]["junit"] == "sweep-shards/$SHARD/junit.xml"
    assert "--junit sweep-shards/$SHARD/junit.xml" in job["script"][0]
    github = yaml.safe_load(render(PipelineOptions("github", "train.ipynb")).text)
    steps = github["jobs"]["report"]["steps"]
    run = next(s["run"] for s in steps if s.get("name") == "Run and publish")
    uploaded = next(s["with"]["path"] for s in steps if "upload-artifact" in s.get("uses", ""))
    junit = shlex.split(run)[shlex.split(run).index("--junit") + 1]
    assert junit.startswith(uploaded)  # the runs/ artifact carries it to test-report actions


@pytest.mark.parametrize(
    ("notebook", "args", "code", "kind", "title"),
    [
        ("sleeps.ipynb", ["--timeout", "1"], 124, "timeout", "cell 2 timed out"),
        ("kills_kernel.ipynb", [], 138, "kernel_died", "cell 2 killed the kernel"),
    ],
)
def test_timeouts_and_dead_kernels_fail_their_cell(
    tmp_path: Path, notebook: str, args: list[str], code: int, kind: str, title: str
) -> None:
    report = tmp_path / "junit.xml"
    exit_code, output = _cli(
        "run", str(NOTEBOOKS / notebook), "-o", str(tmp_path / "o" / notebook), "--no-report",
        "--junit", str(report), "--no-progress", *args,
        env={"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(NOTEBOOKS.parent.parent)},
    )  # fmt: skip
    assert exit_code == code, output
    root = ET.parse(report).getroot()
    check_gitlab_shape(root)
    (failure,) = root.iter("failure")
    assert failure.get("type") == kind
    failing = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name", "").split(":")[0] for c in failing] == ["cell 2"]
    assert re.search(
        rf"^::error file=tests/notebooks/{re.escape(notebook)},(line=\d+,)?title={title}::",
        output, re.M,
    ), output  # fmt: skip


@pytest.mark.timeout(280)
def test_sweep_merge_junit_joins_the_shards(tmp_path: Path) -> None:
    for k in (1, 2):
        code, output = _cli(
            "sweep", str(NOTEBOOKS / "trivial.ipynb"), "-g", "x=1,2", "-j", "1", "--no-cache",
            "--no-report", "--shard", f"{k}/2", "-o", str(tmp_path / "shards" / str(k)),
        )  # fmt: skip
        assert code == 0, output
    report = tmp_path / "merged.xml"
    code, output = _cli(
        "sweep", "merge", str(tmp_path / "shards" / "1"), str(tmp_path / "shards" / "2"),
        "-o", str(tmp_path / "merged"), "--no-report", "--junit", str(report),
    )  # fmt: skip
    assert code == 0, output
    root = ET.parse(report).getroot()
    check_gitlab_shape(root)
    assert sorted(s.get("name") for s in root) == ["trivial.ipynb [x=1]", "trivial.ipynb [x=2]"]
    assert root.get("failures") == "0" and int(root.get("tests", "0")) == 8
