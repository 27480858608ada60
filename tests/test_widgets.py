"""The ipywidgets ReportPanel, driven inside a real IPython kernel."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel
from test_jupyter_target import HEADING, developer_env, github_checkout, write_executed


class Kernel:
    """A started kernel and a way to run code in it and read back a JSON result."""

    def __init__(self, manager: KernelManager, client: BlockingKernelClient) -> None:
        self.manager, self.client = manager, client

    def run(self, code: str) -> Any:
        """Run ``code``; its last line must print one JSON document, which is returned."""
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=120, output_hook=hook)
        assert reply["content"]["status"] == "ok", "\n".join(errors)
        return json.loads("".join(out).strip().splitlines()[-1])


def start(cwd: Path, env: dict[str, str] | None = None, replace: bool = False) -> Iterator[Kernel]:
    """A kernel in ``cwd`` whose environment is ours plus ``env`` (or only ``env``)."""
    full = dict(env or {}) if replace else {**os.environ, **(env or {})}
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=full)
    try:
        yield Kernel(manager, client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    yield from start(tmp_path)


PANEL_STATE = """
import json
state = {"status": panel.status.value, "report": panel.report.value,
         "confirm_shown": panel.confirm_box.layout.display != "none", "url": panel.url}
print(json.dumps(state))
"""


def test_preview_button_shows_the_sandboxed_report(kernel: Kernel, tmp_path: Path) -> None:
    write_executed(tmp_path / "train.ipynb")
    state = kernel.run(
        "from cml_nb.widgets import ReportPanel\n"
        "panel = ReportPanel('train.ipynb')\n"
        "panel.preview_button.click()\n" + PANEL_STATE
    )
    assert state["report"].startswith('<iframe class="cml-nb-report" sandbox=""')
    # The report page is escaped inside srcdoc, so it cannot break out of the frame.
    assert HEADING in state["report"] and "accuracy 0.93" in state["report"]
    assert str(tmp_path) not in state["report"]  # named train.ipynb, not by absolute path
    assert "<script" not in state["report"].lower()
    assert "train.ipynb" in state["status"] and "saved at" in state["status"]


def test_preview_refreshes_from_the_saved_file(kernel: Kernel, tmp_path: Path) -> None:
    nb = write_executed(tmp_path / "train.ipynb")
    first = kernel.run(
        "from cml_nb.widgets import ReportPanel\n"
        "panel = ReportPanel('train.ipynb')\npanel.preview_button.click()\n" + PANEL_STATE
    )
    write_executed(nb, heading="Retrained model")
    second = kernel.run("panel.preview_button.click()\n" + PANEL_STATE)
    assert HEADING in first["report"]
    assert "Retrained model" in second["report"] and HEADING not in second["report"]


def test_panel_finds_its_notebook_from_the_server_session(tmp_path: Path) -> None:
    nb = write_executed(tmp_path / "session.ipynb")
    for kernel in start(tmp_path, {"JPY_SESSION_NAME": str(nb)}):
        state = kernel.run(
            "from cml_nb.widgets import ReportPanel\n"
            "panel = ReportPanel()\npanel.preview()\n" + PANEL_STATE
        )
        assert HEADING in state["report"]


def test_unreadable_notebook_shows_a_one_line_error(kernel: Kernel, tmp_path: Path) -> None:
    (tmp_path / "broken.ipynb").write_text("{ not json", encoding="utf-8")
    state = kernel.run(
        "from cml_nb.widgets import ReportPanel\n"
        "panel = ReportPanel('broken.ipynb')\npanel.preview_button.click()\n" + PANEL_STATE
    )
    assert state["report"] == ""
    assert "cml-nb:" in state["status"] and "broken.ipynb" in state["status"]


def test_without_a_path_or_session_the_panel_says_what_to_pass(tmp_path: Path) -> None:
    for kernel in start(tmp_path, {"JPY_SESSION_NAME": ""}):
        result = kernel.run(
            "import json\nfrom cml_nb.widgets import ReportPanel\n"
            "try:\n    ReportPanel()\n    print(json.dumps('no error'))\n"
            "except Exception as e:\n    print(json.dumps(type(e).__name__ + ': ' + str(e)))\n"
        )
        assert result.startswith("UsageError: ")
        assert "ReportPanel('train.ipynb')" in result


def test_post_shows_the_target_then_posts_on_confirm(forge_emulator: Any, tmp_path: Path) -> None:
    made = github_checkout(forge_emulator, tmp_path / "demo")
    env = developer_env(os.environ, made.env)
    for kernel in start(made.folder, env, replace=True):
        asked = kernel.run(
            "from cml_nb.widgets import ReportPanel\n"
            "panel = ReportPanel('demo.ipynb')\npanel.post_button.click()\n" + PANEL_STATE
        )
        number = made.pull.number
        assert asked["confirm_shown"]
        assert f"pull request #{number} of octo/demo on GitHub" in asked["status"]
        host = urllib.parse.urlsplit(forge_emulator.github_api).netloc
        assert f"GITHUB_TOKEN is sent to {host} (from GITHUB_API_URL)" in asked["status"]
        assert made.pull.comments == []  # nothing posted before confirming
        posted = kernel.run("panel.confirm_button.click()\n" + PANEL_STATE)
    assert not posted["confirm_shown"]
    assert len(made.pull.comments) == 1 and HEADING in made.pull.comments[0].body
    assert posted["url"].endswith(
        f"/octo/demo/pull/{number}#issuecomment-{made.pull.comments[0].id}"
    )
    assert f'href="{posted["url"]}"' in posted["status"]


def test_cancel_posts_nothing(forge_emulator: Any, tmp_path: Path) -> None:
    made = github_checkout(forge_emulator, tmp_path / "demo")
    for kernel in start(made.folder, developer_env(os.environ, made.env), replace=True):
        kernel.run(
            "from cml_nb.widgets import ReportPanel\n"
            "panel = ReportPanel('demo.ipynb')\npanel.post_button.click()\n" + PANEL_STATE
        )
        state = kernel.run("panel.cancel_button.click()\n" + PANEL_STATE)
    assert not state["confirm_shown"]
    assert made.pull.comments == []


def test_post_without_a_token_shows_the_fix(forge_emulator: Any, tmp_path: Path) -> None:
    made = github_checkout(forge_emulator, tmp_path / "demo")
    env = developer_env(os.environ, {k: v for k, v in made.env.items() if k != "GITHUB_TOKEN"})
    for kernel in start(made.folder, env, replace=True):
        state = kernel.run(
            "from cml_nb.widgets import ReportPanel\n"
            "panel = ReportPanel('demo.ipynb')\npanel.post_button.click()\n" + PANEL_STATE
        )
    assert not state["confirm_shown"]
    assert "GITHUB_TOKEN" in state["status"]
