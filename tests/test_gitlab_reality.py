"""GitLab as it really behaves (issue 12 items 3, 4 and 9): protected branches refuse
statuses, fork merge requests live in the target project, merged-results pipelines take
statuses by id, job tokens are anonymous on note endpoints, notes come in pages.

The real python-gitlab talks HTTP to the forge emulator; each GitLab behaviour the
emulator models cites its source in tests/forge_emulator/gitlab.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from forge_emulator import gitlab as gl
from forge_emulator import scenarios

from cml_nb.errors import ForgeAuthError
from cml_nb.forge import comments as sticky
from cml_nb.publish import publish


def _bundle(tmp_path, name="a", **kw):
    return scenarios.bundle(tmp_path / name, images=0, **kw)


def _main_pipeline(s):
    """The push pipeline on the default branch that runs after a merge, as a Developer."""
    gl.role(s.emulator.state, "project_bot", gl.DEVELOPER)
    pipeline = gl.add_pipeline(s.emulator.state, s.repo, s.repo.head_sha(), "main")
    s.env["CI_PIPELINE_ID"] = str(pipeline)
    return pipeline


# -- item 3: a status on a protected branch -------------------------------------------


def test_status_refused_on_the_default_branch_warns_and_the_comment_stays(
    forge_emulator, tmp_path, caplog
):
    s = scenarios.gitlab(forge_emulator, mr=False)
    _main_pipeline(s)
    result = publish(_bundle(tmp_path), env=s.env, cwd=tmp_path, check=True)
    assert result.action == "created" and result.status_url is None
    assert len(s.repo.commit_comments[s.repo.head_sha()]) == 1  # the report is there
    assert s.repo.statuses == []
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "protected branch" in warning and "Maintainer" in warning
    assert "\n" not in warning


def test_check_required_makes_the_refusal_fatal_with_the_role_needed(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator, mr=False)
    _main_pipeline(s)
    with pytest.raises(ForgeAuthError) as caught:
        publish(_bundle(tmp_path), env=s.env, cwd=tmp_path, check="required")
    message = str(caught.value)
    assert "protected branch" in message and "Maintainer" in message
    assert "Reporter" not in message  # the old, wrong advice


def test_statuses_go_through_where_the_role_allows(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)  # an MR branch is not protected: Developer suffices
    gl.role(forge_emulator.state, "project_bot", gl.DEVELOPER)
    publish(_bundle(tmp_path), env=s.env, cwd=tmp_path, check=True)
    assert [x["sha"] for x in s.repo.statuses] == [s.pull.head_sha]
    gl.role(forge_emulator.state, "project_bot", gl.MAINTAINER)
    env = {**s.env, "CI_COMMIT_SHA": s.repo.head_sha()}
    env.pop("CI_MERGE_REQUEST_IID")
    env.pop("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
    publish(_bundle(tmp_path, "b"), env=env, cwd=tmp_path, check="required", target="commit")
    assert s.repo.statuses[-1]["sha"] == s.repo.head_sha()


def test_cli_exit_codes_for_a_refused_status(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator, mr=False)
    _main_pipeline(s)
    folder = _bundle(tmp_path)
    env = {**os.environ, **s.env}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cml_nb", "publish", str(folder), *args],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip

    warned = cli("--check")
    assert warned.returncode == 0, warned.stderr
    (line,) = [x for x in warned.stderr.splitlines() if "status not recorded" in x]
    assert "Maintainer" in line and "Traceback" not in warned.stderr
    failed = cli("--check=required")
    assert failed.returncode == 4 and "Traceback" not in failed.stderr
    assert "protected branch" in failed.stderr
    assert s.token not in warned.stderr + failed.stderr


# -- item 4: fork merge requests and merged-results pipelines ---------------------------


def test_fork_mr_note_goes_on_the_target_projects_mr(forge_emulator, tmp_path):
    state = forge_emulator.state
    s = scenarios.gitlab(forge_emulator, mr=False)
    upstream = s.repo
    fork = gl.fork(state, upstream, "alice/proj")
    own = state.add_pull(fork, "unrelated")  # the fork's own !1, which must stay untouched
    mr = gl.add_fork_mr(state, upstream, fork, "feature")
    assert own.number == mr.number == 1
    # A fork's MR pipeline runs in the fork: https://docs.gitlab.com/ci/pipelines/merge_request_pipelines/#use-with-forked-projects
    env = {**s.env, "CI_PROJECT_PATH": "alice/proj", "CI_PROJECT_ID": str(fork.id),
           "CI_COMMIT_SHA": mr.head_sha, "CI_MERGE_REQUEST_IID": str(mr.number),
           "CI_MERGE_REQUEST_PROJECT_PATH": "grp/proj", "CI_MERGE_REQUEST_PROJECT_ID": str(upstream.id),
           "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": "alice/proj", "CI_PIPELINE_ID": "77"}  # fmt: skip
    result = publish(_bundle(tmp_path), env=env, cwd=tmp_path, check=True)
    assert result.target.repository == "grp/proj"
    assert len(mr.comments) == 1 and own.comments == []
    assert sticky.parse_metrics(mr.comments[0].body)["sha"] == mr.head_sha
    # The fork's pipeline id means nothing in the target project: not sent there.
    assert [x["sha"] for x in upstream.statuses] == [mr.head_sha]
    assert fork.statuses == []


def test_merged_results_status_joins_the_pipeline_and_makes_no_external_one(
    forge_emulator, tmp_path
):
    state = forge_emulator.state
    s = scenarios.gitlab(forge_emulator)
    repo, mr = s.repo, s.pull
    # The merged-results pipeline runs for a merge commit of the MR into its target.
    merge = repo.git.put_commit(repo.git.commits[mr.head_sha]["tree"],
                                [repo.head_sha(), mr.head_sha], "Merge feature into main")  # fmt: skip
    repo.git.refs[f"merge-requests/{mr.number}/merge"] = merge
    pipeline = gl.add_pipeline(state, repo, merge, f"refs/merge-requests/{mr.number}/merge",
                               "merge_request_event")  # fmt: skip
    env = {**s.env, "CI_COMMIT_SHA": merge, "CI_PIPELINE_ID": str(pipeline),
           "CI_MERGE_REQUEST_EVENT_TYPE": "merged_result",
           "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": mr.head_sha}  # fmt: skip
    result = publish(_bundle(tmp_path), env=env, cwd=tmp_path, check=True)
    assert sticky.parse_metrics(mr.comments[0].body)["sha"] == mr.head_sha  # reports the head
    (status,) = repo.statuses
    assert (status["pipeline_id"], status["sha"]) == (pipeline, merge)
    assert [p["id"] for p in gl.pipelines(state, repo)] == [pipeline]  # no external pipeline
    assert result.target.number == mr.number


# -- item 9: only CI_JOB_TOKEN --------------------------------------------------------


def test_job_token_alone_says_a_gitlab_token_is_needed(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    job = scenarios.fake_token("glcbt-")
    gl.add_job_token(forge_emulator.state, job, "alice")
    env = {k: v for k, v in s.env.items() if k != "GITLAB_TOKEN"} | {"CI_JOB_TOKEN": job}
    with pytest.raises(ForgeAuthError) as caught:
        publish(_bundle(tmp_path), env=env, cwd=tmp_path)
    message = str(caught.value)
    assert "GITLAB_TOKEN" in message and "anonymous" in message and job not in message
    assert s.pull.comments == []
    # The job token really was sent, and GitLab answered as to an anonymous caller.
    sent = forge_emulator.requests(contains="/api/v4/projects/")
    assert sent and sent[0].status == 404


def test_job_token_still_reads_what_gitlab_allows_it(forge_emulator):
    s = scenarios.gitlab(forge_emulator)
    job = scenarios.fake_token("glcbt-")
    gl.add_job_token(forge_emulator.state, job, "alice")
    from cml_nb.forge.gitlab import GitLabForge

    forge = GitLabForge(str(s.repo.id), token=job, api_url=forge_emulator.gitlab_api,
                        token_name="CI_JOB_TOKEN")  # fmt: skip
    forge._project_obj = forge._gl.projects.get(s.repo.id, lazy=True)  # no GET /projects/:id
    assert forge.read_file("README.md", "main") == b"# test\n"


# -- the emulator: MR notes in pages ------------------------------------------------------


def test_notes_in_pages_of_at_most_100_still_find_the_report(forge_emulator, tmp_path):
    from forge_emulator.state import Comment

    s = scenarios.gitlab(forge_emulator)
    stranger = forge_emulator.state.account("stranger")
    for i in range(130):
        s.pull.comments.append(Comment(forge_emulator.state.next_id(), f"note {i}", stranger))
    publish(_bundle(tmp_path), env=s.env, cwd=tmp_path)  # the newest note: on page 2
    forge_emulator.exchanges.clear()
    again = publish(_bundle(tmp_path, "b", text="v2"), env=s.env, cwd=tmp_path)
    assert again.action == "updated"
    ours = [c for c in s.pull.comments if c.author.login == "project_bot"]
    assert len(ours) == 1 and "v2" in ours[0].body
    pages = [e for e in forge_emulator.requests("GET", "/notes")]
    assert len(pages) >= 2 and all("per_page=100" in e.url for e in pages)


def test_emulator_pagination_headers_follow_gitlab(forge_emulator):
    import json
    import urllib.request

    s = scenarios.gitlab(forge_emulator)
    stranger = forge_emulator.state.account("stranger")
    from forge_emulator.state import Comment

    for i in range(25):
        s.pull.comments.append(Comment(forge_emulator.state.next_id(), f"n{i}", stranger))
    url = f"{forge_emulator.gitlab_api}/projects/{s.repo.id}/merge_requests/{s.pull.number}/notes"
    request = urllib.request.Request(url + "?per_page=500", headers={"PRIVATE-TOKEN": s.token})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["x-per-page"] == "100" and answer.headers["x-next-page"] == ""
        assert len(json.loads(answer.read())) == 25
    with urllib.request.urlopen(urllib.request.Request(url, headers={"PRIVATE-TOKEN": s.token}),
                                timeout=10) as answer:  # fmt: skip
        assert (answer.headers["x-per-page"], answer.headers["x-total"]) == ("20", "25")
        assert answer.headers["x-next-page"] == "2" and 'rel="next"' in answer.headers["Link"]
