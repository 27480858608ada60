"""The jupyter_server extension's REST API, through a real server (pytest-jupyter's jp_fetch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from forge_emulator.scenarios import fake_token
from nbformat.v4 import new_markdown_cell
from test_jupyter_target import HEADING, executed_notebook, github_checkout, use_developer_env
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    # allow_unauthenticated_access=False: any handler without auth decorators would 403.
    return {
        "ServerApp": {
            "jpserver_extensions": {"cml_nb": True},
            "allow_unauthenticated_access": False,
        }
    }


@pytest.fixture
def demo(jp_root_dir: Path) -> str:
    nbformat.write(executed_notebook(), jp_root_dir / "demo.ipynb")
    return "demo.ipynb"


async def fetch_error(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*parts, **kwargs)
    body = caught.value.response.body if caught.value.response is not None else b""
    return caught.value.code, (json.loads(body) if body else {})


async def test_preview_builds_the_report_from_saved_outputs(
    jp_fetch: Any, demo: str, jp_root_dir: Path
) -> None:
    response = await jp_fetch("cml-nb", "preview", params={"path": demo})
    assert response.code == 200
    data = json.loads(response.body)
    assert data["path"] == demo
    # Named as Jupyter shows it, without the server's filesystem layout.
    assert "`demo.ipynb`" in data["markdown"] and str(jp_root_dir) not in data["markdown"]
    assert HEADING in data["markdown"]
    assert "accuracy 0.93" in data["markdown"]
    assert HEADING in data["html"] and "accuracy 0.93" in data["html"]
    assert "<script" not in data["html"].lower()


async def test_preview_html_is_sanitized(jp_fetch: Any, jp_root_dir: Path) -> None:
    nb = executed_notebook()
    nb.cells.append(new_markdown_cell('<script>alert(1)</script><img src=x onerror="alert(2)">'))
    nbformat.write(nb, jp_root_dir / "hostile.ipynb")
    response = await jp_fetch("cml-nb", "preview", params={"path": "hostile.ipynb"})
    html = json.loads(response.body)["html"].lower()
    assert "<script" not in html and "onerror" not in html


async def test_preview_of_a_subfolder_notebook(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "sub").mkdir()
    nbformat.write(executed_notebook(), jp_root_dir / "sub" / "n.ipynb")
    response = await jp_fetch("cml-nb", "preview", params={"path": "sub/n.ipynb"})
    assert HEADING in json.loads(response.body)["markdown"]


@pytest.mark.parametrize("method", ["GET preview", "GET target", "POST post"])
async def test_every_route_requires_jupyter_auth(jp_fetch: Any, demo: str, method: str) -> None:
    verb, route = method.split()
    kwargs: dict[str, Any] = {"headers": {"Authorization": ""}}
    if verb == "POST":
        kwargs.update(method="POST", body=json.dumps({"path": demo}))
    else:
        kwargs["params"] = {"path": demo}
    code, _ = await fetch_error(jp_fetch, "cml-nb", route, **kwargs)
    assert code == 403


@pytest.mark.parametrize("escape", ["../outside.ipynb", "sub/../../outside.ipynb", "link.ipynb"])
async def test_paths_outside_the_root_are_refused(
    jp_fetch: Any, jp_root_dir: Path, escape: str
) -> None:
    outside = jp_root_dir.parent / "outside.ipynb"
    nbformat.write(executed_notebook(), outside)
    (jp_root_dir / "sub").mkdir()
    (jp_root_dir / "link.ipynb").symlink_to(outside)
    code, body = await fetch_error(jp_fetch, "cml-nb", "preview", params={"path": escape})
    assert code == 403
    assert "outside the server's root" in body["message"]
    code, _ = await fetch_error(
        jp_fetch, "cml-nb", "post", method="POST", body=json.dumps({"path": escape})
    )
    assert code == 403


async def test_missing_notebook_says_to_save_it(jp_fetch: Any, jp_root_dir: Path) -> None:
    code, body = await fetch_error(jp_fetch, "cml-nb", "preview", params={"path": "nope.ipynb"})
    assert code == 404
    assert "save the notebook" in body["message"]


async def test_unreadable_notebook_is_a_one_line_error(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "broken.ipynb").write_text("{ not json", encoding="utf-8")
    code, body = await fetch_error(jp_fetch, "cml-nb", "preview", params={"path": "broken.ipynb"})
    assert code == 422
    assert body["error"] == "NotebookReadError"
    assert "broken.ipynb" in body["message"] and "\n" not in body["message"]


async def test_post_rejects_a_body_without_path(jp_fetch: Any, demo: str) -> None:
    code, body = await fetch_error(jp_fetch, "cml-nb", "post", method="POST", body="{}")
    assert code == 400
    assert "path" in body["message"]


# --- Post, against the forge emulator -------------------------------------------------


@pytest.fixture
def lab_checkout(forge_emulator: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The server's root is a developer's checkout with an open PR; the token is in the env."""
    made = github_checkout(forge_emulator, jp_root_dir)
    use_developer_env(monkeypatch, made.env)
    return made


