"""A threaded werkzeug server on 127.0.0.1 that records every exchange."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # tests read ``exchanges`` instead


@dataclass
class Exchange:
    """One request and its answer (the Authorization header is left out)."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    status: int
    response: bytes


class Server:
    """Serve ``handle(request) -> Response`` on a free port until ``stop``."""

    def __init__(self, handle: Callable[[Request], Response], ssl_context: Any = None) -> None:
        self.handle = handle
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler,
            ssl_context=ssl_context,
        )  # fmt: skip
        scheme = "https" if ssl_context else "http"
        self.root = f"{scheme}://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        response = self.handle(request)
        with self._lock:
            self.exchanges.append(
                Exchange(
                    request.method,
                    request.path,
                    dict(request.args),
                    body,
                    response.status_code,
                    response.get_data(),
                )  # fmt: skip
            )
        return response(environ, start_response)

    def requests(self, method: str | None = None, contains: str = "") -> list[Exchange]:
        with self._lock:
            return [
                e
                for e in self.exchanges
                if (method is None or e.method == method) and contains in e.path
            ]
