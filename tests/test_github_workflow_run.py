"""``workflow_run``: the second workflow of GitHub's pattern for reports on PRs from forks.

Its GITHUB_SHA is the default branch's tip; the report must still land on the PR
(named by ``workflow_run.pull_requests``, or, for forks where that list is empty,
found by ``head_repository`` + ``head_branch`` at ``head_sha``) and never on the
default branch, whose report comments are everyone's baseline.
"""

from __future__ import annotations

import pytest
from forge_emulator import scenarios

from cml_nb.errors import TargetNotFoundError
from cml_nb.forge import comments as sticky
from cml_nb.forge import get_forge
from cml_nb.forge.context import detect
from cml_nb.history.comments import report_metrics
from cml_nb.publish import publish


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _baseline(s: scenarios.Scenario):  # type: ignore[no-untyped-def]
    forge = get_forge("github", "octo/demo", token=s.token, api_url=s.emulator.github_api)
    return report_metrics(forge, s.repo.head_sha()).payload


@pytest.mark.parametrize("fork", [False, True], ids=["listed-pr", "fork-pr-not-listed"])
def test_workflow_run_reports_on_the_pull_request_and_its_head(forge_emulator, tmp_path, fork):
    s = scenarios.github_workflow_run(forge_emulator, tmp_path, fork=fork)
    assert s.pull is not None and s.env["GITHUB_SHA"] == s.repo.head_sha()  # the default tip
    folder = scenarios.bundle(tmp_path / "b", images=1, metrics={"accuracy": 0.99})
    result = publish(folder, env=s.env, cwd=tmp_path, check=True)
    assert (result.target.kind, result.target.number) == ("pr", s.pull.number)
    (comment,) = s.pull.comments
    assert sticky.parse_metrics(comment.body)["sha"] == s.pull.head_sha
    assert s.repo.commit_comments == {}  # nothing on the default branch
    assert [r["head_sha"] for r in s.repo.check_runs] == [s.pull.head_sha]
    assert _baseline(s) is None  # the PR's metrics did not become the baseline


def test_workflow_run_context_names_the_head_not_github_sha(forge_emulator, tmp_path):
    s = scenarios.github_workflow_run(forge_emulator, tmp_path, fork=True)
    ctx = detect(s.env, tmp_path)
    assert ctx.sha == s.pull.head_sha and ctx.sha != s.env["GITHUB_SHA"]
    assert (ctx.head_owner, ctx.branch, ctx.pr_number) == ("mallory", "patch-1", None)
    assert ctx.for_pull_request


def test_workflow_run_without_an_open_pr_fails_and_comments_nowhere(forge_emulator, tmp_path):
    s = scenarios.github_workflow_run(forge_emulator, tmp_path, fork=True)
    s.pull.state = "closed"
    with pytest.raises(TargetNotFoundError, match="--target pr/N") as caught:
        publish(scenarios.bundle(tmp_path / "b", images=0), env=s.env, cwd=tmp_path)
    assert "\n" not in str(caught.value)
    assert s.repo.all_comments() == []
    assert _baseline(s) is None


def test_workflow_run_ignores_a_fork_pr_whose_head_moved_on(forge_emulator, tmp_path):
    s = scenarios.github_workflow_run(forge_emulator, tmp_path, fork=True)
    # Same owner and branch, but the run was for an older commit: not this PR's report.
    s.repo.git.refs[s.pull.head_ref] = s.pull.head_sha = s.repo.head_sha()
    with pytest.raises(TargetNotFoundError):
        publish(scenarios.bundle(tmp_path / "b", images=0), env=s.env, cwd=tmp_path)
    assert s.repo.all_comments() == []
