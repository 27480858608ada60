"""CI context detection and the forge registry."""

from __future__ import annotations

import json
import subprocess

import pytest

from cml_nb.errors import ConfigError, ForgeAuthError
from cml_nb.forge import available, get_forge
from cml_nb.forge.connect import context_for
from cml_nb.forge.context import detect, parse_remote
from cml_nb.publish import parse_target


def test_github_actions_pull_request_reports_on_the_head_commit(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps({"pull_request": {"number": 7, "head": {"sha": "a" * 40, "ref": "topic"}}})
    )
    ctx = detect({"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "octo/demo", "GITHUB_SHA": "m" * 40,
                  "GITHUB_EVENT_PATH": str(event), "GITHUB_API_URL": "https://ghe.example/api/v3",
                  "GH_TOKEN": "ghp_x"}, tmp_path)  # fmt: skip
    assert (ctx.forge, ctx.repository, ctx.pr_number, ctx.sha, ctx.branch) == (
        "github", "octo/demo", 7, "a" * 40, "topic")  # fmt: skip
    assert ctx.api_url == "https://ghe.example/api/v3"
    assert (ctx.token, ctx.token_name) == ("ghp_x", "GH_TOKEN")
    assert "ghp_x" not in repr(ctx)


def test_github_actions_push_uses_github_sha(tmp_path):
    ctx = detect({"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r", "GITHUB_SHA": "b" * 40,
                  "GITHUB_REF_NAME": "main", "REPO_TOKEN": "t" * 10}, tmp_path)  # fmt: skip
    assert ctx.pr_number is None and ctx.sha == "b" * 40 and ctx.api_url == "https://api.github.com"
    assert ctx.token_name == "REPO_TOKEN"


def test_gitlab_merge_request_pipeline(tmp_path):
    ctx = detect({"GITLAB_CI": "true", "CI_API_V4_URL": "https://gl.example/api/v4",
                  "CI_PROJECT_PATH": "grp/sub/proj", "CI_MERGE_REQUEST_IID": "12",
                  "CI_COMMIT_SHA": "c" * 40, "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": "d" * 40,
                  "CI_JOB_TOKEN": "job-token-value"}, tmp_path)  # fmt: skip
    assert (ctx.forge, ctx.repository, ctx.pr_number, ctx.sha) == (
        "gitlab",
        "grp/sub/proj",
        12,
        "d" * 40,
    )
    assert ctx.token_name == "CI_JOB_TOKEN"


def test_gitlab_token_preferred_over_job_token(tmp_path):
    ctx = detect({"GITLAB_CI": "true", "CI_PROJECT_ID": "5", "CI_JOB_TOKEN": "j" * 10,
                  "GITLAB_TOKEN": "glpat-" + "x" * 20}, tmp_path)  # fmt: skip
    assert ctx.token_name == "GITLAB_TOKEN" and ctx.repository == "5"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/octo/demo.git", ("github.com", "octo/demo")),
        ("git@github.com:octo/demo.git", ("github.com", "octo/demo")),
        (
            "ssh://git@gitlab.example.com:2222/grp/sub/proj.git",
            ("gitlab.example.com", "grp/sub/proj"),
        ),
        ("https://user:pw@gitlab.com/grp/proj", ("gitlab.com", "grp/proj")),
    ],
)
def test_parse_remote(url, expected):
    assert parse_remote(url) == expected


def test_outside_ci_reads_the_git_remote(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "topic")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x")
    git("remote", "add", "origin", "git@github.example.com:octo/demo.git")
    ctx = detect({}, tmp_path)
    assert (ctx.forge, ctx.repository, ctx.branch) == ("github", "octo/demo", "topic")
    assert ctx.api_url == "https://github.example.com/api/v3" and len(ctx.sha or "") == 40
    assert detect({"GITHUB_API_URL": "http://127.0.0.1:1/api/v3"}, tmp_path).api_url == (
        "http://127.0.0.1:1/api/v3")  # fmt: skip


def test_flags_override_and_missing_pieces_say_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match="--forge"):
        context_for(env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="--repo"):
        context_for(forge="gitlab", env={}, cwd=tmp_path)
    ctx = context_for(forge="gitlab", repo="g/p", env={"GITLAB_TOKEN": "glpat-" + "y" * 20,
                      "CI_API_V4_URL": "http://127.0.0.1:9/api/v4"}, cwd=tmp_path)  # fmt: skip
    assert (ctx.token_name, ctx.api_url) == ("GITLAB_TOKEN", "http://127.0.0.1:9/api/v4")
    assert (
        context_for(forge="github", repo="o/r", token="tok", env={}, cwd=tmp_path).token_name
        == "--token"
    )


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("auto", ("auto", None)), (None, ("auto", None)), ("pr/3", ("pr", "3")), ("mr/4", ("pr", "4")),
     ("commit", ("commit", None)), ("commit/abc123", ("commit", "abc123")), ("issue/9", ("issue", "9"))],
)  # fmt: skip
def test_parse_target(spec, parsed):
    assert parse_target(spec) == parsed


@pytest.mark.parametrize("spec", ["pr/x", "issue", "branch/main", "pr/1/2"])
def test_bad_targets(spec):
    with pytest.raises(ConfigError, match="target"):
        parse_target(spec)


def test_registry():
    assert {"github", "gitlab"} <= set(available())
    with pytest.raises(ConfigError, match="github, gitlab"):
        get_forge("bitbucket", "o/r", token="t")
    with pytest.raises(ForgeAuthError, match="GITHUB_TOKEN"):
        get_forge("github", "o/r", token=None)
    with pytest.raises(ForgeAuthError, match="GITLAB_TOKEN"):
        get_forge("gitlab", "o/r", token=None)


def test_gitlab_fork_mr_pipeline_names_the_target_project(tmp_path):
    ctx = detect({"GITLAB_CI": "true", "CI_API_V4_URL": "https://gl.example/api/v4",
                  "CI_PROJECT_PATH": "alice/proj", "CI_MERGE_REQUEST_IID": "3",
                  "CI_MERGE_REQUEST_PROJECT_PATH": "grp/proj", "CI_MERGE_REQUEST_PROJECT_ID": "9",
                  "CI_PIPELINE_ID": "41", "CI_COMMIT_SHA": "c" * 40}, tmp_path)  # fmt: skip
    assert (ctx.repository, ctx.pr_number) == ("grp/proj", 3)
    assert ctx.pipeline is not None and ctx.pipeline.project == "alice/proj"
    branch = detect({"GITLAB_CI": "true", "CI_PROJECT_PATH": "alice/proj",
                     "CI_MERGE_REQUEST_PROJECT_PATH": "grp/proj"}, tmp_path)  # fmt: skip
    assert branch.repository == "alice/proj"  # no MR: the pipeline's own project


def test_gitlab_merged_results_pipeline(tmp_path):
    ctx = detect({"GITLAB_CI": "true", "CI_SERVER_URL": "https://gl.example", "CI_PROJECT_PATH": "g/p",
                  "CI_MERGE_REQUEST_IID": "3", "CI_PIPELINE_ID": "41", "CI_COMMIT_SHA": "m" * 40,
                  "CI_MERGE_REQUEST_EVENT_TYPE": "merged_result",
                  "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": "h" * 40}, tmp_path)  # fmt: skip
    assert ctx.sha == "h" * 40 and ctx.api_url == "https://gl.example/api/v4"
    assert ctx.pipeline is not None
    assert (ctx.pipeline.id, ctx.pipeline.sha, ctx.pipeline.merged_results) == (41, "m" * 40, True)
