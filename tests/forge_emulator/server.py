"""The emulator's HTTP server: one threaded werkzeug server on 127.0.0.1 for both forges.

GitHub's REST API is served under ``/api/v3`` (as on GitHub Enterprise, so
``GITHUB_API_URL`` points at it), GitLab's under ``/api/v4``, and a few web pages
(raw files, uploads) at the root. Every exchange is recorded in ``exchanges``;
GitHub exchanges are validated against the OpenAPI subset and any mismatch is
collected in ``spec_errors``.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from . import github_git, github_issues, gitlab, openapi, runners
from .faults import Faults
from .router import Call, Reply, Router
from .state import Grant, RateBudget, State

AUTH_HEADERS = ("authorization", "private-token", "job-token")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # tests read ``exchanges`` instead


@dataclass
class Exchange:
    """One request and its answer; auth headers are left out, everything else kept."""

    forge: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int
    response: bytes
    route: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ForgeEmulator:
    """A running emulator: ``state``, ``faults``, ``exchanges`` and the URLs to reach it."""

    state: State = field(default_factory=State)
    faults: Faults = field(default_factory=Faults)
    exchanges: list[Exchange] = field(default_factory=list)
    spec_errors: list[str] = field(default_factory=list)
    root: str = ""
    #: Unauthenticated requests: 60 an hour (rate-limits-for-the-rest-api).
    anonymous_rate: RateBudget = field(default_factory=lambda: RateBudget(60))

    def __post_init__(self) -> None:
        tables = [github_issues.routes, github_git.routes, github_git.web, gitlab.routes,
                  gitlab.web, runners.github, runners.gitlab]  # fmt: skip
        self.router = Router(tables)
        self._lock = threading.Lock()

    @property
    def github_api(self) -> str:
        """Value for ``GITHUB_API_URL``."""
        return self.root + "/api/v3"

    @property
    def gitlab_api(self) -> str:
        """Value for ``CI_API_V4_URL``."""
        return self.root + "/api/v4"

    def requests(self, method: str | None = None, contains: str = "") -> list[Exchange]:
        """Recorded exchanges filtered by method and a substring of the URL."""
        return [
            e
            for e in list(self.exchanges)
            if (method is None or e.method == method) and contains in e.url
        ]

    def start(self) -> None:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True,
                                   request_handler=_QuietHandler)  # fmt: skip
        self.root = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    # -- request handling -------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path
        raw_path = urllib.parse.urlsplit(raw).path
        forge = "github" if raw_path.startswith("/api/v3") else "gitlab"
        if not raw_path.startswith("/api/"):
            forge = "web"
        body = request.get_data()
        reply, route_name = self._answer(forge, request, raw_path)
        payload = reply.body if isinstance(reply.body, bytes) else (
            b"" if reply.body is None else json.dumps(reply.body).encode()
        )  # fmt: skip
        sent = {k: v for k, v in request.headers.items() if k.lower() not in AUTH_HEADERS}
        headers = dict(reply.headers)
        if forge == "github":
            headers = {**self._rate_headers(request), **headers}
            # Every REST answer names itself (the recorded @octokit/fixtures all do).
            headers.setdefault("x-github-request-id", f"0000:{len(self.exchanges):05d}")
            headers.setdefault("x-github-media-type", "github.v3; format=json")
        # GitHub's JSON answers say their charset (recorded in @octokit/fixtures).
        content_type = (
            "application/octet-stream"
            if isinstance(reply.body, bytes)
            else "application/json; charset=utf-8"
        )
        response = Response(payload, status=reply.status, headers=headers,
                            content_type=content_type)  # fmt: skip
        answered = {k.lower(): v for k, v in response.headers.items()}
        with self._lock:
            self.exchanges.append(Exchange(forge, request.method, request.url, sent, body,
                                           reply.status, payload, route_name, answered))  # fmt: skip
        return response(environ, start_response)

    def _rate_headers(self, request: Request) -> dict[str, str]:
        grant = self._grant("github", request)
        return (grant.rate if grant is not None else self.anonymous_rate).headers()

    def _primary_limit(self, grant: Grant | None) -> Reply | None:
        """Spend one request of the token's budget; the documented refusal when none is left."""
        budget = grant.rate if grant is not None else self.anonymous_rate
        with self._lock:
            budget.roll()
            if budget.remaining > 0:
                budget.used += 1
                return None
        who = "installation ID 1" if grant is not None and grant.app else "user ID 1"
        # https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
        # #exceeding-the-primary-rate-limit: 403 or 429, x-ratelimit-remaining 0.
        return Reply(budget.status, {"message": f"API rate limit exceeded for {who}.",
                                     "documentation_url": "https://docs.github.com/rest/"
                                     "using-the-rest-api/rate-limits-for-the-rest-api"})  # fmt: skip

    def _answer(self, forge: str, request: Request, raw_path: str) -> tuple[Reply, str | None]:
        matched = self.router.match(request.method, raw_path)
        if forge == "github":
            limited = self._primary_limit(self._grant(forge, request))
            if limited is not None:
                return limited, "rate-limit"
        fault = self.faults.take(request.method, raw_path)
        if fault is not None:
            self.faults.wait(fault)
            if fault.status == 0:  # a pure delay
                fault = None
            elif not fault.after:
                return Reply(fault.status, fault.body, fault.headers), "fault"
        if matched is None:
            if forge == "github":
                self.spec_errors.append(f"no route: {request.method} {raw_path}")
            return Reply(404, {"message": "Not Found"}), None
        route, args = matched
        grant = self._grant(forge, request)
        call = Call(self.state, request, args, grant, self.root)
        denied = self._check_auth(route, grant)
        if denied is not None:
            return denied, route.rule
        if forge == "github":
            self._validate_request(route.method, route.op, request, raw_path)
        with self.state.lock:
            reply = route.handler(call)
        if forge == "github" and route.op and reply.body is not None:
            # Documented answers only: GitHub's description leaves most 401s and 404s out.
            schema = openapi.response_schema(route.method, route.op, reply.status, default=False)
            if schema is not None and not isinstance(reply.body, bytes):
                if reply.status < 300:
                    reply.body = openapi.complete(schema, reply.body, present=True)
                for problem in openapi.validate(schema, reply.body):
                    self.spec_errors.append(f"response {route.method} {route.op}: {problem}")
        if fault is not None:  # the effect happened, but the answer is lost
            return Reply(fault.status, fault.body, fault.headers), "fault-after"
        return reply, route.rule

    def _validate_request(self, method: str, op: str | None, request: Request, path: str) -> None:
        if op is None:
            self.spec_errors.append(f"undocumented route {method} {path}")
            return
        if openapi.operation(method, op) is None:
            self.spec_errors.append(f"operation not in the vendored subset: {method} {op}")
            return
        schema = openapi.request_schema(method, op)
        data = request.get_data()
        if schema is not None and data:
            for problem in openapi.validate(schema, json.loads(data)):
                self.spec_errors.append(f"request {method} {op}: {problem}")

    def _grant(self, forge: str, request: Request) -> Grant | None:
        header = request.headers.get("Authorization", "")
        token = header.split(" ", 1)[1] if " " in header else ""
        if forge == "gitlab":
            token = (
                request.headers.get("PRIVATE-TOKEN") or request.headers.get("JOB-TOKEN") or token
            )
        return self.state.tokens.get(token) if token else None

    @staticmethod
    def _check_auth(route: Any, grant: Grant | None) -> Reply | None:
        if route.forge == "web":
            return None
        if grant is None:
            if route.forge == "gitlab":
                return Reply(401, {"message": "401 Unauthorized"})
            # docs.github.com/en/rest/authentication/authenticating-to-the-rest-api: a bad
            # token is 401 "Bad credentials"; a missing write permission 403 (below).
            return Reply(401, {"message": "Bad credentials",
                               "documentation_url": "https://docs.github.com/rest"})  # fmt: skip
        if route.perm and route.perm not in grant.permissions:
            if route.forge == "gitlab":
                return Reply(403, {"message": "403 Forbidden"})
            return Reply(403, {"message": "Resource not accessible by integration",
                               "documentation_url": "https://docs.github.com/rest"})  # fmt: skip
        return None
