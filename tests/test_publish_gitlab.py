"""Publishing to GitLab through the real python-gitlab against the forge emulator."""

from __future__ import annotations

import urllib.request

import pytest
from forge_emulator import scenarios

from cml_nb.errors import ForgeAuthError
from cml_nb.forge import comments as sticky
from cml_nb.forge import get_forge
from cml_nb.history.comments import report_metrics
from cml_nb.publish import publish


def test_two_publishes_leave_one_note_and_upload_images_once(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    first = publish(scenarios.bundle(tmp_path / "a", images=2), env=s.env, cwd=tmp_path)
    assert first.action == "created" and first.target.kind == "pr"
    assert first.target.number == s.pull.number
    assert len(s.repo.uploads) == 2 and len(first.uploaded) == 2
    assert first.url.endswith(f"/-/merge_requests/{s.pull.number}#note_{s.pull.comments[0].id}")

    second = publish(scenarios.bundle(tmp_path / "b", images=2, text="v2"), env=s.env, cwd=tmp_path)
    assert second.action == "updated" and second.uploaded == [] and len(second.reused) == 2
    assert len(s.repo.uploads) == 2
    assert len(s.pull.comments) == 1 and "v2" in s.pull.comments[0].body
    assert sticky.parse_metrics(s.pull.comments[0].body)["sha"] == s.pull.head_sha
    # The links are GitLab's own upload paths, served under the project.
    upload = s.repo.uploads[0]
    assert f"({upload['url']})" in s.pull.comments[0].body
    with urllib.request.urlopen(forge_emulator.root + upload["full_path"], timeout=10) as r:
        assert r.read() == upload["data"]


def test_commit_target_uses_discussions_and_updates_in_place(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator, mr=False)
    folder = scenarios.bundle(tmp_path / "a", images=0)
    assert publish(folder, env=s.env, cwd=tmp_path).target.kind == "commit"
    again = publish(folder, env=s.env, cwd=tmp_path)
    assert again.action == "updated"
    assert len(s.repo.commit_comments[s.repo.head_sha()]) == 1


def test_commit_status_carries_the_outcome(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    publish(scenarios.bundle(tmp_path / "a", images=0, status="failed"), env=s.env, cwd=tmp_path,
            check=True)  # fmt: skip
    publish(scenarios.bundle(tmp_path / "b", images=0), env=s.env, cwd=tmp_path, check=True,
            marker="eval")  # fmt: skip
    assert [(x["status"], x["name"], x["sha"]) for x in s.repo.statuses] == [
        ("failed", "cml-nb/train", s.pull.head_sha),
        ("success", "cml-nb/eval", s.pull.head_sha),
    ]
    assert s.repo.statuses[0]["target_url"].startswith(forge_emulator.root)


def test_transient_faults_are_retried_without_duplicates(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    forge_emulator.faults.too_many_requests("GET", r"/notes$")
    forge_emulator.faults.bad_gateway("POST", r"/notes$", after=True)  # created, answer lost
    forge_emulator.faults.bad_gateway("POST", r"/uploads$")
    publish(scenarios.bundle(tmp_path / "a", images=1), env=s.env, cwd=tmp_path)
    assert len(s.pull.comments) == 1
    assert len(s.repo.uploads) == 1


def test_missing_scope_fails_with_the_fix(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator, permissions={"contents"})
    with pytest.raises(ForgeAuthError) as caught:
        publish(scenarios.bundle(tmp_path / "a", images=0), env=s.env, cwd=tmp_path)
    assert "GITLAB_TOKEN" in str(caught.value) and "`api`" in str(caught.value)


def test_auto_finds_the_open_mr_for_a_branch_pipeline(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    env = {k: v for k, v in s.env.items() if k != "CI_MERGE_REQUEST_IID"}
    result = publish(scenarios.bundle(tmp_path / "a", images=0), env=env, cwd=tmp_path)
    assert result.target.kind == "pr" and result.target.number == s.pull.number


def test_history_reads_metrics_and_files(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    publish(
        scenarios.bundle(tmp_path / "a", images=0, metrics={"f1": 0.7}), env=s.env, cwd=tmp_path
    )
    forge = get_forge("gitlab", "grp/proj", token=s.token, api_url=forge_emulator.gitlab_api)
    assert report_metrics(forge, s.pull.head_sha).payload["metrics"] == {"f1": 0.7}
    assert forge.read_file("README.md", "main") == b"# test\n"
    assert forge.read_file("nope", "main") is None


def test_concurrent_publishes_leave_one_note(forge_emulator, tmp_path):
    import threading

    s = scenarios.gitlab(forge_emulator)
    forge_emulator.faults.add("POST", r"/notes$", 0, times=2, delay=1.5)
    folders = [scenarios.bundle(tmp_path / f"b{i}", images=0, text=f"job {i}") for i in range(2)]
    threads = [threading.Thread(target=publish, args=(f,), kwargs={"env": s.env}) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(forge_emulator.requests("POST", "/notes")) == 2
    assert len(s.pull.comments) == 1


def test_issue_and_explicit_mr_targets(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    issue = s.emulator.state.add_issue(s.repo)
    folder = scenarios.bundle(tmp_path / "a", images=0)
    assert publish(folder, env=s.env, target=f"issue/{issue.number}").target.kind == "issue"
    assert publish(folder, env=s.env, target=f"mr/{s.pull.number}").action == "created"
    assert len(issue.comments) == 1 and len(s.pull.comments) == 1
