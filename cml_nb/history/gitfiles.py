"""Small helpers every history source shares: run git, name a file at a ref, flatten metrics.

A leaf module, so :mod:`cml_nb.history.base` and :mod:`cml_nb.history.dvc_metrics` can both
use them without importing each other.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _git(args: Sequence[str], cwd: Path | None, timeout: float = 30) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_path(path: str) -> str:
    # "REF:./x" is relative to the working directory; "REF:x" would be relative to the root.
    return path if path.startswith(("./", "../")) else f"./{path}"


def _flatten(data: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    # DVC-style nested metrics files ({"train": {"loss": 0.1}}) become "train.loss".
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}{sep}", sep))
        elif value is None or isinstance(value, int | float | str | bool):
            flat[f"{prefix}{key}"] = value
    return flat
