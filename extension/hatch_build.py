"""Hatch build hook: build the JupyterLab extension when Node.js can, else skip it.

``pip install .`` from a clone must install the CLI on a machine without Node.js
(CI runners, servers), so a missing or old Node skips the frontend build with a
message instead of failing. Wheels built from the sdist need no Node: the sdist
carries the prebuilt extension. Set ``CML_NB_SKIP_LABEXTENSION=1`` to skip on
purpose. The build itself is hatch-jupyter-builder's ``npm_builder`` run with
``jlpm`` (the yarn that the ``jupyter-builder`` build requirement provides).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUILD_DIR = "cml_nb/labextension"
SOURCE_DIR = "extension/src"
INSTALL_JSON = "extension/install.json"
SHARE_DIR = "share/jupyter/labextensions/cml-nb"


def node_problem() -> str | None:
    """Why Node.js cannot build the extension here, or ``None`` when it can."""
    node = shutil.which("node")
    if node is None:
        return "Node.js is not on PATH"
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"'node --version' failed ({exc})"
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    if match is None:
        return f"cannot read the Node.js version from {out.strip()!r}"
    major, minor = int(match[1]), int(match[2])
    # rspack 2 (under @jupyter/builder) needs Node ^20.19 or >=22.12.
    if not ((major == 20 and minor >= 19) or (major, minor) >= (22, 12)):
        return f"Node.js {out.strip()} is too old (need ^20.19 or >=22.12)"
    if shutil.which("jlpm") is None:
        return "jlpm is not on PATH (pip install jupyter-builder)"
    return None


def is_development_build(build_dir: Path) -> bool:
    """Whether ``build_dir`` holds a development build (it ships source maps)."""
    return any((build_dir / "static").glob("*.js.map"))


class LabExtensionBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Builds ``extension/`` into ``cml_nb/labextension`` and ships it in the wheel."""

    PLUGIN_NAME = "cml-nb-labextension"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Build the frontend if possible; add it to the wheel's shared data if present."""
        root = Path(self.root)
        built = root / BUILD_DIR / "static" / "style.js"
        if os.environ.get("CML_NB_SKIP_LABEXTENSION", "") not in ("", "0"):
            self._skip("CML_NB_SKIP_LABEXTENSION is set", built)
        elif (root / SOURCE_DIR).is_dir():
            problem = node_problem()
            if problem is None:
                from hatch_jupyter_builder import npm_builder

                npm_builder(
                    self.target_name,
                    version,
                    # A release must not ship an editable install's development build.
                    force=version == "standard" and is_development_build(root / BUILD_DIR),
                    path=str(root / "extension"),
                    build_dir=str(root / BUILD_DIR),
                    source_dir=str(root / SOURCE_DIR),
                    build_cmd="build:prod",
                    editable_build_cmd="build",
                    npm=["jlpm"],
                )
            else:
                self._skip(problem, built)
        if self.target_name == "wheel" and built.is_file():
            shared = build_data.setdefault("shared_data", {})
            shared[str(root / BUILD_DIR)] = SHARE_DIR
            shared[str(root / INSTALL_JSON)] = f"{SHARE_DIR}/install.json"

    def _skip(self, why: str, built: Path) -> None:
        if built.is_file():
            self.app.display_info(f"cml-nb: {why}; using the prebuilt JupyterLab extension.")
            return
        self.app.display_warning(
            f"cml-nb: {why}: skipping the JupyterLab extension build. The CLI and the "
            "server extension install; the notebook toolbar buttons will not. To get them, "
            "install Node.js >= 20.19 and reinstall, or install the released wheel from PyPI."
        )
