"""The comment source: base metrics from cml-nb's own report comment, and nobody else's.

Anyone can comment on a public commit or pull request, so a comment is evidence only when

1. its author is the account cml-nb itself posts as: the token's user (a personal or
   GitLab token, looked up once through the API), or, for tokens that cannot name
   themselves (GitHub's ``GITHUB_TOKEN``), the bot that forge posts as
   (:data:`APP_AUTHORS`); and
2. the metrics come from the trailer cml-nb writes: the *last* line of the body, exactly
   ``<!-- cml-nb:metrics {...} -->``. Marker- or metrics-like text elsewhere (a notebook
   that printed one) is never read.

A trusted report comment whose trailer is missing or malformed is *unreadable*, which is
not the same as absent: the regression gate fails closed on it (:mod:`cml_nb.history.gate`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: Who posts with a token that cannot read its own user, per forge. GitHub Actions'
#: GITHUB_TOKEN comments as ``github-actions[bot]``
#: (https://docs.github.com/en/actions/security-for-github-actions/security-guides/automatic-token-authentication).
#: GitLab's CI_JOB_TOKEN cannot post notes at all, so GitLab has no entry: with no
#: known author nothing is trusted.
APP_AUTHORS: dict[str, str] = {"github": "github-actions[bot]"}

# The marker cml-nb writes as the first line (cml_nb.forge.comments.marker_line).
_MARKER = re.compile(r"<!-- cml-nb:report [A-Za-z0-9._/-]+ -->")
# The trailer cml-nb writes as the last line; its JSON never holds "--" (escaped as
# "-\u002d" by cml_nb.forge.comments.metrics_line) nor a raw newline (json.dumps).
_TRAILER = re.compile(r"<!-- cml-nb:metrics (?P<json>\{[^\n]*\}) -->")


class CommentLike(Protocol):
    """A comment as a forge driver returns it (:class:`cml_nb.forge.base.Comment`)."""

    @property
    def id(self) -> int:
        """The forge's comment id (higher is newer)."""

    @property
    def body(self) -> str:
        """The Markdown body."""

    @property
    def author(self) -> str:
        """The author's login."""


class CommentReader(Protocol):
    """What the comment source needs from a forge (both cml-nb forge drivers have it)."""

    name: str

    def login(self) -> str | None:
        """The token's own login; None when the forge will not say (app tokens)."""

    def commit(self, sha: str) -> Any:
        """The target for comments on commit ``sha``."""

    def pulls_for_commit(self, sha: str) -> Sequence[Any]:
        """Open pull/merge requests containing ``sha``, newest first."""

    def list_comments(self, target: Any) -> Sequence[CommentLike]:
        """Every comment on ``target``, oldest first."""


@dataclass
class CommentMetrics:
    """What the comment source found on one commit.

    Attributes:
        payload: the trailer's JSON of the newest trusted report comment; None if none.
        author: whose comments were trusted (empty when nobody could be).
        unreadable: why the newest trusted report comment could not be read ("" if it could).
        ignored: how many report-like comments by other accounts were left out.
    """

    payload: dict[str, Any] | None = None
    author: str = ""
    unreadable: str = ""
    ignored: int = 0


def trusted_author(forge: CommentReader) -> str | None:
    """The account cml-nb posts as through ``forge``; None when it cannot be known."""
    return forge.login() or APP_AUTHORS.get(forge.name)


def trailer(body: str) -> dict[str, Any] | None:
    """The metrics payload of cml-nb's trailer: the body's last line, exactly formed.

    Returns None when the last line is not a complete trailer holding a JSON object.
    """
    lines = body.rstrip().splitlines()
    if not lines:
        return None
    found = _TRAILER.fullmatch(lines[-1].strip())
    if found is None:
        return None
    try:
        data = json.loads(found.group("json"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def is_report(body: str) -> bool:
    """Whether ``body`` starts as a cml-nb report comment (the marker on its first line)."""
    first = body.lstrip().split("\n", 1)[0].strip()
    return _MARKER.fullmatch(first) is not None


def _looks_like_report(body: str) -> bool:
    return "cml-nb:report" in body or "cml-nb:metrics" in body


def report_metrics(forge: CommentReader, sha: str) -> CommentMetrics:
    """The metrics of cml-nb's own newest report comment about commit ``sha``.

    Commit comments first; when the commit has none, the comments of open pull/merge
    requests containing it. Comments by any other account are ignored, as is any
    metrics-like text but the trailer. A payload naming another commit is skipped.
    """
    author = trusted_author(forge)
    result = CommentMetrics(author=author or "")
    candidates: list[CommentLike] = list(forge.list_comments(forge.commit(sha)))
    if not candidates:
        for pull in forge.pulls_for_commit(sha):
            candidates += forge.list_comments(pull)
    for comment in sorted(candidates, key=lambda c: c.id):
        if author is None or comment.author != author:
            result.ignored += _looks_like_report(comment.body)
            continue
        if not is_report(comment.body):
            continue
        payload = trailer(comment.body)
        if payload is None:
            result.payload, result.unreadable = (
                None,
                (
                    f"cml-nb's comment {comment.id} has no complete metrics trailer "
                    "(edited or cut short)"
                ),
            )
        elif payload.get("sha") in (None, sha):
            result.payload, result.unreadable = payload, ""
    return result


def describe_untrusted(found: CommentMetrics, sha: str) -> str:
    """One line for ``Baseline.tried`` when no trusted comment had metrics."""
    if not found.author:
        return (
            "comment: cannot tell which account cml-nb posts as with this token "
            "(use a token that can read its own user)"
        )
    extra = f"; ignored {found.ignored} by other accounts" if found.ignored else ""
    return f"comment: no cml-nb report comment by {found.author} on {sha[:7]}{extra}"
