"""Annotations, the job summary and step outputs under a GitHub Actions (and GitLab) environment."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb.ci.annotations import escape_data, escape_property, workflow_command
from cml_nb.ci.summary import STEP_SUMMARY_LIMIT
from cml_nb.cli import main
from cml_nb.report.html import markdown_to_html

NOTEBOOKS = Path(__file__).parent / "notebooks"
TOKEN = "ghp_" + "Zz9Yy8Xx7Ww6" * 3


def _actions_env(tmp_path: Path) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
    }


def _secret_failure(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("api_token = ''", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("Below, a cell that fails."),
        nbformat.v4.new_code_cell(
            "raise RuntimeError(f'login with {api_token} failed: 100%\\nretry, later')"
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "nbs" / "login, step: 1.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    return path


def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args, "--no-progress"], env=env)
    return result.exit_code, result.output


def test_escaping_follows_the_toolkit() -> None:
    # actions/toolkit packages/core/src/command.ts: escapeData and escapeProperty.
    assert escape_data("a%b\r\nc:d,e") == "a%25b%0D%0Ac:d,e"
    assert escape_property("a%b\r\nc:d,e") == "a%25b%0D%0Ac%3Ad%2Ce"
    assert (
        workflow_command("warning", "m", file="x.ipynb", title=None) == "::warning file=x.ipynb::m"
    )


def test_failing_cell_is_an_error_annotation_with_secrets_masked(tmp_path: Path) -> None:
    notebook = _secret_failure(tmp_path)
    env = _actions_env(tmp_path)
    code, output = _run(env, str(notebook), "-p", "api_token", TOKEN, "-o",
                        str(tmp_path / "out" / "login.ipynb"))  # fmt: skip
    assert code == 1, output
    lines = [line for line in output.splitlines() if line.startswith("::error")]
    # line=: where cell 3 starts in the notebook file, so the PR diff shows it there.
    cell_id = nbformat.read(notebook, as_version=4).cells[2].id
    starts = next(
        n for n, text in enumerate(notebook.read_text().splitlines(), 1) if cell_id in text
    )
    assert lines == [
        f"::error file=nbs/login%2C step%3A 1.ipynb,line={starts},title=cell 3 raised RuntimeError"
        "::RuntimeError: login with *** failed: 100%25%0Aretry, later"
    ]
    assert TOKEN not in output
    outputs = (tmp_path / "output.txt").read_text()
    assert "status<<ghadelimiter_" in outputs and "\nfailed\n" in outputs


def test_gitlab_gets_the_same_line_as_plain_log(tmp_path: Path) -> None:
    notebook = tmp_path / "raises_in_cell_2.ipynb"
    shutil.copy(NOTEBOOKS / "raises_in_cell_2.ipynb", notebook)
    code, output = _run({"GITLAB_CI": "true", "GITHUB_ACTIONS": ""}, str(notebook), "--no-report")
    assert code == 1, output
    assert f"ERROR: {notebook.as_posix()}: cell 3 raised ValueError: ValueError: bad value 1" in (
        output.splitlines()
    )
    assert "::error" not in output


def test_no_annotation_outside_ci(tmp_path: Path) -> None:
    notebook = tmp_path / "raises_in_cell_2.ipynb"
    shutil.copy(NOTEBOOKS / "raises_in_cell_2.ipynb", notebook)
    code, output = _run({"GITLAB_CI": "", "GITHUB_ACTIONS": ""}, str(notebook), "--no-report")
    assert code == 1 and "::error" not in output and "ERROR:" not in output


def test_regression_gate_failure_is_an_error_and_a_skip_a_warning(tmp_path: Path) -> None:
    env = _actions_env(tmp_path)
    code, output = _run(
        env, str(NOTEBOOKS / "emits_metrics.ipynb"), "-o", str(tmp_path / "o" / "m.ipynb"),
        "--fail-if", "accuracy < 0.9", "--fail-on-regression", "accuracy:0.01",
        "--source", "records", "--history", str(tmp_path / "none"),
    )  # fmt: skip
    assert code == 6, output
    errors = [line for line in output.splitlines() if line.startswith("::error")]
    warnings = [line for line in output.splitlines() if line.startswith("::warning")]
    assert len(errors) == 1 and "title=regression%3A accuracy < 0.9" in errors[0], output
    assert len(warnings) == 1 and "title=gate skipped%3A accuracy < base - 0.01" in warnings[0], (
        output
    )


def test_job_summary_has_the_report_without_images(tmp_path: Path) -> None:
    env = _actions_env(tmp_path)
    out = tmp_path / "o" / "gallery.ipynb"
    code, output = _run(env, str(NOTEBOOKS / "report_outputs.ipynb"), "-o", str(out))
    assert code == 0, output
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## Report: report_outputs.ipynb")
    assert "Images are left out of the job summary" in summary
    html = markdown_to_html(summary)
    assert "<img" not in html and "<table>" in html  # metrics table survives, no broken image
    assert "assets/" not in summary


def test_job_summary_fits_the_room_left_in_the_step_file(tmp_path: Path) -> None:
    env = _actions_env(tmp_path)
    out = tmp_path / "o" / "gallery.ipynb"
    code, output = _run(env, str(NOTEBOOKS / "report_outputs.ipynb"), "-o", str(out),
                        "--no-report")  # fmt: skip
    assert code == 0
    summary = tmp_path / "summary.md"
    summary.write_bytes(b"x" * (STEP_SUMMARY_LIMIT - 3000))  # an earlier command's summary
    result = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "b")], env=env)
    assert result.exit_code == 0, result.output
    size = summary.stat().st_size
    assert STEP_SUMMARY_LIMIT - 3000 < size <= STEP_SUMMARY_LIMIT
    assert "shortened to fit" in summary.read_text()[STEP_SUMMARY_LIMIT - 3000 :]


@pytest.fixture
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


@pytest.mark.usefixtures("_fast_writes")
def test_after_publish_the_summary_links_hosted_images_and_outputs_the_url(
    forge_emulator, tmp_path: Path
) -> None:
    s = scenarios.github(forge_emulator, tmp_path)
    env = {**s.env, **_actions_env(tmp_path)}
    out = tmp_path / "o" / "gallery.ipynb"
    code, output = _run(env, str(NOTEBOOKS / "report_outputs.ipynb"), "-o", str(out), "--publish")
    assert code == 0, output
    (comment,) = s.pull.comments
    summary = (tmp_path / "summary.md").read_text()
    assert comment.body in summary and "Images are left out" not in summary
    images = [src for src in _srcs(markdown_to_html(summary)) if "cml-nb-assets" in src]
    assert images and all(src.startswith("http") for src in images)
    outputs = (tmp_path / "output.txt").read_text()
    url = next(line for line in output.splitlines() if "report comment: " in line).split(": ")[-1]
    assert url.startswith("http") and "report-url<<" in outputs and f"\n{url}\n" in outputs
    assert s.token not in summary and s.token not in outputs


def _srcs(html: str) -> list[str]:
    import re

    return re.findall(r'<img src="([^"]+)"', html)


def test_a_publish_that_fails_after_a_failed_run_is_a_warning(tmp_path: Path) -> None:
    notebook = tmp_path / "raises_in_cell_2.ipynb"
    shutil.copy(NOTEBOOKS / "raises_in_cell_2.ipynb", notebook)
    env = {**_actions_env(tmp_path), "GITHUB_REPOSITORY": "", "GITHUB_TOKEN": "", "GH_TOKEN": "",
           "GITLAB_TOKEN": "", "CI_JOB_TOKEN": "", "REPO_TOKEN": ""}  # fmt: skip
    code, output = _run(env, str(notebook), "--publish", "-o", str(tmp_path / "o" / "r.ipynb"))
    assert code == 1, output  # the run's own failure stays the exit code
    warnings = [line for line in output.splitlines() if line.startswith("::warning")]
    assert len(warnings) == 1 and "title=report not published::" in warnings[0], output
    assert any(line.startswith("::error") for line in output.splitlines())
