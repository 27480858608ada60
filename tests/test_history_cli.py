"""``cml-nb history`` through click, in a real git repository."""

# ruff: noqa: F811  (test parameters named like the imported `repo` fixture)

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cml_nb.cli import main
from tests.test_history import git, repo  # noqa: F401 - the fixture, shared


@pytest.fixture
def in_repo(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(repo)
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN", "REPO_TOKEN", "CI_JOB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return repo


def test_history_table_and_plot(in_repo: Path) -> None:
    result = CliRunner().invoke(
        main, ["history", "--metric", "accuracy", "-m", "loss", "--last", "3", "--ref", "main",
               "--plot", "out/trend.png"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["Commit", "Date", "accuracy", "loss"]
    assert [line.split()[2] for line in lines[1:]] == ["0.8", "0.85", "0.9"]
    assert (in_repo / "out" / "trend.png").read_bytes().startswith(b"\x89PNG")


def test_history_json_and_markdown(in_repo: Path) -> None:
    result = CliRunner().invoke(main, ["history", "-m", "accuracy", "--last", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # the feature branch's head commit has no metrics.json change: same value as main's tip
    assert [p["metrics"]["accuracy"] for p in data["points"]] == [0.9, 0.9]
    assert data["points"][-1]["commit"] == git(in_repo, "rev-parse", "HEAD")
    markdown = CliRunner().invoke(main, ["history", "-m", "accuracy", "--trend", "--plot", "t.png"])
    assert markdown.exit_code == 0 and "![trend of accuracy](t.png)" in markdown.stdout


def test_history_usage_errors(in_repo: Path) -> None:
    assert CliRunner().invoke(main, ["history"]).exit_code == 2  # --metric is required
    bad = CliRunner().invoke(main, ["history", "-m", "a", "--source", "svn"])
    assert bad.exit_code == 2


def test_history_outside_git_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["history", "-m", "accuracy"])
    assert result.exit_code == 0 and "no commits" in result.stdout
