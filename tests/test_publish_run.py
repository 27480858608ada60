"""``cml-nb run --publish`` (and ``--live``) with real kernels against the forge emulator."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb.cli import main
from cml_nb.forge import comments as sticky

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _run(env: dict[str, str], *args: str):
    return CliRunner().invoke(main, ["run", *args, "--no-progress"], env=env)


def test_run_publish_posts_the_failure_and_a_failing_check(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    notebook = tmp_path / "raises_in_cell_2.ipynb"
    shutil.copy(NOTEBOOKS / "raises_in_cell_2.ipynb", notebook)
    result = _run(s.env, str(notebook), "--publish", "--check")
    assert result.exit_code == 1, result.output
    (comment,) = s.pull.comments
    assert sticky.has_marker(comment.body, "raises_in_cell_2")
    assert "ValueError" in comment.body and sticky.parse_metrics(comment.body)["status"] == "failed"
    assert [r["conclusion"] for r in s.repo.check_runs] == ["failure"]
    assert "created report comment" in result.output


def test_run_publish_live_updates_then_replaces_with_the_final_report(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time")]
    for step in range(3):
        nb.cells += [nbformat.v4.new_code_cell(f"print('step {step}')"),
                     nbformat.v4.new_code_cell("time.sleep(1.2)")]  # fmt: skip
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook = tmp_path / "slow.ipynb"
    nbformat.write(nb, notebook)
    result = _run(s.env, str(notebook), "--publish", "--live", "1")
    assert result.exit_code == 0, result.output
    posted = [e.body.decode() for e in forge_emulator.exchanges
              if e.method in ("POST", "PATCH") and "/comments" in e.url]  # fmt: skip
    assert any("running:" in body for body in posted), "no live update was posted"
    (comment,) = s.pull.comments
    assert "running:" not in comment.body and "step 2" in comment.body
    assert sticky.parse_metrics(comment.body)["status"] == "succeeded"


def test_publish_needs_the_report(tmp_path):
    result = _run({}, str(NOTEBOOKS / "trivial.ipynb"), "--publish", "--no-report")
    assert result.exit_code == 2 and "--no-report" in result.output


def test_cli_publish_prints_the_url_and_dry_run_prints_the_body(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    folder = scenarios.bundle(tmp_path / "b", images=1)
    dry = CliRunner().invoke(main, ["publish", str(folder), "--dry-run"], env=s.env)
    assert dry.exit_code == 0 and "<!-- cml-nb:report train -->" in dry.stdout
    assert s.pull.comments == []
    done = CliRunner().invoke(main, ["publish", str(folder)], env=s.env)
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().endswith(f"#issuecomment-{s.pull.comments[0].id}")
    missing = CliRunner().invoke(main, ["publish", str(tmp_path / "nope")], env=s.env)
    assert missing.exit_code == 3
