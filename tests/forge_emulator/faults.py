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

    def secondary_rate_limit(self, method: str, path: str, **kw: Any) -> Fault:
        body = {"message": SECONDARY_MESSAGE, "documentation_url": "https://docs.github.com/rest"}
        return self.add(method, path, 403, body=body, headers={"Retry-After": "1"}, **kw)

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
