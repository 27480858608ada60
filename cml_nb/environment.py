"""Where a run happened: Python, platform, packages, git, GPUs and CI provider."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_PACKAGES = (
    "cml-nb", "papermill", "nbclient", "ipykernel", "numpy", "pandas", "scikit-learn",
    "torch", "tensorflow", "jax", "xgboost", "lightgbm",
)  # fmt: skip


def _run(args: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def packages() -> dict[str, str]:
    """Versions of the packages that most often explain a difference in results."""
    found = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    """Commit, branch and whether the tree had local changes (empty outside git)."""
    if shutil.which("git") is None:
        return {}
    commit = _run(["git", "rev-parse", "HEAD"], cwd)
    if commit is None:
        return {}
    branch = (
        os.environ.get("GITHUB_HEAD_REF")
        or os.environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
        or os.environ.get("CI_COMMIT_REF_NAME")
        or _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd)
    )
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": commit, "branch": branch, "dirty": bool(status)}


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as ``nvidia-smi`` reports them (empty when there is none)."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(
        [
            "nvidia-smi",
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ]
    )
    found = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append({"name": parts[0], "memory_mib": parts[1], "driver": parts[2]})
    return found


def ci_provider(env: dict[str, str] | None = None) -> str | None:
    """``github``, ``gitlab``, ``ci`` (another CI) or None (a person's machine)."""
    env = dict(os.environ) if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return "ci" if env.get("CI") else None


def describe(cwd: Path | None = None) -> dict[str, Any]:
    """The whole environment block of a run record."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": packages(),
        "git": git_info(cwd),
        "gpus": gpus(),
        "ci": ci_provider(),
    }
