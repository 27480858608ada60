"""Routing: each route module fills a ``RouteTable``; the server matches on the raw path.

Routes are declared per forge with werkzeug rules. GitHub routes name their
OpenAPI operation (``op``) so traffic is validated; write routes name the
permission (``perm``) a token needs, so a missing one answers 403 as the forge would.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request

from .state import Grant, State

PREFIX = {"github": "/api/v3", "gitlab": "/api/v4", "web": ""}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, or bytes for raw content
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One request as a handler sees it."""

    state: State
    request: Request
    args: dict[str, str]
    grant: Grant | None
    root: str  # http://127.0.0.1:PORT

    @property
    def api(self) -> str:
        return self.root + PREFIX["github"]

    @property
    def api4(self) -> str:
        return self.root + PREFIX["gitlab"]

    @property
    def json(self) -> Any:
        data = self.request.get_data()
        if not data:
            return {}
        try:
            return json.loads(data)  # the forges read JSON whatever the Content-Type says
        except ValueError:
            return {k: v for k, v in self.request.form.items()}

    def param(self, name: str, default: str | None = None) -> str | None:
        value = self.request.args.get(name)
        if value is None and self.request.get_data() and self.request.method != "GET":
            try:
                body = self.json
            except ValueError:
                body = {}
            value = body.get(name) if isinstance(body, dict) else None
        return default if value is None else value


Handler = Callable[[Call], Reply]


@dataclass
class Route:
    forge: str
    method: str
    rule: str
    handler: Handler
    op: str | None = None
    perm: str | None = None


class RouteTable:
    """The routes of one module, declared with ``@table.get(...)`` and friends."""

    def __init__(self, forge: str) -> None:
        self.forge = forge
        self.routes: list[Route] = []

    def add(self, method: str, rule: str, *, op: str | None = None, perm: str | None = None
            ) -> Callable[[Handler], Handler]:  # fmt: skip
        def decorator(handler: Handler) -> Handler:
            self.routes.append(Route(self.forge, method, rule, handler, op, perm))
            return handler

        return decorator

    def get(self, rule: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.add("GET", rule, **kw)

    def post(self, rule: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.add("POST", rule, **kw)

    def patch(self, rule: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.add("PATCH", rule, **kw)

    def put(self, rule: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.add("PUT", rule, **kw)

    def delete(self, rule: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.add("DELETE", rule, **kw)


class Router:
    """Matches a raw (still percent-encoded) path to a route and its arguments."""

    def __init__(self, tables: list[RouteTable]) -> None:
        self.routes: list[Route] = []
        rules = []
        for table in tables:
            for route in table.routes:
                endpoint = str(len(self.routes))
                self.routes.append(route)
                path = PREFIX[route.forge] + route.rule
                rules.append(Rule(path, endpoint=endpoint, methods=[route.method]))
        self.map = Map(rules, strict_slashes=False, merge_slashes=False)

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        adapter = self.map.bind("127.0.0.1")
        try:
            endpoint, values = adapter.match(raw_path, method=method)
        except Exception:  # NotFound, MethodNotAllowed, RequestRedirect
            return None
        args = {k: urllib.parse.unquote(str(v)) for k, v in values.items()}
        return self.routes[int(endpoint)], args


def paginate(call: Call, items: list[Any], url: str) -> Reply:
    """One page of ``items`` with GitHub/GitLab style ``Link`` and ``X-*`` headers.

    GitHub: per_page at most 100, ``Link`` with rel next/last/prev/first
    (docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api; the
    form is checked against @octokit/fixtures in tests/test_octokit_contract.py).
    """
    page = int(call.request.args.get("page", 1))
    per_page = min(int(call.request.args.get("per_page", 30)), 100)
    total = len(items)
    last = max(1, -(-total // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    query = {k: v for k, v in call.request.args.items() if k not in ("page", "per_page")}

    def link(n: int) -> str:
        params = urllib.parse.urlencode({**query, "per_page": per_page, "page": n})
        return f"{url}?{params}"

    links = []
    if page < last:
        links.append(f'<{link(page + 1)}>; rel="next"')
        links.append(f'<{link(last)}>; rel="last"')
    if page > 1:
        links.append(f'<{link(page - 1)}>; rel="prev"')
        links.append(f'<{link(1)}>; rel="first"')
    headers = {"X-Total": str(total), "X-Total-Pages": str(last), "X-Page": str(page),
               "X-Per-Page": str(per_page), "X-Next-Page": str(page + 1) if page < last else ""}  # fmt: skip
    if links:
        headers["Link"] = ", ".join(links)
    return Reply(200, chunk, headers)


def error(status: int, message: str) -> Reply:
    return Reply(status, {"message": message, "documentation_url": "https://docs.github.com/rest"})
