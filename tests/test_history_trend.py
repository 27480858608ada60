"""Trends across commits of a real git repository: table, plot, sources, shallow clones."""

# ruff: noqa: F811  (test parameters named like the imported `repo` fixture)

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from cml_nb import history
from cml_nb.errors import ConfigError
from cml_nb.records import RunRecord
from tests.test_history import GIT_ENV, commit_metrics, git, repo  # noqa: F401 - the fixture, shared


def test_trend_over_three_commits(repo: Path, tmp_path: Path) -> None:
    result = history.trend(["accuracy", "loss"], last=5, ref="main", cwd=repo)
    assert [p.subject for p in result.points] == [
        "start", "train acc 0.8", "train acc 0.85", "train acc 0.9",
    ]  # fmt: skip
    assert result.values("accuracy") == [None, 0.80, 0.85, 0.90]
    assert result.values("loss") == [None, 0.5, 0.4, 0.3]
    assert [p.source for p in result.points] == ["", "git", "git", "git"]

    text = history.trend_text(result)
    assert text.splitlines()[0].split()[:4] == ["Commit", "Date", "accuracy", "loss"]
    assert "0.85" in text and git(repo, "rev-parse", "--short=7", "main") in text

    png = history.plot_trend(result, tmp_path / "plots" / "trend.png")
    assert png.startswith(b"\x89PNG") and (tmp_path / "plots" / "trend.png").read_bytes() == png
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[0] > 200 and image.shape[1] > 500  # a real figure, not an empty file


def test_last_limits_and_this_run_is_appended(repo: Path) -> None:
    result = history.trend(
        ["accuracy"], last=2, ref="main", cwd=repo, head_metrics={"accuracy": 0.95}
    )
    assert [p.label for p in result.points][-1] == "this run"
    assert result.values("accuracy") == [0.85, 0.90, 0.95]
    markdown = history.trend_markdown(result, image="assets/trend.png")
    assert "![trend of accuracy](assets/trend.png)" in markdown
    assert "| this run |" in markdown and "<details>" in markdown


def test_records_fill_commits_without_a_committed_file(repo: Path, tmp_path: Path) -> None:
    # the feature branch's last commit has no metrics.json change, but a cached run record
    head = git(repo, "rev-parse", "HEAD")
    RunRecord("nb.ipynb", "o.ipynb", "succeeded", metrics={"accuracy": 0.97},
              environment={"git": {"commit": head}}).write(tmp_path / "cache" / "r1")  # fmt: skip
    result = history.trend(["accuracy"], last=2, cwd=repo, history_dir=tmp_path / "cache",
                           sources=["records"])  # fmt: skip
    assert result.values("accuracy") == [None, 0.97]
    assert [p.source for p in result.points] == ["", "records"]


def test_shallow_clone_says_how_to_get_more(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth=2", "--branch", "main", repo.as_uri(), str(clone)],
                   check=True, timeout=60, capture_output=True, env={**os.environ, **GIT_ENV})  # fmt: skip
    result = history.trend(["accuracy"], last=10, cwd=clone)
    assert len(result.points) == 2 and "fetch-depth: 0" in " ".join(result.notes)


def test_no_values_anywhere_is_a_note_not_an_error(repo: Path, tmp_path: Path) -> None:
    result = history.trend(["f1"], last=3, cwd=repo)
    assert result.values("f1") == [None, None, None]
    assert "no value of f1" in " ".join(result.notes)
    assert history.plot_trend(result).startswith(b"\x89PNG")
    outside = history.trend(["f1"], cwd=tmp_path)
    assert outside.points == [] and "no commits" in outside.notes[0]


def test_trend_needs_a_metric() -> None:
    with pytest.raises(ConfigError, match="--metric"):
        history.trend([])
    with pytest.raises(ConfigError, match="--last"):
        history.trend(["a"], last=0)
