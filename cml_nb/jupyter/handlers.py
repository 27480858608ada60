"""REST handlers of the cml-nb jupyter_server extension.

Routes, under the server's ``base_url``:

* ``GET /cml-nb/preview?path=NB`` -> ``{"path", "markdown", "html"}``
* ``GET /cml-nb/target?path=NB[&forge=..&target=..]`` -> where Post would publish
* ``POST /cml-nb/post`` with ``{"path": NB, "forge"?, "target"?, "storage"?, "marker"?}``
  -> ``{"url", "target"}``

All of them need Jupyter's authentication, and its Authorizer's permission
(``@authorized``): ``read`` on ``contents`` to preview or describe the target (they
read a notebook, as the Contents API does), and in addition ``write`` on ``cml-nb``
to post (it acts on the forge as the server's owner, with the owner's token). ``NB``
is relative to the server's root and may not leave it; hidden files (a dot in the
path) are refused with 404 as the Contents API does, unless
``ContentsManager.allow_hidden`` is set. Failures answer JSON ``{"message", "error"}``
with the ``CmlNbError``'s one-line message, scrubbed of secrets.
"""

from __future__ import annotations

import asyncio
import functools
import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from cml_nb import errors
from cml_nb.jupyter import actions

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
#: The Authorizer resource for acting on the forge (posting); previews read ``contents``.
AUTH_RESOURCE = "cml-nb"
CONTENTS = "contents"

#: CmlNbError class -> HTTP status; the first match in this order wins.
_STATUS: tuple[tuple[type[errors.CmlNbError], int], ...] = (
    (errors.TargetNotFoundError, 404),
    (errors.ForgeAuthError, 424),  # not 401/403: those mean Jupyter's own auth failed
    (errors.ForgeError, 502),
    (errors.StorageError, 502),
    (errors.NotebookReadError, 422),
    (errors.UsageError, 400),
)


def _authorized(action: str, resource: str) -> Callable[[F], F]:
    # jupyter_server's decorator, typed: it asks the server's Authorizer (403 if denied).
    return cast("Callable[[F], F]", authorized(action, resource=resource))


def status_for(error: errors.CmlNbError) -> int:
    """The HTTP status that reports ``error``."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


class _CmlNbHandler(APIHandler):
    """Resolves notebook paths inside the root and turns CmlNbError into JSON."""

    auth_resource = AUTH_RESOURCE

    async def notebook(self, path: str | None) -> Path:
        """The file for ``path`` (relative to the server root), refusing escapes and hidden files."""
        if not path:
            raise tornado.web.HTTPError(400, "missing 'path': pass the notebook's path")
        root = Path(self.contents_manager.root_dir).resolve()
        full = (root / path.lstrip("/")).resolve()
        if not full.is_relative_to(root):
            raise tornado.web.HTTPError(
                403, f"{path} is outside the server's root: open a notebook under it"
            )
        if full.suffix != ".ipynb":
            raise tornado.web.HTTPError(400, f"{path} is not a notebook (.ipynb)")
        cm = self.contents_manager
        is_hidden: Callable[[str], Any] = cm.is_hidden
        if not cm.allow_hidden:
            # As the Contents API: a hidden file "does not exist" (404), by its given path
            # and by the path it resolves to (a visible name may link to a hidden one).
            for api_path in {path.strip("/"), full.relative_to(root).as_posix()}:
                if await ensure_async(is_hidden(api_path)):
                    raise tornado.web.HTTPError(
                        404, f"{path} is hidden: Jupyter serves no hidden files "
                        "(ContentsManager.allow_hidden is off)"
                    )  # fmt: skip
        if not full.is_file():
            raise tornado.web.HTTPError(404, f"{path} does not exist: save the notebook first")
        return full

    def label(self, path: str | None) -> str:
        """How reports name the notebook: its path as the user sees it in Jupyter."""
        return (path or "").lstrip("/")

    async def call(self, func: Callable[..., T], *args: Any) -> T | None:
        """Run a blocking action in a thread; on failure answer JSON and return None."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, functools.partial(func, *args))
        except errors.CmlNbError as error:
            self.set_status(status_for(error))
            name, message = type(error).__name__, actions.scrub(str(error))
            self.log.warning("cml-nb: %s", message)
        except Exception as error:  # a bug, or a library failing in a way not mapped yet
            self.set_status(500)
            name = type(error).__name__
            message = actions.scrub(
                f"{type(error).__name__}: {error} (a cml-nb bug; the Jupyter server log has "
                "the traceback: please report it)"
            )
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self.log.error("cml-nb: unexpected failure\n%s", actions.scrub(trace))
        self.finish(json.dumps({"message": message, "error": name}))
        return None

    def overrides(self, source: dict[str, Any]) -> dict[str, str]:
        """The settings a request may override (forge, target, storage, marker)."""
        return {k: str(source[k]) for k in actions.SETTING_KEYS if source.get(k)}


class PreviewHandler(_CmlNbHandler):
    """The report of a saved notebook, as Markdown and sanitized HTML."""

    @tornado.web.authenticated
    @_authorized("read", CONTENTS)
    async def get(self) -> None:
        """Build the report from the notebook's saved outputs."""
        path = self.get_query_argument("path", None)
        notebook = await self.notebook(path)
        result = await self.call(actions.preview, notebook, self.label(path))
        if result is not None:
            self.finish(json.dumps({"path": path, **result}))


class TargetHandler(_CmlNbHandler):
    """Where Post would publish, for the confirmation dialog."""

    @tornado.web.authenticated
    @_authorized("read", CONTENTS)
    async def get(self) -> None:
        """Describe the forge, repository and pull request or commit, and the token's host."""
        notebook = await self.notebook(self.get_query_argument("path", None))
        query = {k: self.get_query_argument(k, "") for k in actions.SETTING_KEYS}
        result = await self.call(actions.describe_target, notebook, self.overrides(query))
        if result is not None:
            self.finish(json.dumps(result))


class PostHandler(_CmlNbHandler):
    """Publish the report through the same code as ``cml-nb publish``."""

    @tornado.web.authenticated
    @_authorized("write", AUTH_RESOURCE)
    @_authorized("read", CONTENTS)
    async def post(self) -> None:
        """Post the saved notebook's report; answer the comment's URL."""
        try:
            body = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as exc:
            raise tornado.web.HTTPError(400, f"the body is not JSON ({exc.msg})") from exc
        if not isinstance(body, dict):
            raise tornado.web.HTTPError(400, 'the body must be a JSON object: {"path": ...}')
        path = body.get("path")
        notebook = await self.notebook(path)
        result = await self.call(actions.post, notebook, self.overrides(body), self.label(path))
        if result is not None:
            self.finish(json.dumps(result))


def setup_handlers(web_app: Any) -> None:
    """Add the cml-nb routes to a jupyter_server web application."""
    base_url = web_app.settings["base_url"]
    routes: list[tuple[str, type[APIHandler]]] = [
        ("preview", PreviewHandler),
        ("target", TargetHandler),
        ("post", PostHandler),
    ]
    web_app.add_handlers(
        ".*$", [(url_path_join(base_url, "cml-nb", name), cls) for name, cls in routes]
    )
