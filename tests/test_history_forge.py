"""The comment source: base metrics from cml-nb's published comment, on the forge emulator."""

# ruff: noqa: F811  (test parameters named like the imported `repo` fixture)

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb import execute, history
from cml_nb.cli import main
from cml_nb.forge.connect import connect, context_for
from cml_nb.publish import publish
from tests.test_history import git, repo  # noqa: F401 - the fixture, shared

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")  # no 1 s pause between writes


def _push(scenario: scenarios.Scenario, sha: str) -> None:
    # The emulated forge learns the local commit, as a `git push` would tell GitHub.
    store = scenario.repo.git
    store.commits[sha] = dict(store.commits[scenario.repo.head_sha()])


def _publish_on(scenario: scenarios.Scenario, sha: str, tmp_path: Path, metrics: dict) -> None:
    folder = scenarios.bundle(tmp_path / f"bundle-{sha[:7]}", images=0, metrics=metrics)
    result = publish(folder, target=f"commit/{sha}", env=scenario.env, cwd=folder)
    assert result.action == "created"


def _scenario(kind: str, emulator, tmp_path: Path) -> scenarios.Scenario:
    if kind == "github":
        return scenarios.github(emulator, tmp_path, pull=False)
    return scenarios.gitlab(emulator, mr=False)


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_base_from_the_hidden_json_of_a_commit_comment(
    forge_emulator, repo: Path, tmp_path: Path, kind: str
) -> None:
    s = _scenario(kind, forge_emulator, tmp_path)
    main_sha = git(repo, "rev-parse", "main")
    _push(s, main_sha)
    _publish_on(s, main_sha, tmp_path, {"accuracy": 0.88, "loss": 0.25})
    forge = connect(context_for(env=s.env))

    base = history.find_baseline("main", forge=forge, cwd=repo, metrics_path="absent.json")
    assert base.source == "comment" and base.metrics == {"accuracy": 0.88, "loss": 0.25}
    assert "cml-nb comment on main" in base.summary()
    assert "git: no absent.json committed at main" in base.tried[0]
    deltas = {
        d.name: d
        for d in history.compare_metrics(
            {"accuracy": 0.9, "loss": 0.3}, base.metrics, {"loss": "min"}
        )
    }
    assert deltas["accuracy"].verdict == "better" and deltas["loss"].verdict == "worse"
    # with a committed metrics.json, the git source comes first and no API call is needed
    calls = len(forge_emulator.exchanges)
    assert history.find_baseline("main", forge=forge, cwd=repo).source == "git"
    assert len(forge_emulator.exchanges) == calls
    # a commit without any comment: nothing found, no error
    older = git(repo, "rev-parse", "main~1")
    _push(s, older)
    none = history.find_baseline(older, forge=forge, cwd=repo, sources=["comment"])
    assert not none.found and "no cml-nb report comment" in none.summary()


def test_a_forge_that_refuses_is_reported_not_raised(
    forge_emulator, repo: Path, tmp_path: Path
) -> None:
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    forge = connect(context_for(env={**s.env, "GITHUB_TOKEN": scenarios.fake_token("ghp_")}))
    base = history.find_baseline("main", forge=forge, cwd=repo, sources=["comment"])
    assert not base.found and "comment:" in base.summary()
    assert s.token not in base.summary()


def test_trend_from_comments_of_three_commits(forge_emulator, repo: Path, tmp_path: Path) -> None:
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    shas = git(repo, "rev-list", "--first-parent", "-n3", "main").splitlines()[::-1]
    for sha, accuracy in zip(shas, [0.7, 0.75, 0.8], strict=True):
        _push(s, sha)
        _publish_on(s, sha, tmp_path, {"accuracy": accuracy})
    result = history.trend(["accuracy"], last=3, ref="main", cwd=repo, sources=["comment"],
                           forge=connect(context_for(env=s.env)))  # fmt: skip
    assert result.values("accuracy") == [0.7, 0.75, 0.8]
    assert {p.source for p in result.points} == {"comment"}
    assert history.plot_trend(result).startswith(b"\x89PNG")


def test_report_cli_compares_with_the_comment(forge_emulator, repo: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    main_sha = git(repo, "rev-parse", "main")
    _push(s, main_sha)
    _publish_on(s, main_sha, tmp_path, {"accuracy": 0.65, "loss": 0.2})
    for name, value in s.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(repo)
    shutil.copy(NOTEBOOKS / "emits_metrics.ipynb", repo / "train.ipynb")
    execute.run(repo / "train.ipynb", repo / "out" / "train.ipynb", {"lr": 0.1})  # accuracy 0.6

    result = CliRunner().invoke(main, [
        "report", "out/train.ipynb", "-o", "bundle", "--compare-to", "main", "--goal", "loss=min",
        "--source", "comment", "--fail-on-regression", "accuracy:0.01",
    ])  # fmt: skip
    assert result.exit_code == 6, result.output
    assert "regression gate failed" in result.output and s.token not in result.output
    markdown = (repo / "bundle" / "report.md").read_text()
    assert "| accuracy | 0.6 | 0.65 | -0.05 (-7.7%) 🔴 |" in markdown
    assert "| loss | 0.333333 | 0.2 | +0.1333 (+66.7%) 🔴 |" in markdown
    assert "Base: cml-nb comment on main" in markdown
