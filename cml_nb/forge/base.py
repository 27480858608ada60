"""The ``Forge`` interface every forge driver implements, and the values it trades in.

A driver wraps one forge client (PyGithub, python-gitlab) for one repository. It
turns the forge's failures into ``ForgeError`` subclasses with a message that says
which token and which permission to fix; it never puts the token in a message.
Comment stickiness, storage and publishing are built on top of these primitives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: ``Target.kind`` values.
PR, COMMIT, ISSUE = "pr", "commit", "issue"


@dataclass(frozen=True)
class Target:
    """Where a report comment goes.

    Attributes:
        forge: ``github`` or ``gitlab``.
        repository: ``owner/name`` (GitLab: the project path or id).
        kind: ``pr`` (a pull or merge request), ``commit`` or ``issue``.
        number: the PR/MR/issue number (GitLab: the iid); None for commits.
        sha: the commit reported on (a PR's head commit), when known.
    """

    forge: str
    repository: str
    kind: str
    number: int | None = None
    sha: str | None = None

    def describe(self) -> str:
        """A phrase for messages, e.g. ``pull request #3 of octo/demo on GitHub``."""
        where = {"github": "GitHub", "gitlab": "GitLab"}.get(self.forge, self.forge)
        noun = "merge request !" if self.forge == "gitlab" else "pull request #"
        if self.kind == PR:
            what = f"{noun}{self.number}"
        elif self.kind == ISSUE:
            what = f"issue #{self.number}"
        else:
            what = f"commit {self.sha[:12]}" if self.sha else "an unknown commit"
        return f"{what} of {self.repository} on {where}"


@dataclass(frozen=True)
class Comment:
    """A comment as the forge holds it.

    Attributes:
        id: the forge's comment (note) id.
        body: the Markdown body.
        author: the author's login.
        url: a link to the comment (empty when the forge gives none).
        bot: whether the author is a bot account.
        thread: driver-private locator (GitLab commit discussions need their id).
    """

    id: int
    body: str
    author: str
    url: str = ""
    bot: bool = False
    thread: str = ""


@dataclass
class PullRequestInfo:
    """A pull/merge request as ``open_pull_request`` left it."""

    number: int
    url: str
    head: str
    base: str
    action: str  # created, updated
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Forge(Protocol):
    """One repository on one forge, reached with one token.

    Attributes:
        name: registry name, ``github`` or ``gitlab``.
        repository: ``owner/name`` as given.
        max_comment_chars: the longest comment body the forge accepts.
        default_storage: the storage backend used for images unless told otherwise.
    """

    name: str
    repository: str
    max_comment_chars: int
    default_storage: str

    def login(self) -> str | None:
        """The token's own login, or None when the forge will not say (app tokens)."""

    def default_branch(self) -> str:
        """The repository's default branch."""

    def pull_request(self, number: int) -> Target:
        """The target for PR/MR ``number``, with its head commit.

        Raises:
            TargetNotFoundError: no such pull or merge request.
        """

    def pulls_for_commit(self, sha: str) -> list[Target]:
        """Open PRs/MRs whose head branch contains ``sha``, newest first."""

    def commit(self, sha: str) -> Target:
        """The target for comments on commit ``sha``."""

    def list_comments(self, target: Target) -> list[Comment]:
        """Every comment on ``target``, all pages, oldest first."""

    def create_comment(self, target: Target, body: str) -> Comment:
        """Post a new comment."""

    def update_comment(self, target: Target, comment: Comment, body: str) -> Comment:
        """Replace a comment's body."""

    def delete_comment(self, target: Target, comment: Comment) -> None:
        """Delete a comment (already gone counts as done)."""

    def set_status(
        self, sha: str, *, succeeded: bool, name: str, title: str, summary: str, url: str = ""
    ) -> str:
        """Record the run's outcome on commit ``sha`` (check run or commit status); its URL."""

    def read_file(self, path: str, ref: str) -> bytes | None:
        """A file's bytes at a branch, tag or commit; None when absent."""

    def list_files(self, branch: str) -> set[str] | None:
        """Paths of every file on ``branch``; None when the branch does not exist."""

    def commit_files(
        self, branch: str, files: Mapping[str, bytes], message: str, *, start: str | None
    ) -> str:
        """Commit ``files`` onto ``branch`` and return the new commit's sha.

        The branch is created from commit ``start`` when missing (an orphan branch
        when ``start`` is None); existing files not named stay as they are.
        """

    def raw_url(self, branch: str, path: str) -> str:
        """A URL that shows a file of ``branch`` to anyone who can read the repository."""

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequestInfo:
        """Open a PR/MR from ``head`` into ``base``, or update the open one's body."""
