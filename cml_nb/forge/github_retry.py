"""Retries for GitHub requests: transient errors on every method, rate limits as GitHub asks.

PyGithub's ``GithubRetry`` retries only urllib3's default methods plus GET and POST,
so the edits cml-nb makes with PATCH (the sticky comment, the assets-branch ref, a
pull request's body) failed on the first 502. Every request cml-nb sends is safe to
repeat: PATCH and PUT set a whole value, DELETE of a gone comment is fine, and a
repeated POST of a comment is settled by ``comments.upsert``.

Rate limits follow https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#handle-rate-limit-errors-appropriately:

* ``retry-after`` present: wait that many seconds;
* ``x-ratelimit-remaining: 0`` (a primary limit, answered as 403 *or* 429): wait until
  ``x-ratelimit-reset``;
* otherwise a secondary limit: wait at least a minute, doubling on each repeat.

A wait longer than ``CML_NB_GITHUB_MAX_WAIT`` seconds (default 900) is not made:
the request fails at once with ``WaitTooLong``, which names the reset time. Tests set
that bound low so they never sleep through a real limit.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

from urllib3.util.retry import Retry

log = logging.getLogger("cml_nb.forge.github")

#: Upper bound, in seconds, on one rate-limit wait; longer waits fail at once.
MAX_WAIT_ENV = "CML_NB_GITHUB_MAX_WAIT"
DEFAULT_MAX_WAIT = 900.0
#: GitHub: without retry-after or an exhausted primary limit, "wait for at least one minute".
SECONDARY_WAIT = 60.0
#: Retries after the first try, for every kind of failure together.
RETRIES = 5
#: Every method cml-nb uses; urllib3's default leaves out PATCH and POST.
METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"})
_SECONDARY_WORDS = ("secondary rate limit", "abuse detection", "too many requests")


def max_wait(env: dict[str, str] | None = None) -> float:
    """The bound on one rate-limit wait, from ``CML_NB_GITHUB_MAX_WAIT``."""
    raw = (os.environ if env is None else env).get(MAX_WAIT_ENV, "")
    try:
        return max(float(raw), 0.0) if raw.strip() else DEFAULT_MAX_WAIT
    except ValueError:
        return DEFAULT_MAX_WAIT


def clock(epoch: float) -> str:
    """``15:04:05 UTC`` for an epoch time."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%S UTC")


def _exception(status: int, data: Any, headers: dict[str, str]) -> Exception:
    from github.Requester import Requester

    return Requester.createException(status, headers, data)  # type: ignore[no-any-return]


def _wait_too_long(
    status: int, data: Any, headers: dict[str, str], wait: float, why: str, until: float | None
) -> Exception:
    from github import GithubException

    class WaitTooLong(GithubException):  # type: ignore[misc]
        """A rate limit whose wait passes ``CML_NB_GITHUB_MAX_WAIT``."""

        wait: float
        why: str
        until: float | None

    error = WaitTooLong(status, data, headers)
    error.wait, error.why, error.until = wait, why, until
    return error


class GitHubRetry(Retry):
    """urllib3 ``Retry`` with GitHub's rate-limit rules and every method retried."""

    def __init__(
        self,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        exhausted: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.max_wait = max_wait
        #: The latest exhausted primary limit (limit, reset), shared by every copy: PyGithub
        #: never sees the answers a retry consumed, so it cannot report them.
        self.exhausted: dict[str, int] = {} if exhausted is None else exhausted
        self.wait: float | None = None  # set on the Retry that sleeps before the next try
        self.why = ""
        kwargs.setdefault("allowed_methods", METHODS)
        # 403 is looked at in ``increment``: only rate-limit 403s are retried.
        kwargs.setdefault("status_forcelist", frozenset({403, 429, *range(500, 600)}))
        super().__init__(**kwargs)

    def new(self, **kwargs: Any) -> GitHubRetry:  # noqa: D102 - urllib3's contract
        kwargs.setdefault("max_wait", self.max_wait)
        kwargs.setdefault("exhausted", self.exhausted)
        made: GitHubRetry = super().new(**kwargs)
        return made

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        """Count one more try; for a rate limit, decide the wait or fail at once."""
        planned: tuple[float, str, float | None] | None = None
        if response is not None and response.status in (403, 429):
            headers = {k.lower(): v for k, v in response.headers.items()}
            data = _body(response)
            planned = self._rate_wait(response.status, headers, data)
            if planned is None:  # a plain 403: permissions, not a limit; never retried
                raise _exception(response.status, data, dict(response.headers))
            wait, why, until = planned
            if wait > self.max_wait:
                raise _wait_too_long(response.status, data, dict(response.headers), wait, why,
                                     until)  # fmt: skip
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        assert isinstance(retry, GitHubRetry)
        if planned is not None:
            retry.wait, retry.why = planned[0], planned[1]
        return retry

    def _rate_wait(
        self, status: int, headers: dict[str, str], data: Any
    ) -> tuple[float, str, float | None] | None:
        message = str(data.get("message", "") if isinstance(data, dict) else data).lower()
        after = headers.get("retry-after", "")
        if after.isdigit():
            return float(after), f"GitHub asked for retry-after {after} s", time.time() + int(after)
        reset = headers.get("x-ratelimit-reset", "")
        if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
            until = float(reset)
            limit = headers.get("x-ratelimit-limit", "")
            self.exhausted.update(reset=int(reset), limit=int(limit) if limit.isdigit() else 0)
            # +1: the reset happens at some point within that second.
            wait = max(until - time.time(), 0.0) + 1.0
            return wait, f"primary rate limit, resets at {clock(until)}", until
        if status == 429 or any(word in message for word in _SECONDARY_WORDS):
            repeats = sum(1 for h in self.history if h.status in (403, 429))
            wait = SECONDARY_WAIT * 2**repeats
            return wait, "secondary rate limit without retry-after", None
        return None

    def sleep(self, response: Any = None) -> None:
        """Wait as planned for a rate limit (and say so), else urllib3's backoff."""
        if self.wait is None:
            super().sleep(response)
            return
        log.warning("GitHub rate limit (%s): waiting %.0f s before retrying", self.why,
                    self.wait)  # fmt: skip
        time.sleep(self.wait)


def _body(response: Any) -> Any:
    try:
        raw = response.data  # urllib3 keeps the content it read for the retry decision
    except Exception:  # a body that cannot be read: decide on status and headers only
        return {}
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")[:200] if raw else ""}


def make_retry() -> GitHubRetry:
    """The retry policy of every GitHub driver in this process."""
    return GitHubRetry(total=RETRIES, backoff_factor=0.5, backoff_max=20,
                       max_wait=max_wait())  # fmt: skip