async def test_target_names_the_pull_request_before_posting(
    jp_fetch: Any, lab_checkout: Any
) -> None:
    response = await jp_fetch("cml-nb", "target", params={"path": "demo.ipynb"})
    where = json.loads(response.body)
    number = lab_checkout.pull.number
    assert where["description"] == f"pull request #{number} of octo/demo on GitHub"
    assert lab_checkout.pull.comments == []  # asking where posts nothing


async def test_post_publishes_one_comment_and_updates_it(
    jp_fetch: Any, lab_checkout: Any, forge_emulator: Any
) -> None:
    first = json.loads(
        (
            await jp_fetch("cml-nb", "post", method="POST", body=json.dumps({"path": "demo.ipynb"}))
        ).body
    )
    assert first["action"] == "created"
    assert first["target"]["kind"] == "pr" and first["target"]["number"] == lab_checkout.pull.number
    comments = lab_checkout.pull.comments
    assert len(comments) == 1
    number, comment_id = lab_checkout.pull.number, comments[0].id
    assert (
        first["url"] == f"{forge_emulator.root}/octo/demo/pull/{number}#issuecomment-{comment_id}"
    )
    assert HEADING in comments[0].body and "accuracy 0.93" in comments[0].body
    assert lab_checkout.token not in comments[0].body
    assert str(lab_checkout.folder) not in comments[0].body
    second = json.loads(
        (
            await jp_fetch("cml-nb", "post", method="POST", body=json.dumps({"path": "demo.ipynb"}))
        ).body
    )
    assert second["action"] == "updated" and second["url"] == first["url"]
    assert len(lab_checkout.pull.comments) == 1


async def test_post_without_a_token_says_how_to_fix_it(
    jp_fetch: Any, lab_checkout: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    code, body = await fetch_error(
        jp_fetch, "cml-nb", "post", method="POST", body=json.dumps({"path": "demo.ipynb"})
    )
    assert code == 424 and body["error"] == "ForgeAuthError"
    assert "GITHUB_TOKEN" in body["message"]
    assert lab_checkout.pull.comments == []


async def test_post_with_a_bad_token_never_echoes_it(
    jp_fetch: Any, lab_checkout: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = fake_token("ghp_")
    monkeypatch.setenv("GITHUB_TOKEN", wrong)
    code, body = await fetch_error(
        jp_fetch, "cml-nb", "post", method="POST", body=json.dumps({"path": "demo.ipynb"})
    )
    assert code == 424
    assert wrong not in json.dumps(body)


async def test_post_with_no_pull_request_says_what_to_do(
    jp_fetch: Any, forge_emulator: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = github_checkout(forge_emulator, jp_root_dir, pull=False)
    use_developer_env(monkeypatch, made.env)
    body = json.dumps({"path": "demo.ipynb", "target": "pr"})
    code, answer = await fetch_error(jp_fetch, "cml-nb", "post", method="POST", body=body)
    assert code == 404 and answer["error"] == "TargetNotFoundError"
    assert "open one" in answer["message"]
    assert made.repo.all_comments() == []
