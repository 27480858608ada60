"""GitHub's refusals as one-line messages that say what happened and what fixes it.

Most 403s from ``GITHUB_TOKEN`` mean the workflow's ``permissions:`` block lacks a
permission, and the message says which to add. Some 403s no ``permissions:`` entry
fixes; ``SPECIAL_403`` maps each to its own advice:

* a ``pull_request`` run for a PR from a fork gets a read-only token
  (docs.github.com/en/actions/security-for-github-actions/security-guides/automatic-token-authentication);
* a locked conversation takes comments from collaborators only;
* "GitHub Actions is not permitted to create or approve pull requests" is a
  repository (or organisation) setting.

422 answers carry an ``errors`` list naming the field and the code; it is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cml_nb.errors import ForgeAuthError, ForgeError, RateLimitedError, TargetNotFoundError
from cml_nb.forge._safety import scrub

PERMISSIONS = {
    "comment": "`permissions: pull-requests: write` (issues: `issues: write`)",
    "commit-comment": "`permissions: contents: write`",
    "contents": "`permissions: contents: write`",
    "checks": "`permissions: checks: write`",
    "statuses": "`permissions: statuses: write`",
    "pulls": "`permissions: pull-requests: write` and `contents: write`",
    "read": "read access to the repository (`permissions: contents: read`)",
}
FORKS_DOC = "docs/publish.md#pull-requests-from-forks"


@dataclass(frozen=True)
class Refusal:
    """One refused request and what the driver knows around it."""

    status: int
    data: dict[str, Any]
    doing: str
    permission: str
    repository: str
    api_url: str
    token_name: str
    fork_pulls: frozenset[int] = field(default_factory=frozenset)
    #: For a rate limit whose wait was too long: the wait, why, and the reset (epoch).
    wait: float | None = None
    why: str = ""
    until: float | None = None

    @property
    def message(self) -> str:
        """GitHub's own message, masked and shortened."""
        return scrub(str(self.data.get("message") or "")[:200])


def _errors_list(data: dict[str, Any]) -> str:
    """GitHub's 422 ``errors``: ``field base: invalid``, or the message it gives."""
    shown = []
    for item in data.get("errors") or []:
        if isinstance(item, dict):
            if item.get("message"):
                shown.append(str(item["message"]))
            else:
                where = " ".join(str(item[k]) for k in ("resource", "field") if item.get(k))
                shown.append(f"{where}: {item.get('code', 'invalid')}".strip(": "))
        else:
            shown.append(str(item))
    return scrub("; ".join(shown)[:300])


def _fork(r: Refusal) -> str | None:
    if not r.fork_pulls or "not accessible by integration" not in r.message.lower():
        return None
    numbers = ", ".join(f"#{n}" for n in sorted(r.fork_pulls))
    return (
        f"GitHub refused {r.doing} (403 {r.message}): pull request {numbers} comes from a "
        f"fork, and its `pull_request` run gets a read-only {r.token_name} whatever "
        "`permissions:` says; publish from a second workflow `on: workflow_run` "
        f"(see {FORKS_DOC})"
    )


def _locked(r: Refusal) -> str | None:
    if "locked" not in r.message.lower():
        return None
    return (
        f"GitHub refused {r.doing} (403 {r.message}): the conversation is locked, so only "
        "collaborators may comment; unlock it, publish with a collaborator's token "
        "(REPO_TOKEN), or use --target commit"
    )


def _actions_may_not_open_pulls(r: Refusal) -> str | None:
    if "not permitted to create or approve pull requests" not in r.message.lower():
        return None
    return (
        f"GitHub refused {r.doing} (403 {r.message}): the repository forbids GitHub Actions "
        "to open pull requests; enable Settings > Actions > General > Workflow permissions > "
        "'Allow GitHub Actions to create and approve pull requests' (an organisation may "
        "lock it), or use a personal token in REPO_TOKEN"
    )


#: 403s that ``permissions:`` cannot fix, each with its own advice (first match wins).
SPECIAL_403: tuple[Callable[[Refusal], str | None], ...] = (
    _locked,
    _actions_may_not_open_pulls,
    _fork,
)


def _rate_limited(r: Refusal) -> ForgeError:
    from cml_nb.forge.github_retry import MAX_WAIT_ENV, clock

    if r.wait is not None:
        reset = "" if r.until is None else f"; it resets at {clock(r.until)}"
        return RateLimitedError(
            f"GitHub rate-limited {r.doing} ({r.status}, {r.why}): the wait of {r.wait:.0f} s "
            f"is longer than {MAX_WAIT_ENV} allows{reset}; rerun after that, or raise "
            f"{MAX_WAIT_ENV}"
        )
    return RateLimitedError(
        f"GitHub rate-limited {r.doing} ({r.status} {r.message}); rerun later, or publish "
        "less often (e.g. a longer --live interval)"
    )


def is_rate_limit(exc: Any) -> bool:
    """Whether a PyGithub exception is a rate limit (which no fallback should swallow)."""
    text = str(exc.data).lower()
    return getattr(exc, "wait", None) is not None or exc.status == 429 or "rate limit" in text


def translate(r: Refusal) -> ForgeError:
    """The ``ForgeError`` for a refused request."""
    text = r.message.lower()
    if r.status == 401:
        return ForgeAuthError(
            f"GitHub rejected the token from {r.token_name} (401 {r.message}) while {r.doing}: "
            "it is missing, expired or revoked; set a valid token or pass --token"
        )
    if r.wait is not None or r.status == 429 or (r.status == 403 and "rate limit" in text):
        return _rate_limited(r)
    if r.status == 403:
        for advice in SPECIAL_403:
            found = advice(r)
            if found is not None:
                return ForgeAuthError(found)
        need = PERMISSIONS.get(r.permission, r.permission)
        return ForgeAuthError(
            f"GitHub refused {r.doing} on {r.repository} (403 {r.message}): the token from "
            f"{r.token_name} lacks the permission; in GitHub Actions add {need} to the job, "
            "or use a token that has it"
        )
    if r.status == 404:
        return TargetNotFoundError(
            f"GitHub found nothing while {r.doing} (404 on {r.repository} at {r.api_url}): "
            "check --repo and --target; a private repository also answers 404 when the token "
            f"from {r.token_name} cannot see it"
        )
    if r.status == 422:
        listed = _errors_list(r.data)
        detail = f"{r.message}: {listed}" if listed else r.message
        return ForgeError(f"GitHub refused {r.doing} (422 {detail})")
    if r.status >= 500:
        # Retried already when the method allows it; this answer came back anyway.
        return ForgeError(
            f"GitHub failed while {r.doing} ({r.status} {r.message}); "
            "check https://www.githubstatus.com and rerun"
        )
    return ForgeError(f"GitHub refused {r.doing} ({r.status} {r.message})")
