"""End to end: a real JupyterLab on 127.0.0.1, driven by headless Chromium (playwright-core).

Needs Debian's ``chromium``, Node.js, ``extension/node_modules`` (``jlpm install``
in ``extension/``, which ``pip install -e .`` runs) and the built extension in
``cml_nb/labextension``. Screenshots land in ``test-artifacts/lab-e2e/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_jupyter_target import Checkout, developer_env, github_checkout

from cml_nb import execute

REPO = Path(__file__).resolve().parent.parent
EXTENSION = REPO / "extension"
BUILT = REPO / "cml_nb" / "labextension"
ARTIFACTS = REPO / "test-artifacts" / "lab-e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
EXAMPLE = REPO / "example_notebooks" / "train.ipynb"
HEADING = "Digit classifier"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    # Outside CI a developer may lack them; in CI (.ci/run installs both) they must run.
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason=f"no Chromium at {CHROMIUM}",
    ),
    pytest.mark.skipif(
        shutil.which("node") is None and not os.environ.get("CI"), reason="Node.js is not installed"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Lab:
    url: str
    token: str
    checkout: Checkout


@pytest.fixture
def lab(tmp_path: Path, forge_emulator: Any) -> Iterator[Lab]:
    """JupyterLab serving a developer's checkout (open PR on the emulator, token in its env)."""
    missing = [
        p
        for p in (BUILT / "static" / "style.js", EXTENSION / "node_modules" / "playwright-core")
        if not p.exists()
    ]
    assert not missing, f"missing {missing}: run 'jlpm install && jlpm build' in extension/"
    made = github_checkout(forge_emulator, tmp_path / "root")
    root = made.folder
    # The example notebook, executed the way a developer would before posting.
    execute.run(EXAMPLE, root / "train.ipynb", {"max_iter": 100})
    # The freshly built extension, ahead of any installed copy (extra paths come first).
    labext = tmp_path / "labextensions"
    labext.mkdir()
    (labext / "cml-nb").symlink_to(BUILT, target_is_directory=True)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    token, port = secrets.token_hex(16), free_port()
    env = developer_env(os.environ, made.env)
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "workspaces")
    log = (tmp_path / "lab.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.extra_labextensions_path={labext}",
         # Enabled here too, so the test does not depend on how cml-nb was installed.
         "--ServerApp.jpserver_extensions", "cml_nb=True"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not start in 60 s"
                time.sleep(0.3)
        yield Lab(url, token, made)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "lab.log", ARTIFACTS / "lab.log")


def drive(lab: Lab, steps: str) -> dict[str, object]:
    env = {
        **os.environ,
        "CMLNB_URL": lab.url,
        "CMLNB_TOKEN": lab.token,
        "CMLNB_NOTEBOOK": "train.ipynb",
        "CMLNB_HEADING": HEADING,
        "CMLNB_ARTIFACTS": str(ARTIFACTS),
        "CMLNB_STEPS": steps,
        "CHROMIUM": CHROMIUM,
    }
    done = subprocess.run(
        ["node", str(EXTENSION / "e2e" / "e2e.js")],
        env=env, cwd=EXTENSION, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_post_then_preview_the_example_in_jupyterlab(lab: Lab, forge_emulator: Any) -> None:
    seen = drive(lab, "post,preview")
    pull = lab.checkout.pull
    # Post: the dialog named the PR of the branch; one comment, linked in the toast.
    assert f"pull request #{pull.number} of octo/demo on GitHub" in str(seen["confirm"])
    # ...and the host that receives the token, before anything is posted (issue 14, item 2).
    host = urllib.parse.urlsplit(forge_emulator.github_api).netloc
    assert f"GITHUB_TOKEN is sent to {host} (from GITHUB_API_URL)" in str(seen["confirm"])
    assert len(pull.comments) == 1
    body = pull.comments[0].body
    assert HEADING in body and "accuracy" in body
    assert "/blob/cml-nb-assets/" in body  # the plots went to the assets branch
    comment = pull.comments[0]
    assert (
        seen["posted"]
        == f"{forge_emulator.root}/octo/demo/pull/{pull.number}#issuecomment-{comment.id}"
    )
    # Preview: the report in a sandboxed frame beside the notebook, refreshed in place.
    assert seen["sandbox"] == ""  # the frame runs no scripts
    assert HEADING in str(seen["reportText"]) and "Confusion matrix" in str(seen["reportText"])
    assert int(str(seen["images"])) >= 2  # confusion matrix and learning curve, inlined
    assert seen["panels"] == 1
    assert (ARTIFACTS / "preview-panel.png").stat().st_size > 10_000
