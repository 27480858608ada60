"""Where am I publishing? The CI context from GitHub Actions, GitLab CI, or ``git remote``.

``detect()`` reads environment variables the CI system sets (and, for pull
requests on GitHub, the event payload at ``GITHUB_EVENT_PATH``, which names the
PR's head commit rather than the merge commit the job checked out). Outside CI it
falls back to the ``origin`` remote and ``HEAD`` of the working copy. Flags
override any of it through ``ForgeContext.override``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cml_nb.forge import hosts

GITHUB_API = "https://api.github.com"

#: Token variables tried in order, per forge.
TOKEN_VARIABLES = {
    "github": ("GITHUB_TOKEN", "GH_TOKEN", "REPO_TOKEN"),
    "gitlab": ("GITLAB_TOKEN", "REPO_TOKEN", "CI_JOB_TOKEN"),
}

_REMOTE = re.compile(
    r"^(?:(?P<scheme>https?|ssh|git)://(?:[^@/]+@)?(?P<host>[^/:]+)(?::\d+)?/"
    r"|(?:[^@]+@)?(?P<scphost>[^:/]+):)(?P<path>.+?)(?:\.git)?/?$"
)


@dataclass(frozen=True)
class Pipeline:
    """The GitLab CI pipeline this job runs in (commit statuses join it).

    Attributes:
        id: ``CI_PIPELINE_ID``.
        sha: the commit the pipeline runs for (``CI_COMMIT_SHA``: in merged-results and
            merge-train pipelines the merge commit, not the MR's head).
        project: the project the pipeline belongs to (``CI_PROJECT_PATH``; a fork's for
            fork merge requests).
        merged_results: a merged-results or merge-train pipeline.
        head: the merge request's head commit in such a pipeline
            (``CI_MERGE_REQUEST_SOURCE_BRANCH_SHA``), which reports describe.
    """

    id: int
    sha: str
    project: str
    merged_results: bool = False
    head: str | None = None


@dataclass(frozen=True)
class ForgeContext:
    """What the environment says about the forge, repository and commit.

    Attributes:
        forge: ``github``, ``gitlab`` or None when unknown.
        repository: ``owner/name`` (GitLab: the project path), or None.
        api_url: the REST API root (``GITHUB_API_URL``, ``CI_API_V4_URL``), or None.
        token: the token found, or None.
        token_name: where the token came from, for messages (``GITHUB_TOKEN``, ``--token``).
        sha: the commit to report on (a PR's head commit, not the merge commit).
        pr_number: the PR/MR number of this CI run, when it runs for one.
        branch: the branch checked out (the PR's head branch in PR runs).
        ci: ``github-actions``, ``gitlab-ci`` or None.
        api_source: where ``api_url`` came from, for messages (``GITHUB_API_URL``,
            ``git remote origin``, ``--api-url``).
        remote_host: the host of the ``origin`` remote outside CI, when there is one.
        pipeline: the GitLab CI pipeline of this job, when in one.
        head_owner: the owner of the PR's head repository when the event names the PR
            by its head only (a ``workflow_run`` for a PR from a fork).
        for_pull_request: the event is about a pull request (a ``workflow_run`` after a
            ``pull_request`` run): never fall back to a commit comment.
    """

    forge: str | None = None
    repository: str | None = None
    api_url: str | None = None
    token: str | None = None
    token_name: str | None = None
    sha: str | None = None
    pr_number: int | None = None
    branch: str | None = None
    ci: str | None = None
    api_source: str | None = None
    remote_host: str | None = None
    pipeline: Pipeline | None = None
    head_owner: str | None = None
    for_pull_request: bool = False

    def override(self, **values: Any) -> ForgeContext:
        """A copy with the given non-None values replacing detected ones."""
        given = {k: v for k, v in values.items() if v is not None}
        if "token" in given and "token_name" not in given:
            given["token_name"] = "--token"
        if "api_url" in given and "api_source" not in given:
            given["api_source"] = "--api-url"
        return replace(self, **given)

    def __repr__(self) -> str:  # never show the token
        shown = {k: v for k, v in self.__dict__.items() if k != "token"}
        return f"ForgeContext({shown}, token={'set' if self.token else 'unset'})"


def _git(args: list[str], cwd: Path | None) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def parse_remote(url: str) -> tuple[str, str] | None:
    """``(host, path)`` of a git remote URL (https, ssh or scp-like), None if unparseable."""
    found = _REMOTE.match(url.strip())
    if found is None:
        return None
    host = found.group("host") or found.group("scphost")
    return host, found.group("path").strip("/")


def _token(forge: str | None, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    names = TOKEN_VARIABLES.get(forge or "", TOKEN_VARIABLES["github"] + TOKEN_VARIABLES["gitlab"])
    for name in names:
        if env.get(name):
            return env[name], name
    return None, None


def _github_actions(env: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "forge": "github",
        "ci": "github-actions",
        "repository": env.get("GITHUB_REPOSITORY"),
        "api_url": env.get("GITHUB_API_URL") or GITHUB_API,
        "api_source": "GITHUB_API_URL" if env.get("GITHUB_API_URL") else "GitHub Actions",
        "sha": env.get("GITHUB_SHA"),
        "branch": env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"),
    }
    event: dict[str, Any] = {}
    if env.get("GITHUB_EVENT_PATH"):
        try:
            event = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
        except (OSError, ValueError):
            event = {}
    pull = event.get("pull_request") if isinstance(event, dict) else None
    if isinstance(pull, dict) and pull.get("number"):
        found["pr_number"] = int(pull["number"])
        head = pull.get("head") or {}
        found["sha"] = head.get("sha") or found["sha"]
        found["branch"] = head.get("ref") or found["branch"]
    issue = event.get("issue") if isinstance(event, dict) else None
    if isinstance(issue, dict) and issue.get("pull_request") and issue.get("number"):
        found["pr_number"] = int(issue["number"])  # issue_comment on a PR
    run = event.get("workflow_run") if isinstance(event, dict) else None
    if env.get("GITHUB_EVENT_NAME") == "workflow_run" and isinstance(run, dict):
        found.update(_workflow_run(run, found.get("repository") or ""))
    return found


def _workflow_run(run: Mapping[str, Any], repository: str) -> dict[str, Any]:
    """The PR and commit a ``workflow_run`` event is about.

    GITHUB_SHA is then the default branch's last commit, not the run's
    (docs.github.com/en/actions/writing-workflows/choosing-when-your-workflow-runs/
    events-that-trigger-workflows#workflow_run): the report is about ``head_sha``.
    ``pull_requests`` is empty for PRs from forks (github/docs#22501), so the head
    repository's owner and branch are kept to find the PR by.
    """
    sha = str(run.get("head_sha") or "") or None
    head_repo = run.get("head_repository") or {}
    owner = (head_repo.get("owner") or {}).get("login") or str(
        head_repo.get("full_name") or ""
    ).partition("/")[0]
    found: dict[str, Any] = {
        "sha": sha,
        "branch": run.get("head_branch") or None,
        "head_owner": owner or None,
        "for_pull_request": run.get("event") in ("pull_request", "pull_request_target"),
        "pr_number": None,
    }
    for pull in run.get("pull_requests") or []:
        if not isinstance(pull, dict) or not pull.get("number"):
            continue
        base_url = str(((pull.get("base") or {}).get("repo") or {}).get("url") or "")
        head_sha = (pull.get("head") or {}).get("sha")
        # Only this repository's PR whose head is the run's commit.
        if (not base_url or base_url.endswith(f"/repos/{repository}")) and head_sha in (None, sha):
            found["pr_number"] = int(pull["number"])
            break
    return found


def _gitlab_pipeline(env: Mapping[str, str]) -> Pipeline | None:
    number, sha = env.get("CI_PIPELINE_ID", ""), env.get("CI_COMMIT_SHA", "")
    project = env.get("CI_PROJECT_PATH") or env.get("CI_PROJECT_ID")
    if not (number.isdigit() and sha and project):
        return None
    # https://docs.gitlab.com/ci/variables/predefined_variables/ (CI_MERGE_REQUEST_EVENT_TYPE)
    merged = env.get("CI_MERGE_REQUEST_EVENT_TYPE") in ("merged_result", "merge_train")
    return Pipeline(int(number), sha, project, merged,
                    env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA") or None)  # fmt: skip


def _gitlab_api(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    if env.get("CI_API_V4_URL"):
        return env["CI_API_V4_URL"], "CI_API_V4_URL"
    if env.get("CI_SERVER_URL"):  # GitLab before 11.7 set only the server's URL
        return env["CI_SERVER_URL"].rstrip("/") + "/api/v4", "CI_SERVER_URL"
    return None, None


def _gitlab_ci(env: Mapping[str, str]) -> dict[str, Any]:
    iid = env.get("CI_MERGE_REQUEST_IID")
    project = env.get("CI_PROJECT_PATH") or env.get("CI_PROJECT_ID")
    if iid:
        # A fork's MR pipeline runs in the fork (CI_PROJECT_PATH) while the MR and its iid
        # belong to the target project: https://docs.gitlab.com/ci/variables/predefined_variables/
        project = (
            env.get("CI_MERGE_REQUEST_PROJECT_PATH") or env.get("CI_MERGE_REQUEST_PROJECT_ID")
            or project
        )  # fmt: skip
    api_url, api_source = _gitlab_api(env)
    return {
        "forge": "gitlab",
        "ci": "gitlab-ci",
        "repository": project,
        "api_url": api_url,
        "api_source": api_source,
        "pipeline": _gitlab_pipeline(env),
        # Merged-results pipelines check out a merge commit; report on the MR's head.
        "sha": env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA") or env.get("CI_COMMIT_SHA"),
        "pr_number": int(iid) if iid and iid.isdigit() else None,
        "branch": env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME"),
    }


def _git_remote(cwd: Path | None) -> dict[str, Any]:
    found: dict[str, Any] = {"sha": _git(["rev-parse", "HEAD"], cwd)}
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    found["branch"] = None if branch == "HEAD" else branch
    remote = _git(["remote", "get-url", "origin"], cwd)
    parsed = parse_remote(remote) if remote else None
    if parsed is not None:
        host, path = parsed
        known = hosts.lookup(host)
        found.update(repository=path, remote_host=host)
        if known is not None:
            found.update(forge=known.forge, api_url=known.api_url, api_source="git remote origin")
    return found


def detect(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> ForgeContext:
    """The forge context of this process: CI variables first, then the git working copy.

    Args:
        env: environment variables (default ``os.environ``).
        cwd: folder of the git working copy (default the current directory).
    """
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true" or env.get("GITHUB_REPOSITORY"):
        found = _github_actions(env)
    elif env.get("GITLAB_CI") or env.get("CI_API_V4_URL"):
        found = _gitlab_ci(env)
    else:
        found = _git_remote(cwd)
        # Outside CI, GITHUB_API_URL / CI_API_V4_URL still name a self-hosted forge.
        if found.get("forge") == "github" and env.get("GITHUB_API_URL"):
            found.update(api_url=env["GITHUB_API_URL"], api_source="GITHUB_API_URL")
        if found.get("forge") == "gitlab" and env.get("CI_API_V4_URL"):
            found.update(api_url=env["CI_API_V4_URL"], api_source="CI_API_V4_URL")
    if not found.get("sha") and found.get("ci"):
        found["sha"] = _git(["rev-parse", "HEAD"], cwd)
    token, token_name = _token(found.get("forge"), env)
    return ForgeContext(token=token, token_name=token_name, **found)


def token_for(forge: str, env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The token for ``forge`` from the environment, and the variable it came from."""
    return _token(forge, os.environ if env is None else env)
