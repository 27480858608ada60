"""``cml-nb pr create``: commit changed files to a branch and open (or reuse) a PR/MR."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb.cli import main
from cml_nb.errors import ConfigError, ForgeAuthError
from cml_nb.forge.pulls import create_pull_request


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _github(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    s.env["GITHUB_REF_NAME"] = "main"
    s.repo.actions_can_open_pulls = True  # the setting cml-nb's docs ask for (off by default)
    work = tmp_path / "work"
    work.mkdir()
    return s, work


def test_creates_then_reuses_the_pull_request(forge_emulator, tmp_path):
    s, work = _github(forge_emulator, tmp_path)
    (work / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    (work / "README.md").write_bytes(b"# test\n")  # identical to the repository's: not committed
    first = create_pull_request(["*.json", "README.md"], env=s.env, cwd=work, body="the report")
    assert first.action == "created" and first.committed == ["metrics.json"]
    pull = s.repo.pulls[first.number]
    assert (pull.head, pull.base, pull.body) == (first.branch, "main", "the report")
    tip = s.repo.git.refs[f"heads/{first.branch}"]
    assert "[skip ci]" in s.repo.git.commits[tip]["message"]
    assert s.repo.git.commits[tip]["parents"] == [s.repo.head_sha()]
    assert s.repo.git.read(first.branch, "metrics.json") == json.dumps({"accuracy": 0.9}).encode()
    assert s.repo.git.read(first.branch, "README.md") == b"# test\n"

    again = create_pull_request(["*.json"], env=s.env, cwd=work, body="report v2")
    assert again.action == "updated" and again.number == first.number and again.committed == []
    assert s.repo.git.refs[f"heads/{first.branch}"] == tip and len(s.repo.pulls) == 1
    assert pull.body == "report v2"

    (work / "metrics.json").write_text(json.dumps({"accuracy": 0.95}))
    third = create_pull_request(["*.json"], env=s.env, cwd=work, skip_ci=False, message="retrain")
    assert third.number == first.number and third.committed == ["metrics.json"]
    new_tip = s.repo.git.refs[f"heads/{first.branch}"]
    assert s.repo.git.commits[new_tip]["parents"] == [tip]
    assert s.repo.git.commits[new_tip]["message"] == "retrain"


def test_nothing_changed_opens_nothing(forge_emulator, tmp_path):
    s, work = _github(forge_emulator, tmp_path)
    (work / "README.md").write_bytes(b"# test\n")
    assert create_pull_request(["README.md"], env=s.env, cwd=work).action == "unchanged"
    assert s.repo.pulls == {}


def test_no_match_and_missing_permission(forge_emulator, tmp_path):
    s, work = _github(forge_emulator, tmp_path)
    with pytest.raises(ConfigError, match="matches no file"):
        create_pull_request(["*.csv"], env=s.env, cwd=work)
    (work / "m.json").write_text("{}")
    s.emulator.state.tokens[s.token].permissions = frozenset({"issues"})
    with pytest.raises(ForgeAuthError, match="contents: write"):
        create_pull_request(["m.json"], env=s.env, cwd=work)


def test_gitlab_merge_request_is_reused(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator, mr=False)
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "metrics.json").write_text('{"f1": 0.8}')
    first = create_pull_request(["out/*.json"], env=s.env, cwd=work)
    second = create_pull_request(["out/*.json"], env=s.env, cwd=work)
    assert first.action == "created" and second.action == "updated"
    assert first.number == second.number and len(s.repo.pulls) == 1
    assert s.repo.git.read(first.branch, "out/metrics.json") == b'{"f1": 0.8}'
    assert s.repo.pulls[first.number].base == "main"
    (work / "out" / "metrics.json").write_text('{"f1": 0.9}')
    (work / "out" / "new.json").write_text("{}")
    third = create_pull_request(["out/*.json"], env=s.env, cwd=work)
    assert third.number == first.number and third.committed == ["out/metrics.json", "out/new.json"]
    assert s.repo.git.read(first.branch, "out/metrics.json") == b'{"f1": 0.9}'
    assert "[skip ci]" in s.repo.git.commits[s.repo.git.refs[f"heads/{first.branch}"]]["message"]


def test_cli_pr_create(forge_emulator, tmp_path):
    s, work = _github(forge_emulator, tmp_path)
    (work / "metrics.json").write_text("{}")
    report = scenarios.bundle(tmp_path / "bundle", images=0)
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        import os

        os.chdir(work)
        result = runner.invoke(main, ["pr", "create", "metrics.json", "--report", str(report)],
                               env=s.env, catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("/pull/1")
    assert "Accuracy went up." in s.repo.pulls[1].body
