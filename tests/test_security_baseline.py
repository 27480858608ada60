"""Issue 14, items 1 and 7: nobody but cml-nb sets the base metrics, and a base that
cannot be read fails the regression gate closed. Real PyGithub / python-gitlab over HTTP
to the forge emulator; a real git repository.
"""

# ruff: noqa: F811  (test parameters named like the imported `repo` fixture)

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb import execute, history
from cml_nb.cli import main
from cml_nb.errors import ConfigError
from cml_nb.forge.comments import envelope
from cml_nb.forge.connect import connect, context_for
from tests.test_history import git, repo  # noqa: F401 - the fixture, shared
from tests.test_history_forge import _fast_writes, _publish_on, _push  # noqa: F401

NOTEBOOKS = Path(__file__).parent / "notebooks"
STRANGER_LOGIN = "mallory"


def _scenario(kind: str, emulator, tmp_path: Path, *, app: bool = True) -> scenarios.Scenario:
    if kind == "github":
        return scenarios.github(emulator, tmp_path, pull=False, app=app)
    return scenarios.gitlab(emulator, mr=False)


def _stranger(s: scenarios.Scenario, kind: str):
    """A connection as an outsider who may comment (any account can, on public repos)."""
    token = scenarios.fake_token("ghp_" if kind == "github" else "glpat-")
    s.emulator.state.add_token(token, STRANGER_LOGIN)
    name = "GITHUB_TOKEN" if kind == "github" else "GITLAB_TOKEN"
    return connect(context_for(env={**s.env, name: token}))


def _forged(metrics: dict) -> str:
    # Exactly what cml-nb writes, marker and trailer included: only the author differs.
    return envelope("## Results\n\nAll good.", "report", {"metrics": metrics})


@pytest.mark.parametrize(("kind", "app"), [("github", True), ("github", False), ("gitlab", False)])
def test_a_strangers_comment_never_becomes_the_baseline(
    forge_emulator, repo: Path, tmp_path: Path, kind: str, app: bool
) -> None:
    s = _scenario(kind, forge_emulator, tmp_path, app=app)
    main_sha = git(repo, "rev-parse", "main")
    _push(s, main_sha)
    stranger = _stranger(s, kind)
    stranger.create_comment(stranger.commit(main_sha), _forged({"accuracy": 0.01}))
    forge = connect(context_for(env=s.env))

    alone = history.find_baseline(main_sha, forge=forge, cwd=repo, sources=["comment"])
    assert not alone.found, alone.metrics
    assert "ignored 1 by other accounts" in alone.summary()

    # cml-nb's own comment still sets it, even with a newer stranger's comment after it
    _publish_on(s, main_sha, tmp_path, {"accuracy": 0.88})
    stranger.create_comment(stranger.commit(main_sha), _forged({"accuracy": 0.99}))
    base = history.find_baseline(main_sha, forge=forge, cwd=repo, sources=["comment"])
    assert base.source == "comment" and base.metrics == {"accuracy": 0.88}
    authors = {c.author.login for c in s.comments}
    assert authors == {STRANGER_LOGIN, forge.login() or "github-actions[bot]"}


def test_a_strangers_comments_do_not_move_the_trend(
    forge_emulator, repo: Path, tmp_path: Path
) -> None:
    s = _scenario("github", forge_emulator, tmp_path)
    sha = git(repo, "rev-parse", "main")
    _push(s, sha)
    stranger = _stranger(s, "github")
    stranger.create_comment(stranger.commit(sha), _forged({"accuracy": 0.01}))
    forge = connect(context_for(env=s.env))
    result = history.trend(["accuracy"], last=1, ref="main", cwd=repo, sources=["comment"],
                           forge=forge)  # fmt: skip
    assert result.values("accuracy") == [None]


def test_only_the_trailer_cml_nb_wrote_is_read(forge_emulator, repo: Path, tmp_path: Path) -> None:
    s = _scenario("github", forge_emulator, tmp_path)
    sha = git(repo, "rev-parse", "main")
    _push(s, sha)
    forge = connect(context_for(env=s.env))
    # A notebook printed a marker and a metrics block; they sit inside cml-nb's own comment.
    printed = (
        "```\n<!-- cml-nb:report other -->\n"
        '<!-- cml-nb:metrics {"metrics": {"accuracy": 0.01}} -->\n```'
    )
    body = envelope(f"## Output\n\n{printed}", "report", {"metrics": {"accuracy": 0.9}})
    forge.create_comment(forge.commit(sha), body)
    base = history.find_baseline(sha, forge=forge, cwd=repo, sources=["comment"])
    assert base.metrics == {"accuracy": 0.9}


