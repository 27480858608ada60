"""The GitHub driver (PyGithub): comments, checks, statuses, Git Data API, pull requests.

Transient failures (5xx, connection errors) and rate limits are retried on every
method, PATCH included, by ``github_retry.GitHubRetry``: rate limits wait as GitHub
asks (``retry-after``, ``x-ratelimit-reset``, a minute for secondary limits), bounded
by ``CML_NB_GITHUB_MAX_WAIT``. 401, 403 and 404 fail at once with a message naming
the token variable and the permission to grant, or, for the 403s that no
``permissions:`` entry fixes, what does (``github_errors``).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from cml_nb.errors import ForgeAuthError, ForgeError, RateLimitedError, TargetNotFoundError
from cml_nb.forge import github_errors
from cml_nb.forge._safety import protect, scrub
from cml_nb.forge.base import COMMIT, PR, Comment, PullRequestInfo, Target
from cml_nb.forge.context import GITHUB_API

log = logging.getLogger(__name__)
T = TypeVar("T")

#: GitHub's limit on a comment body, check-run summary and PR body.
MAX_BODY = 65_536
#: Seconds between writes; GitHub asks for one second to stay clear of secondary limits.
WRITE_INTERVAL_ENV = "CML_NB_GITHUB_WRITE_INTERVAL"


class GitHubForge:
    """One GitHub (or GitHub Enterprise) repository."""

    name = "github"
    max_comment_chars = MAX_BODY
    default_storage = "github-branch"

    def __init__(
        self,
        repository: str,
        *,
        token: str | None,
        api_url: str | None = None,
        token_name: str | None = None,
    ) -> None:
        self.repository = repository
        self.api_url = (api_url or GITHUB_API).rstrip("/")
        self.token_name = token_name or "GITHUB_TOKEN"
        if not token:
            raise ForgeAuthError(
                "no GitHub token: export GITHUB_TOKEN (or GH_TOKEN, REPO_TOKEN) or pass --token; "
                "in GitHub Actions add `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`"
            )
        protect(token)
        from github import Auth, Github

        from cml_nb.forge.github_retry import make_retry

        interval = float(os.environ.get(WRITE_INTERVAL_ENV, "1.0"))
        self._retry = make_retry()
        self._gh = Github(
            base_url=self.api_url, auth=Auth.Token(token), retry=self._retry, timeout=30,
            per_page=100, seconds_between_writes=interval, seconds_between_requests=None,
        )  # fmt: skip
        self._repo = self._gh.get_repo(repository, lazy=True)
        self._login: str | None = None
        self._login_known = False
        self._objects: dict[tuple[str, int], Any] = {}
        #: Pull requests seen whose head branch lives in a fork (their runs get read-only tokens).
        self._fork_pulls: set[int] = set()
        # ``ghs_``: a GitHub App installation token, as GITHUB_TOKEN is (github.blog/engineering/
        # platform-security/behind-githubs-new-authentication-token-formats/).
        self._installation_token = token.startswith("ghs_")
        #: Refs read by ``list_files``, reused once by the ``commit_files`` that follows.
        self._read_refs: dict[str, Any] = {}

    # -- errors --------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str, permission: str = "read") -> Iterator[None]:
        from github import GithubException
        from requests import RequestException
        from requests.exceptions import RetryError

        try:
            yield
        except GithubException as exc:
            raise self._translate(exc, doing, permission) from None
        except RetryError as exc:  # urllib3 ran out of retries on 5xx/403/429 answers
            raise self._gave_up(str(exc), doing) from None
        except RequestException as exc:
            raise ForgeError(scrub(
                f"GitHub at {self.api_url} failed while {doing} ({type(exc).__name__}: {exc}); "
                "check GITHUB_API_URL and the network, then retry"
            )) from None  # fmt: skip

    def _gave_up(self, text: str, doing: str) -> ForgeError:
        from cml_nb.forge.github_retry import RETRIES

        found = re.search(r"too many (\d+) error responses", text)
        status = int(found.group(1)) if found else 0
        if status in (403, 429):
            return RateLimitedError(
                f"GitHub kept rate-limiting while {doing} ({status}, after {RETRIES} retries "
                "with the waits GitHub asked for); rerun later, or publish less often "
                "(e.g. a longer --live interval)"
            )
        reason = found.group(0) if found else "retries exhausted"
        return ForgeError(
            f"GitHub kept failing while {doing} ({reason}, after {RETRIES} retries); "
            "check https://www.githubstatus.com and rerun"
        )

    def _translate(self, exc: Any, doing: str, permission: str) -> ForgeError:
        from cml_nb.forge import github_errors

        context = github_errors.Refusal(
            status=exc.status,
            data=exc.data if isinstance(exc.data, dict) else {"message": str(exc.data or "")},
            doing=doing,
            permission=permission,
            repository=self.repository,
            api_url=self.api_url,
            token_name=self.token_name,
            fork_pulls=frozenset(self._fork_pulls),
            wait=getattr(exc, "wait", None),
            why=getattr(exc, "why", ""),
            until=getattr(exc, "until", None),
        )
        return github_errors.translate(context)

    def _call(self, doing: str, permission: str, fn: Callable[[], T]) -> T:
        with self._errors(doing, permission):
            return fn()

    # -- identity and targets -----------------------------------------------------

    def login(self) -> str | None:
        """The token's login; None for app installation tokens (``GITHUB_TOKEN``)."""
        if self._login_known:
            return self._login
        if self._installation_token:
            # GET /user always answers 403 to an installation token: save the request.
            self._login, self._login_known = None, True
            return None
        from github import GithubException

        try:
            self._login = self._gh.get_user().login
        except GithubException as exc:
            if exc.status != 403 or github_errors.is_rate_limit(exc):
                raise self._translate(exc, "reading the token's user", "read") from None
            self._login = None  # app tokens may not read /user; their comments are by bots
        self._login_known = True
        return self._login

    def limit_waits(self, seconds: float) -> None:
        """Wait at most ``seconds`` for a rate limit from now on (live updates skip instead)."""
        self._retry.max_wait = min(self._retry.max_wait, seconds)

    def rate_status(self) -> tuple[int, int, int] | None:
        """``(remaining, limit, reset epoch)`` from the latest answer's headers; None before one.

        Reads what PyGithub kept from ``x-ratelimit-*``; sends no request. The lazy
        repository has a requester of its own, so both are read: within one window the
        lower ``remaining`` is the later answer.
        """
        seen = [(int(r.rate_limiting[0]), int(r.rate_limiting[1]), int(r.rate_limiting_resettime))
                for r in (self._gh.requester, self._repo.requester) if r.rate_limiting[1] >= 0]  # fmt: skip
        spent = self._retry.exhausted  # answers the retry consumed before PyGithub saw them
        if spent and spent["reset"] > time.time():
            return 0, spent["limit"], spent["reset"]  # nothing succeeds until that reset
        if not seen:
            return None
        newest = max(reset for _, _, reset in seen)
        return min((s for s in seen if s[2] == newest), key=lambda s: s[0])

    def default_branch(self) -> str:
        """The repository's default branch."""
        return self._call("reading the repository", "read", lambda: self._repo.default_branch)

    def branch_protected(self, branch: str) -> bool:
        """Whether a protection rule applies to ``branch``; False when it does not exist yet.

        Reads ``protected`` from GET /repos/{owner}/{repo}/branches/{branch}
        (https://docs.github.com/en/rest/branches/branches#get-a-branch), which any token
        that can read the repository may call.
        """
        from github import GithubException

        def fetch() -> bool:
            try:
                return bool(self._repo.get_branch(branch).protected)
            except GithubException as exc:
                if exc.status == 404:  # storage creates the branch; nothing protects it yet
                    return False
                raise

        return self._call(f"reading branch {branch}", "read", fetch)

    def pull_request(self, number: int) -> Target:
        """The target for pull request ``number`` with its head commit."""

        def fetch() -> str:
            pull = self._repo.get_pull(number)  # lazy: reading it below sends the request
            sha = str(pull.head.sha)
            self._note_fork(pull)
            return sha

        sha = self._call(f"reading pull request #{number}", "read", fetch)
        return Target(self.name, self.repository, PR, number, sha)

    def _note_fork(self, pull: Any) -> None:
        head_repo = pull.head.repo
        if head_repo is not None and head_repo.full_name != self.repository:
            self._fork_pulls.add(int(pull.number))

    def pull_for_head(self, owner: str, branch: str, sha: str) -> Target | None:
        """The open pull request whose head is ``owner:branch`` at commit ``sha``, if any.

        Finds pull requests from forks, which ``pulls_for_commit`` may not list. The
        head commit must match, so a branch that moved on names no pull request.
        """

        def fetch() -> Target | None:
            for pull in self._repo.get_pulls(state="open", head=f"{owner}:{branch}"):
                if pull.head.sha == sha:
                    self._note_fork(pull)
                    return Target(self.name, self.repository, PR, int(pull.number), sha)
            return None

        return self._call(f"looking up the pull request from {owner}:{branch}", "read", fetch)

    def pulls_for_commit(self, sha: str) -> list[Target]:
        """Open pull requests that contain ``sha``, newest first."""

        def fetch() -> list[Target]:
            pulls = self._repo.get_commit(sha).get_pulls()
            found = [p for p in pulls if p.state == "open"]
            found.sort(key=lambda p: p.number, reverse=True)
            return [Target(self.name, self.repository, PR, p.number, sha) for p in found]

        return self._call(f"looking up pull requests for {sha[:12]}", "read", fetch)

    def commit(self, sha: str) -> Target:
        """The target for a commit comment on ``sha``."""
        return Target(self.name, self.repository, COMMIT, None, sha)

    # -- comments -----------------------------------------------------------------

    def _thread(self, target: Target) -> Any:
        if target.kind == COMMIT:
            return self._repo.get_commit(target.sha or "")
        return self._repo.get_issue(target.number or 0)

    def _comment(self, raw: Any, kind: str) -> Comment:
        self._objects[(kind, raw.id)] = raw
        user = raw.user
        return Comment(raw.id, raw.body or "", user.login if user else "", raw.html_url or "",
                       bool(user and user.type == "Bot"))  # fmt: skip

    def list_comments(self, target: Target) -> list[Comment]:
        """Every comment on ``target`` (all pages), oldest first."""
        return self._call(
            f"reading comments of {target.describe()}", "read",
            lambda: [self._comment(c, target.kind) for c in self._thread(target).get_comments()],
        )  # fmt: skip

    def create_comment(self, target: Target, body: str) -> Comment:
        """Post a comment on ``target``."""
        permission = "commit-comment" if target.kind == COMMIT else "comment"
        return self._call(
            f"commenting on {target.describe()}", permission,
            lambda: self._comment(self._thread(target).create_comment(body), target.kind),
        )  # fmt: skip

    def _raw_comment(self, target: Target, comment: Comment) -> Any:
        cached = self._objects.get((target.kind, comment.id))
        if cached is not None:
            return cached
        if target.kind == COMMIT:
            return self._repo.get_comment(comment.id)
        return self._repo.get_issue(target.number or 0).get_comment(comment.id)

    def update_comment(self, target: Target, comment: Comment, body: str) -> Comment:
        """Replace the body of ``comment``."""
        permission = "commit-comment" if target.kind == COMMIT else "comment"

        def edit() -> Comment:
            raw = self._raw_comment(target, comment)
            raw.edit(body)
            return self._comment(raw, target.kind)

        return self._call(f"updating comment {comment.id} on {target.describe()}", permission, edit)

    def delete_comment(self, target: Target, comment: Comment) -> None:
        """Delete ``comment``; one already gone is fine."""
        from github import GithubException

        permission = "commit-comment" if target.kind == COMMIT else "comment"
        try:
            with self._errors(f"deleting comment {comment.id}", permission):
                self._raw_comment(target, comment).delete()
        except TargetNotFoundError:
            pass
        except GithubException:  # pragma: no cover - translated above
            raise

    # -- checks and statuses ------------------------------------------------------

    def set_status(
        self, sha: str, *, succeeded: bool, name: str, title: str, summary: str, url: str = ""
    ) -> str:
        """A completed check run on ``sha``; a commit status when checks are not allowed.

        Check runs need a GitHub App token (``GITHUB_TOKEN`` is one); personal access
        tokens get 403, and then a commit status carries the conclusion instead.
        """
        from github import GithubException

        output: dict[str, Any] = {"title": title[:255], "summary": summary[: MAX_BODY - 1]}
        kwargs: dict[str, Any] = {"details_url": url} if url else {}
        try:
            run = self._repo.create_check_run(
                name=name, head_sha=sha, status="completed",
                conclusion="success" if succeeded else "failure", output=output, **kwargs,
            )  # fmt: skip
            return str(run.html_url or run.url)
        except GithubException as exc:
            if exc.status != 403 or github_errors.is_rate_limit(exc):
                raise self._translate(
                    exc, f"creating a check run on {sha[:12]}", "checks"
                ) from None
            log.warning("check runs need a GitHub App token; setting a commit status instead")
        state = "success" if succeeded else "failure"

        def status() -> str:
            made = self._repo.get_commit(sha).create_status(
                state, target_url=url or _NOT_SET(), description=title[:140], context=name
            )
            return str(made.url)

        return self._call(f"setting a commit status on {sha[:12]}", "statuses", status)

    # -- files, branches, pull requests ------------------------------------------

    def read_file(self, path: str, ref: str) -> bytes | None:
        """A file's bytes at ``ref``; None when the file or ref does not exist."""
        from github import GithubException

        try:
            content = self._repo.get_contents(path, ref=ref)
        except GithubException as exc:
            if exc.status == 404:
                return None
            raise self._translate(exc, f"reading {path} at {ref}", "read") from None
        if isinstance(content, list):
            return None  # a folder
        if content.encoding == "base64" and content.content:
            return base64.b64decode(content.content)
        blob = self._repo.get_git_blob(content.sha)  # files over 1 MB come without content
        return base64.b64decode(blob.content)

    def _ref_sha(self, branch: str) -> str | None:
        ref = self._ref(branch)
        return None if ref is None else str(ref.object.sha)

    def _ref(self, branch: str) -> Any:
        from github import GithubException

        try:
            ref = self._repo.get_git_ref(f"heads/{branch}")
            # Reading it completes the lazy object, so its url becomes .../git/refs/...:
            # editing through the lazy .../git/ref/... url would PATCH a route GitHub lacks.
            _ = ref.object.sha
        except GithubException as exc:
            if exc.status == 404:
                ref = None
            else:
                raise self._translate(exc, f"reading branch {branch}", "read") from None
        self._read_refs[branch] = ref
        return ref

    def list_files(self, branch: str) -> set[str] | None:
        """Paths of the files on ``branch``; None when it does not exist."""
        sha = self._ref_sha(branch)
        if sha is None:
            return None
        tree = self._call(
            f"listing {branch}", "read", lambda: self._repo.get_git_tree(sha, recursive=True)
        )
        return {e.path for e in tree.tree if e.type == "blob"}

    def commit_files(
        self, branch: str, files: Mapping[str, bytes], message: str, *, start: str | None
    ) -> str:
        """Commit ``files`` onto ``branch`` through the Git Data API; the new commit's sha.

        A concurrent push to the branch makes the fast-forward fail; the commit is
        then rebuilt on the new tip (up to three times).
        """
        from github import GithubException, InputGitTreeElement

        for attempt in range(3):
            # The tip list_files just read saves a request; if it moved since, the
            # fast-forward fails (422) and the next attempt reads it afresh.
            known = attempt == 0 and branch in self._read_refs
            ref = self._read_refs.pop(branch) if known else self._ref(branch)
            self._read_refs.pop(branch, None)
            tip = None if ref is None else str(ref.object.sha)
            parent = tip or start
            with self._errors(f"committing {len(files)} file(s) to {branch}", "contents"):
                elements = [
                    InputGitTreeElement(path, "100644", "blob", sha=self._repo.create_git_blob(
                        base64.b64encode(data).decode(), "base64").sha)
                    for path, data in sorted(files.items())
                ]  # fmt: skip
                parent_commit = self._repo.get_git_commit(parent) if parent else None
                if parent_commit is not None:
                    tree = self._repo.create_git_tree(elements, parent_commit.tree)
                else:
                    tree = self._repo.create_git_tree(elements)
                commit = self._repo.create_git_commit(
                    message, tree, [parent_commit] if parent_commit else []
                )
                try:
                    if tip is None:
                        self._repo.create_git_ref(f"refs/heads/{branch}", commit.sha)
                    else:
                        ref.edit(commit.sha, force=False)
                    return str(commit.sha)
                except GithubException as exc:
                    if exc.status != 422 or attempt == 2:
                        raise
                    log.info("branch %s moved while committing; retrying on its new tip", branch)
        raise ForgeError(
            f"could not update branch {branch}: it kept moving; rerun"
        )  # pragma: no cover

    def raw_url(self, branch: str, path: str) -> str:
        """``<repo>/blob/<branch>/<path>?raw=true``: rendered for every reader of the repository.

        For private repositories GitHub serves it to signed-in readers by redirecting
        to a short-lived raw URL, so images stay private and still render.
        """
        from cml_nb.forge.hosts import web_url_for_api

        # The web root follows from the API root (github.com, GHE.com, GHES): no request.
        html = f"{web_url_for_api(self.api_url)}/{self.repository}"
        quoted = urllib.parse.quote(path)
        return f"{html}/blob/{urllib.parse.quote(branch, safe='')}/{quoted}?raw=true"

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequestInfo:
        """Open a pull request from ``head``, or update the open one."""
        owner = self.repository.split("/")[0]

        def run() -> PullRequestInfo:
            open_pulls = list(self._repo.get_pulls(state="open", head=f"{owner}:{head}"))
            if open_pulls:
                pull = open_pulls[0]
                pull.edit(title=title, body=body[:MAX_BODY])
                return PullRequestInfo(pull.number, pull.html_url, head, base, "updated")
            pull = self._repo.create_pull(base=base, head=head, title=title, body=body[:MAX_BODY])
            return PullRequestInfo(pull.number, pull.html_url, head, base, "created")

        return self._call(f"opening a pull request from {head}", "pulls", run)


def _NOT_SET() -> Any:  # noqa: N802 - PyGithub's sentinel for "leave out"
    from github.GithubObject import NotSet

    return NotSet
