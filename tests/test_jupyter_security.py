"""Issue 14, items 8 and 2 (Jupyter side): the server extension obeys Jupyter's Authorizer,
refuses hidden files as the Contents API does, and names the host the token goes to.

A real jupyter_server (pytest-jupyter's ``jp_fetch``) with a custom Authorizer class set in
the server config; Post goes to the forge emulator through the real PyGithub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nbformat
import pytest
from jupyter_server.auth.authorizer import Authorizer
from test_jupyter_handlers import fetch_error
from test_jupyter_target import executed_notebook, github_checkout, use_developer_env
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


class ReadOnlyAuthorizer(Authorizer):
    """A reader: may read anything, may write or execute nothing."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return action == "read"


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"cml_nb": True},
            "allow_unauthenticated_access": False,
            "authorizer_class": ReadOnlyAuthorizer,
        }
    }


@pytest.fixture
def lab_checkout(forge_emulator: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    made = github_checkout(forge_emulator, jp_root_dir)
    use_developer_env(monkeypatch, made.env)
    return made


async def test_a_reader_may_preview_but_not_post(jp_fetch: Any, lab_checkout: Any) -> None:
    response = await jp_fetch("cml-nb", "preview", params={"path": "demo.ipynb"})
    assert response.code == 200
    code, _ = await fetch_error(
        jp_fetch, "cml-nb", "post", method="POST", body=json.dumps({"path": "demo.ipynb"})
    )
    assert code == 403
    assert lab_checkout.pull.comments == []  # the owner's token was not used for a reader


class _NoReads(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (action == "read" and resource == "contents")


@pytest.mark.parametrize("route", ["preview", "target"])
async def test_preview_and_target_need_read_on_contents(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, route: str
) -> None:
    nbformat.write(executed_notebook(), jp_root_dir / "demo.ipynb")
    jp_serverapp.web_app.settings["authorizer"] = _NoReads(parent=jp_serverapp)
    code, _ = await fetch_error(jp_fetch, "cml-nb", route, params={"path": "demo.ipynb"})
    assert code == 403


@pytest.mark.parametrize(
    "path", [".hidden.ipynb", ".secret/n.ipynb", "sub/.cache/n.ipynb", "visible.ipynb"]
)
async def test_hidden_files_are_refused_as_the_contents_api_does(
    jp_fetch: Any, jp_root_dir: Path, path: str
) -> None:
    hidden = jp_root_dir / (".real.ipynb" if path == "visible.ipynb" else path)
    hidden.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(executed_notebook(), hidden)
    if path == "visible.ipynb":  # a visible name linking to a hidden file
        (jp_root_dir / path).symlink_to(hidden)
    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch("api", "contents", hidden.relative_to(jp_root_dir).as_posix())
    assert refused.value.code == 404  # Jupyter's own Contents API refuses it
    code, body = await fetch_error(jp_fetch, "cml-nb", "preview", params={"path": path})
    assert code == 404 and "hidden" in body["message"]
    code, _ = await fetch_error(
        jp_fetch, "cml-nb", "post", method="POST", body=json.dumps({"path": path})
    )
    assert code in (403, 404)


async def test_hidden_files_are_served_when_jupyter_allows_them(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path
) -> None:
    nbformat.write(executed_notebook(), jp_root_dir / ".hidden.ipynb")
    jp_serverapp.contents_manager.allow_hidden = True
    response = await jp_fetch("cml-nb", "preview", params={"path": ".hidden.ipynb"})
    assert response.code == 200


async def test_target_names_the_host_that_gets_the_token(
    jp_fetch: Any, lab_checkout: Any, forge_emulator: Any
) -> None:
    response = await jp_fetch("cml-nb", "target", params={"path": "demo.ipynb"})
    where = json.loads(response.body)
    assert where["api_url"] == forge_emulator.github_api
    assert where["host"] == urlsplit(forge_emulator.github_api).netloc
    assert where["api_source"] == "GITHUB_API_URL" and where["token_name"] == "GITHUB_TOKEN"
    assert lab_checkout.token not in response.body.decode()
