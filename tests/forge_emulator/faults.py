"""Fault injection: make chosen requests fail, slowly or after their effect.

``emulator.faults.add(...)`` queues a fault for requests whose method and path
match; each fault fires ``times`` times and is then spent. Presets mirror what the
real forges send: ``bad_gateway()``, ``too_many_requests()`` and GitHub's
``secondary_rate_limit()`` (403 with ``Retry-After``).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int = 502
    times: int = 1
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Apply the request's effect first, then answer with the fault (a lost response).
    after: bool = False
    #: Seconds to wait before answering (for races and timeouts).
    delay: float = 0.0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and bool(self.path.search(path))


class Faults:
    """A thread-safe queue of faults, consulted once per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        method: str,
        path: str,
        status: int = 502,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        after: bool = False,
        delay: float = 0.0,
    ) -> Fault:
        """Queue a fault for requests matching ``method`` (or ``*``) and the regex ``path``."""
        fault = Fault(method.upper() if method != "*" else "*", re.compile(path), status, times,
                      body, dict(headers or {}), after, delay)  # fmt: skip
        with self._lock:
            self._faults.append(fault)
        return fault

    def bad_gateway(self, method: str, path: str, **kw: Any) -> Fault:
        return self.add(method, path, 502, body={"message": "Server Error"}, **kw)

    def too_many_requests(self, method: str, path: str, **kw: Any) -> Fault:
        headers = {"Retry-After": "1"}
        return self.add(
            method, path, 429, body={"message": "Too Many Requests"}, headers=headers, **kw
        )

    def secondary_rate_limit(
        self, method: str, path: str, *, retry_after: int | None = 1, status: int = 403, **kw: Any
    ) -> Fault:
        """GitHub's secondary limit: 403 or 429, ``retry-after`` when GitHub names a wait.

        https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
        #exceeding-the-secondary-rate-limit: "If the retry-after response header is
        present ... Otherwise, wait for at least one minute"; x-ratelimit-remaining is not 0.
        """
        body = {"message": SECONDARY_MESSAGE, "documentation_url": "https://docs.github.com/rest"}
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return self.add(method, path, status, body=body, headers=headers, **kw)

    def primary_rate_limit(
        self, method: str, path: str, *, reset_in: float, status: int = 403, **kw: Any
    ) -> Fault:
        """An exhausted primary limit on matching requests: 403 or 429, remaining 0.

        Same source as above (#exceeding-the-primary-rate-limit). For a limit that
        covers every request of a token, use ``grant.rate.exhaust`` instead.
        """
        body = {"message": "API rate limit exceeded for installation ID 1.",
                "documentation_url": "https://docs.github.com/rest/using-the-rest-api/"
                "rate-limits-for-the-rest-api"}  # fmt: skip
        reset = str(int(time.time() + reset_in))
        headers = {"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "0",
                   "x-ratelimit-used": "1000", "x-ratelimit-reset": reset,
                   "x-ratelimit-resource": "core"}  # fmt: skip
        return self.add(method, path, status, body=body, headers=headers, **kw)

    def take(self, method: str, path: str) -> Fault | None:
        """The first live fault matching this request, counted as fired."""
        with self._lock:
            for fault in self._faults:
                if fault.fired < fault.times and fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @staticmethod
    def wait(fault: Fault) -> None:
        if fault.delay:
            time.sleep(fault.delay)
