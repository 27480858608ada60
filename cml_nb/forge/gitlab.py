"""The GitLab driver (python-gitlab).

Notes, commit discussions, statuses, uploads, repository files and commits,
merge requests.

python-gitlab retries 429 and 5xx itself (``retry_transient_errors``, honouring
``Retry-After``); 401, 403 and 404 fail at once with the fix. ``CI_API_V4_URL``
names self-hosted instances.

Roles, as GitLab checks them: notes and uploads need the Reporter role; a commit
status needs Developer, and on a protected branch (the default branch is one) a user
allowed to merge or push there, Maintainer by default
(https://gitlab.com/gitlab-org/gitlab/-/issues/213626). ``CI_JOB_TOKEN`` reaches only
the endpoints GitLab lists for it (https://docs.gitlab.com/ci/jobs/ci_job_token/), none
of them notes, statuses or uploads: elsewhere GitLab treats the call as anonymous.
Inside a pipeline, statuses name it (``pipeline_id``) so that no external pipeline
becomes the merge request's head (https://gitlab.com/gitlab-org/gitlab/-/issues/443254).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

from cml_nb.errors import ForgeAuthError, ForgeError, RateLimitedError, TargetNotFoundError
from cml_nb.forge._safety import protect, scrub
from cml_nb.forge.base import COMMIT, ISSUE, PR, Comment, PullRequestInfo, Target
from cml_nb.forge.context import Pipeline

log = logging.getLogger(__name__)
T = TypeVar("T")

#: GitLab's limit on a note body.
MAX_BODY = 1_000_000
DEFAULT_API = "https://gitlab.com/api/v4"
UPLOAD_ATTEMPTS = 5

_SCOPES = {
    "read": "`read_api`",
    "write": "`api` (a project access token with the Reporter role or higher)",
    "status": "`api` and the Developer role (Maintainer on protected branches)",
    "contents": "`api` or `write_repository` with the Developer role",
}
JOB_TOKEN_DOCS = "https://docs.gitlab.com/ci/jobs/ci_job_token/"


class GitLabForge:
    """One GitLab project (gitlab.com or self-hosted)."""

    name = "gitlab"
    max_comment_chars = MAX_BODY
    default_storage = "gitlab-uploads"

    def __init__(
        self,
        repository: str,
        *,
        token: str | None,
        api_url: str | None = None,
        token_name: str | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.repository = repository
        self.pipeline = pipeline
        self.api_url = (api_url or DEFAULT_API).rstrip("/")
        self.token_name = token_name or "GITLAB_TOKEN"
        if not token:
            raise ForgeAuthError(
                "no GitLab token: export GITLAB_TOKEN (a project access token with the `api` scope) "
                "or pass --token; in GitLab CI add it as a masked CI/CD variable"
            )
        protect(token)
        import gitlab

        server = self.api_url.removesuffix("/api/v4")
        job = self.token_name == "CI_JOB_TOKEN"
        self._gl = gitlab.Gitlab(
            server, private_token=None if job else token, job_token=token if job else None,
            retry_transient_errors=True, timeout=30, per_page=100,
        )  # fmt: skip
        self._project_obj: Any = None
        self._login: str | None = None
        self._login_known = False

    @property
    def _project(self) -> Any:
        if self._project_obj is None:
            self._project_obj = self._call(
                "reading the project", "read", lambda: self._gl.projects.get(self.repository)
            )
        return self._project_obj

    # -- errors --------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str, scope: str = "read") -> Iterator[None]:
        from gitlab.exceptions import GitlabError
        from requests import RequestException

        try:
            yield
        except GitlabError as exc:
            raise self._translate(exc, doing, scope) from None
        except RequestException as exc:
            raise ForgeError(scrub(
                f"GitLab at {self.api_url} failed while {doing} ({type(exc).__name__}: {exc}); "
                "check CI_API_V4_URL and the network, then retry"
            )) from None  # fmt: skip

    def _translate(self, exc: Any, doing: str, scope: str) -> ForgeError:
        status = getattr(exc, "response_code", None) or 0
        message = scrub(str(getattr(exc, "error_message", "") or exc)[:200])
        need = _SCOPES.get(scope, scope)
        if status in (401, 403, 404) and self.token_name == "CI_JOB_TOKEN":
            return ForgeAuthError(
                f"GitLab answered {status} while {doing}: it treats CI_JOB_TOKEN as anonymous "
                f"there (job tokens reach only a few endpoints, no notes, statuses or uploads: "
                f"{JOB_TOKEN_DOCS}); add a masked CI/CD variable GITLAB_TOKEN holding a project "
                "access token with the `api` scope and the Reporter role (Developer for --check)"
            )
        if status == 403 and scope == "status":
            return ForgeAuthError(
                f"GitLab refused {doing} on {self.repository} (403 {message}): on a protected "
                "branch (the default branch is one) only users allowed to merge or push there may "
                "set statuses, the Maintainer role unless Settings > Repository > Protected "
                f"branches says otherwise; elsewhere the token from {self.token_name} needs the "
                "Developer role"
            )
        if status == 401:
            return ForgeAuthError(
                f"GitLab rejected the token from {self.token_name} (401 {message}) while {doing}: "
                f"it is missing, expired or revoked; set GITLAB_TOKEN to a token with scope {need}"
            )
        if status == 403:
            job = (
                " (CI_JOB_TOKEN cannot do this; use GITLAB_TOKEN)"
                if self.token_name == "CI_JOB_TOKEN"
                else ""
            )
            return ForgeAuthError(
                f"GitLab refused {doing} on {self.repository} (403 {message}): the token from "
                f"{self.token_name} needs scope {need}{job}"
            )
        if status == 404:
            return TargetNotFoundError(
                f"GitLab found nothing while {doing} (404 on {self.repository} at {self.api_url}): "
                f"check --repo and --target, and that the token from {self.token_name} can see the project"
            )
        if status == 429:
            return RateLimitedError(
                f"GitLab kept rate-limiting while {doing} after retries; rerun later"
            )
        if status >= 500:
            return ForgeError(
                f"GitLab kept failing while {doing} ({status} {message}) after retries; rerun later"
            )
        return ForgeError(f"GitLab refused {doing} ({status} {message})")

    def _call(self, doing: str, scope: str, fn: Callable[[], T]) -> T:
        with self._errors(doing, scope):
            return fn()

    # -- identity and targets -----------------------------------------------------

    def login(self) -> str | None:
        """The token's username; None for job tokens, which cannot read /user."""
        if not self._login_known:
            if self.token_name == "CI_JOB_TOKEN":
                self._login = None
            else:
                self._call("reading the token's user", "read", self._gl.auth)
                user = self._gl.user
                self._login = user.username if user is not None else None
            self._login_known = True
        return self._login

    def default_branch(self) -> str:
        """The project's default branch."""
        return str(self._project.default_branch)

    def pull_request(self, number: int) -> Target:
        """The target for merge request ``number`` (iid) with its head commit."""
        mr = self._call(f"reading merge request !{number}", "read",
                        lambda: self._project.mergerequests.get(number))  # fmt: skip
        return Target(self.name, self.repository, PR, number, mr.sha)

    def pulls_for_commit(self, sha: str) -> list[Target]:
        """Open merge requests that contain ``sha``, newest first."""

        def fetch() -> list[Target]:
            found = self._project.commits.get(sha, lazy=True).merge_requests()
            iids = sorted((m["iid"] for m in found if m.get("state") == "opened"), reverse=True)
            return [Target(self.name, self.repository, PR, iid, sha) for iid in iids]

        return self._call(f"looking up merge requests for {sha[:12]}", "read", fetch)

    def commit(self, sha: str) -> Target:
        """The target for a comment on commit ``sha``."""
        return Target(self.name, self.repository, COMMIT, None, sha)

    # -- comments -----------------------------------------------------------------

    def _notes(self, target: Target) -> Any:
        parent = self._project.mergerequests if target.kind == PR else self._project.issues
        return parent.get(target.number, lazy=True).notes

    @staticmethod
    def _comment(note: Mapping[str, Any], thread: str = "") -> Comment:
        author = note.get("author") or {}
        return Comment(int(note["id"]), note.get("body") or "", author.get("username", ""),
                       "", bool(author.get("bot")), thread)  # fmt: skip

    def list_comments(self, target: Target) -> list[Comment]:
        """Every note on ``target`` (all pages, system notes left out), oldest first."""

        def fetch() -> list[Comment]:
            if target.kind == COMMIT:
                discussions = self._project.commits.get(target.sha, lazy=True).discussions
                return [self._comment(n, d.id) for d in discussions.list(iterator=True)
                        for n in d.attributes.get("notes", [])[:1]]  # fmt: skip
            notes = self._notes(target).list(iterator=True, sort="asc", order_by="created_at")
            return [self._comment(n.attributes) for n in notes if not n.attributes.get("system")]

        return self._call(f"reading notes of {target.describe()}", "read", fetch)

    def _link(self, target: Target, comment: Comment) -> Comment:
        web = str(self._project.web_url)
        if target.kind == COMMIT:
            page = f"{web}/-/commit/{target.sha}"
        elif target.kind == PR:
            page = f"{web}/-/merge_requests/{target.number}"
        else:
            page = f"{web}/-/issues/{target.number}"
        return replace(comment, url=f"{page}#note_{comment.id}")

    def create_comment(self, target: Target, body: str) -> Comment:
        """Post a note on ``target`` (a one-note discussion on commits)."""

        def create() -> Comment:
            if target.kind == COMMIT:
                commit = self._project.commits.get(target.sha, lazy=True)
                discussion = commit.discussions.create({"body": body})
                return self._comment(discussion.attributes["notes"][0], discussion.id)
            return self._comment(self._notes(target).create({"body": body}).attributes)

        made = self._call(f"commenting on {target.describe()}", "write", create)
        return self._link(target, made)

    def _note_manager(self, target: Target, comment: Comment) -> Any:
        if target.kind == COMMIT:
            commit = self._project.commits.get(target.sha, lazy=True)
            return commit.discussions.get(comment.thread, lazy=True).notes
        return self._notes(target)

    def update_comment(self, target: Target, comment: Comment, body: str) -> Comment:
        """Replace the body of ``comment``."""

        def update() -> Comment:
            data = self._note_manager(target, comment).update(comment.id, {"body": body})
            return self._comment({**data, "id": comment.id}, comment.thread)

        made = self._call(f"updating note {comment.id} on {target.describe()}", "write", update)
        return self._link(target, made)

    def delete_comment(self, target: Target, comment: Comment) -> None:
        """Delete ``comment``; one already gone is fine."""
        with contextlib.suppress(TargetNotFoundError):
            self._call(f"deleting note {comment.id}", "write",
                       lambda: self._note_manager(target, comment).delete(comment.id))  # fmt: skip

    # -- statuses, uploads, files -------------------------------------------------

    def set_status(
        self, sha: str, *, succeeded: bool, name: str, title: str, summary: str, url: str = ""
    ) -> str:
        """A commit status (``success`` or ``failed``) on ``sha``; returns ``url``.

        In this project's own pipeline the status joins that pipeline (``pipeline_id``);
        in a merged-results or merge-train pipeline it goes on the merge commit the
        pipeline runs for, since that pipeline is the merge request's head.

        Raises:
            ForgeAuthError: GitLab refused the status (the message names the role needed).
        """
        data: dict[str, Any] = {"state": "success" if succeeded else "failed", "name": name,
                                "description": title[:255]}  # fmt: skip
        if url:
            data["target_url"] = url
        pipeline = self.pipeline
        if pipeline is not None and pipeline.project.lower() == self.repository.lower():
            if pipeline.merged_results and sha == pipeline.head:
                sha = pipeline.sha
            if sha == pipeline.sha:
                data["pipeline_id"] = pipeline.id
        self._call(f"setting a commit status on {sha[:12]}", "status",
                   lambda: self._project.commits.get(sha, lazy=True).statuses.create(data))  # fmt: skip
        return url

    def upload(self, filename: str, data: bytes) -> str:
        """Upload a file to the project's uploads; the link GitLab itself puts in Markdown.

        Retried here rather than by python-gitlab: its retry resends a multipart
        body it has already consumed, and the request then hangs until the timeout.
        """
        from gitlab.exceptions import GitlabError

        project = self._project
        with self._errors(f"uploading {filename}", "write"):  # connection errors
            for attempt in range(1, UPLOAD_ATTEMPTS + 1):
                try:
                    result = project.upload(filename, filedata=data, retry_transient_errors=False)
                    return str(result["url"])
                except GitlabError as exc:
                    code = getattr(exc, "response_code", None) or 0
                    if attempt == UPLOAD_ATTEMPTS or not (code == 429 or code >= 500):
                        raise self._translate(exc, f"uploading {filename}", "write") from None
                    log.info("upload of %s failed (%s); retrying", filename, code)
                time.sleep(min(0.5 * 2**attempt, 8.0))
        raise ForgeError(f"GitLab kept failing to take {filename}; rerun later")  # pragma: no cover

    def read_file(self, path: str, ref: str) -> bytes | None:
        """A file's bytes at ``ref``; None when absent."""
        from gitlab.exceptions import GitlabError

        try:
            raw = self._project.files.raw(file_path=path, ref=ref)
        except GitlabError as exc:
            if getattr(exc, "response_code", None) == 404:
                return None
            raise self._translate(exc, f"reading {path} at {ref}", "read") from None
        return bytes(raw) if raw is not None else None

    def list_files(self, branch: str) -> set[str] | None:
        """Paths of the files on ``branch``; None when it does not exist."""
        from gitlab.exceptions import GitlabError

        try:
            self._project.branches.get(branch)
        except GitlabError as exc:
            if getattr(exc, "response_code", None) == 404:
                return None
            raise self._translate(exc, f"reading branch {branch}", "read") from None
        tree = self._call(f"listing {branch}", "read", lambda: self._project.repository_tree(
            ref=branch, recursive=True, iterator=True))  # fmt: skip
        return {e["path"] for e in tree if e["type"] == "blob"}

    def commit_files(
        self, branch: str, files: Mapping[str, bytes], message: str, *, start: str | None
    ) -> str:
        """Commit ``files`` onto ``branch`` (created from ``start`` when missing)."""
        existing = self.list_files(branch)
        data: dict[str, Any] = {"branch": branch, "commit_message": message, "actions": [
            {"action": "update" if existing and path in existing else "create", "file_path": path,
             "content": base64.b64encode(raw).decode(), "encoding": "base64"}
            for path, raw in sorted(files.items())]}  # fmt: skip
        if existing is None:
            if start is None:
                raise ForgeError(
                    f"GitLab cannot create the orphan branch {branch}: create it first"
                )
            data["start_sha"] = start
        made = self._call(f"committing {len(files)} file(s) to {branch}", "contents",
                          lambda: self._project.commits.create(data))  # fmt: skip
        return str(made.id)

    def raw_url(self, branch: str, path: str) -> str:
        """``<project>/-/raw/<branch>/<path>``."""
        web = str(self._project.web_url)
        return f"{web}/-/raw/{urllib.parse.quote(branch, safe='')}/{urllib.parse.quote(path)}"

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequestInfo:
        """Open a merge request from ``head``, or update the open one."""

        def run() -> PullRequestInfo:
            found = self._project.mergerequests.list(
                source_branch=head, state="opened", get_all=True
            )
            if found:
                mr = found[0]
                mr.title, mr.description = title, body[:MAX_BODY]
                mr.save()
                return PullRequestInfo(mr.iid, mr.web_url, head, base, "updated")
            mr = self._project.mergerequests.create({"source_branch": head, "target_branch": base,
                                                     "title": title, "description": body[:MAX_BODY]})  # fmt: skip
            return PullRequestInfo(mr.iid, mr.web_url, head, base, "created")

        return self._call(f"opening a merge request from {head}", "write", run)


__all__ = ["ISSUE", "GitLabForge"]