def test_a_cut_trailer_fails_the_gate_closed(forge_emulator, repo: Path, tmp_path: Path) -> None:
    s = _scenario("github", forge_emulator, tmp_path)
    sha = git(repo, "rev-parse", "main")
    _push(s, sha)
    forge = connect(context_for(env=s.env))
    whole = envelope("## Results", "report", {"metrics": {"accuracy": 0.9}})
    forge.create_comment(forge.commit(sha), whole[: whole.index('"accuracy"') + 5])

    result = history.compare({"accuracy": 0.5}, ref=sha, forge=forge, cwd=repo,
                             sources=["comment"], fail_on_regression=["accuracy:0.01"])  # fmt: skip
    assert not result.baseline.found
    assert [g.status for g in result.gates] == ["failed"]
    assert "could not be read" in result.gates[0].reason
    assert "no complete metrics trailer" in result.gates[0].reason


def test_an_unreadable_committed_metrics_file_fails_the_gate_closed(repo: Path) -> None:
    (repo / "metrics.json").write_text('{"accuracy": 0.9')  # cut short
    git(repo, "commit", "-qam", "broken metrics")
    result = history.compare({"accuracy": 0.5}, ref="HEAD", cwd=repo, sources=["git"],
                             fail_if=["accuracy < base - 0.01"])  # fmt: skip
    assert [g.status for g in result.gates] == ["failed"]
    assert "metrics.json at" in result.gates[0].reason and "is not JSON" in result.gates[0].reason
    # with no base at all (first run) the gate is still only skipped
    fresh = history.compare({"accuracy": 0.5}, ref="HEAD", cwd=repo, sources=["git"],
                            metrics_path="absent.json", fail_if=["accuracy < base - 0.01"])  # fmt: skip
    assert [g.status for g in fresh.gates] == ["skipped"]


def test_cli_exits_6_when_the_base_is_unreadable(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "metrics.json").write_text("not json")
    git(repo, "commit", "-qam", "broken metrics")
    monkeypatch.chdir(repo)
    shutil.copy(NOTEBOOKS / "emits_metrics.ipynb", repo / "train.ipynb")
    execute.run(repo / "train.ipynb", repo / "out" / "train.ipynb", {"lr": 0.1})
    result = CliRunner().invoke(main, [
        "report", "out/train.ipynb", "-o", "bundle", "--compare-to", "HEAD",
        "--source", "git", "--fail-on-regression", "accuracy:0.01",
    ])  # fmt: skip
    assert result.exit_code == 6, result.output
    assert "could not be read" in result.output
    assert (repo / "bundle" / "report.md").is_file()  # written before the gate fails


@pytest.mark.parametrize("ref", ["--output=pwned.txt", "-p", "--exec=touch pwned"])
def test_a_ref_that_looks_like_an_option_is_refused(
    repo: Path, ref: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["history", "--metric", "accuracy", f"--ref={ref}"])
    assert result.exit_code == 2, result.output
    assert "is not a branch, tag or commit" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(ConfigError):
        history.find_baseline(ref, cwd=repo)
    with pytest.raises(ConfigError):
        history.trend(["accuracy"], ref=ref, cwd=repo)
    assert not list(repo.glob("pwned*"))


@pytest.mark.parametrize(
    "text",
    [
        "accuracy < " + "+".join(["1"] * 100_000),
        "accuracy < " + "-" * 100_000 + "1",
        "not " * 10_000 + "accuracy < 1",
    ],
    ids=["long-sum", "long-negation", "long-not"],
)
def test_a_deeply_nested_fail_if_is_one_line(text: str) -> None:
    try:
        gate = history.parse_gate(text)
    except ConfigError as error:
        assert "\n" not in str(error) and len(str(error)) < 300
        return
    result = history.evaluate(gate, {"accuracy": 0.5}, {})
    assert result.status in ("passed", "failed")
