"""Packaging: a clone builds a wheel without Node.js, and a prebuilt extension ships in it.

Wheels are built offline from a copy of the tracked files with the build backend
of this environment (``pip wheel --no-build-isolation``) and a PATH that holds
no ``node``: what a CI runner or server without Node.js does on ``pip install .``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARE = "cml_nb-0.1.0.data/data/share/jupyter/labextensions/cml-nb"
SERVER_CONFIG = "cml_nb-0.1.0.data/data/etc/jupyter/jupyter_server_config.d/cml_nb.json"

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout"
)


def tracked_copy(dest: Path) -> Path:
    """The repository's tracked files (as a fresh clone has them) under ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def build_wheel_without_node(src: Path, out: Path, tmp: Path) -> tuple[zipfile.ZipFile, str]:
    bin_dir = tmp / "bin"  # python and git only: no node, npm or jlpm
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "CML_NB_"))}
    env.update(PATH=str(bin_dir), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(src)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    (wheel,) = out.glob("cml_nb-*.whl")
    return zipfile.ZipFile(wheel), log


def test_without_node_the_wheel_has_the_cli_and_server_extension(tmp_path: Path) -> None:
    src = tracked_copy(tmp_path / "clone")
    wheel, log = build_wheel_without_node(src, tmp_path / "dist", tmp_path)
    names = set(wheel.namelist())
    assert "cml_nb/cli/__init__.py" in names and "cml_nb/jupyter/handlers.py" in names
    assert SERVER_CONFIG in names
    assert not any(n.startswith(SHARE) for n in names)
    assert "Node.js is not on PATH: skipping the JupyterLab extension build" in log


def test_a_prebuilt_extension_ships_without_node(tmp_path: Path) -> None:
    # What an sdist carries: the built extension under cml_nb/labextension.
    src = tracked_copy(tmp_path / "clone")
    built = src / "cml_nb" / "labextension"
    (built / "static").mkdir(parents=True)
    (built / "static" / "style.js").write_text("/* built */\n")
    (built / "package.json").write_text('{"name": "cml-nb"}\n')
    wheel, log = build_wheel_without_node(src, tmp_path / "dist", tmp_path)
    names = set(wheel.namelist())
    assert {f"{SHARE}/static/style.js", f"{SHARE}/package.json", f"{SHARE}/install.json"} <= names
    assert not any(n.startswith("cml_nb/labextension/") for n in names)  # only via share/
    assert "using the prebuilt JupyterLab extension" in log
