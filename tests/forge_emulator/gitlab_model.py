"""The GitLab-only parts of the emulator's model, with their sources.

Roles (access levels) per user, protected branches (a new project's default branch is
protected for Maintainers), pipelines, forks and merge requests from a fork, the CI/CD
job token's short list of endpoints (anonymous everywhere else), and GitLab's offset
pagination. They live beside the shared state (``gitlab_state``) so the GitHub model
stays as it is. Tests arrange them with ``role``, ``protect``, ``add_pipeline``,
``fork``, ``add_fork_mr`` and ``add_job_token`` (re-exported by ``gitlab``).
"""

from __future__ import annotations

import copy
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .router import Call, Handler, Reply, Route, RouteTable
from .state import Pull, Repo, State, now

#: Access levels: https://docs.gitlab.com/api/members/#roles
GUEST, REPORTER, DEVELOPER, MAINTAINER = 10, 20, 30, 40


@dataclass
class GitLabState:
    """What only GitLab has, kept beside the shared state."""

    roles: dict[str, int] = field(default_factory=dict)  # login -> access level
    job_tokens: set[str] = field(default_factory=set)
    #: project id -> {branch: access level allowed to push/merge}
    protected: dict[int, dict[str, int]] = field(default_factory=dict)
    pipelines: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # project id -> list
    forked_from: dict[int, int] = field(default_factory=dict)  # fork id -> upstream id
    mr_source: dict[tuple[int, int], int] = field(default_factory=dict)  # (project, iid) -> id


def gitlab_state(state: State) -> GitLabState:
    """The GitLab-only part of ``state`` (created on first use)."""
    found: GitLabState | None = vars(state).get("_gitlab")
    if found is None:
        found = GitLabState()
        vars(state)["_gitlab"] = found
    return found


def role(state: State, login: str, level: int) -> None:
    """Give ``login`` this access level on every project (default: Maintainer)."""
    gitlab_state(state).roles[login] = level


def protect(repo: Repo, state: State, branch: str, level: int = MAINTAINER) -> None:
    """Protect ``branch``: only ``level`` and above may push or merge there."""
    gitlab_state(state).protected.setdefault(repo.id, {})[branch] = level


def protected(state: State, repo: Repo) -> dict[str, int]:
    # New projects protect the default branch for Maintainers:
    # https://docs.gitlab.com/user/project/repository/branches/default/#protect-initial-default-branches
    return gitlab_state(state).protected.setdefault(repo.id, {repo.default_branch: MAINTAINER})


def add_pipeline(state: State, repo: Repo, sha: str, ref: str, source: str = "push") -> int:
    """A pipeline for ``sha`` on ``ref``; its id."""
    pid = state.next_id()
    pipelines(state, repo).append({"id": pid, "sha": sha, "ref": ref, "source": source,
                                   "status": "running", "created_at": now()})  # fmt: skip
    return pid


def pipelines(state: State, repo: Repo) -> list[dict[str, Any]]:
    return gitlab_state(state).pipelines.setdefault(repo.id, [])


def fork(state: State, upstream: Repo, path: str) -> Repo:
    """A fork of ``upstream`` at ``path``, with the same history."""
    repo = state.add_repo("gitlab", path)
    repo.git = copy.deepcopy(upstream.git)
    gitlab_state(state).forked_from[repo.id] = upstream.id
    return repo


def add_fork_mr(state: State, upstream: Repo, source: Repo, branch: str) -> Pull:
    """A merge request into ``upstream`` from ``branch`` of the fork ``source``."""
    if f"heads/{branch}" not in source.git.refs:
        source.git.refs[f"heads/{branch}"] = source.head_sha()
        source.git.commit_files(branch, {f"{branch}.txt": branch.encode()}, f"work on {branch}")
    sha = source.head_sha(branch)
    upstream.git.commits.setdefault(
        sha, source.git.commits[sha]
    )  # GitLab fetches it into the target
    pull = Pull(state.next_number(upstream), f"Change {branch}", "", branch,
                upstream.default_branch, sha, source.owner)  # fmt: skip
    upstream.pulls[pull.number] = pull
    gitlab_state(state).mr_source[(upstream.id, pull.number)] = source.id
    return pull


def add_job_token(state: State, token: str, login: str) -> None:
    """A CI/CD job token acting as ``login`` (the user who started the pipeline)."""
    state.add_token(token, login)
    gitlab_state(state).job_tokens.add(token)


class _Routes(RouteTable):
    """GitLab's routes; those not marked ``job_token=True`` treat a job token as anonymous."""

    def add(self, method: str, rule: str, *, op: str | None = None, perm: str | None = None,
            job_token: bool = False) -> Callable[[Handler], Handler]:  # fmt: skip
        def decorator(handler: Handler) -> Handler:
            gated = handler if job_token else _no_job_token(handler)
            self.routes.append(Route(self.forge, method, rule, gated, op, perm))
            return handler

        return decorator


def _no_job_token(handler: Handler) -> Handler:
    # GitLab authenticates a job token only on routes with `job_token_allowed: true`
    # (lib/api/helpers/authentication.rb, https://docs.gitlab.com/ci/jobs/ci_job_token/);
    # elsewhere the request is anonymous: private projects are not found, writes unauthorised.
    def gated(call: Call) -> Reply:
        token = call.request.headers.get("JOB-TOKEN", "")
        if token and token in gitlab_state(call.state).job_tokens:
            repo = project(call) if "project" in call.args else None
            if call.request.method == "GET" and (repo is None or repo.private):
                return _404("Project Not Found")
            return Reply(401, {"message": "401 Unauthorized"})
        return handler(call)

    return gated


def _404(what: str = "Not found") -> Reply:
    return Reply(404, {"message": f"404 {what}"})


def project(call: Call) -> Repo | None:
    repo = call.state.repo_by_id(call.args["project"])
    return repo if repo is not None and repo.forge == "gitlab" else None


def paginate(call: Call, items: list[Any], url: str) -> Reply:
    """Offset pagination as GitLab answers it: https://docs.gitlab.com/api/rest/#pagination

    ``per_page`` defaults to 20 and is capped at 100; ``x-page``, ``x-per-page``,
    ``x-total``, ``x-total-pages``, ``x-next-page`` and ``x-prev-page`` (empty when
    none) and a ``Link`` header with next/prev/first/last.
    """
    try:
        page = max(int(call.request.args.get("page", 1)), 1)
        per_page = min(max(int(call.request.args.get("per_page", 20)), 1), 100)
    except ValueError:
        return Reply(400, {"error": "page, per_page are invalid"})
    total = len(items)
    last = max(1, -(-total // per_page))
    query = {k: v for k, v in call.request.args.items() if k not in ("page", "per_page")}

    def link(n: int, rel: str) -> str:
        params = urllib.parse.urlencode({**query, "page": n, "per_page": per_page})
        return f'<{url}?{params}>; rel="{rel}"'

    links = ([link(page + 1, "next")] if page < last else []) + (
        [link(page - 1, "prev")] if page > 1 else []) + [link(1, "first"), link(last, "last")]  # fmt: skip
    headers = {"x-page": str(page), "x-per-page": str(per_page), "x-total": str(total),
               "x-total-pages": str(last), "x-next-page": str(page + 1) if page < last else "",
               "x-prev-page": str(page - 1) if page > 1 else "", "Link": ", ".join(links)}  # fmt: skip
    return Reply(200, items[(page - 1) * per_page : page * per_page], headers)


def access_level(call: Call) -> int:
    assert call.grant is not None
    return gitlab_state(call.state).roles.get(call.grant.account.login, MAINTAINER)
