"""Test scenarios built on the emulator: repositories with tokens, CI environments, bundles."""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .server import ForgeEmulator
from .state import ALL_PERMISSIONS, Pull, Repo


def fake_token(prefix: str) -> str:
    """A random token in a real format (``ghp_``, ``ghs_``, ``glpat-``): never a real one."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(36))


@dataclass
class Scenario:
    """A repository on the emulator, a token for it, and the CI variables of a job."""

    emulator: ForgeEmulator
    repo: Repo
    token: str
    env: dict[str, str] = field(default_factory=dict)
    pull: Pull | None = None

    @property
    def comments(self) -> list[Any]:
        return self.repo.all_comments()


def github(
    emulator: ForgeEmulator,
    tmp_path: Path,
    *,
    app: bool = True,
    pull: bool = True,
    permissions: frozenset[str] | set[str] = ALL_PERMISSIONS,
) -> Scenario:
    """``octo/demo`` with an open PR and a GitHub Actions ``pull_request`` environment.

    ``app=True`` gives a GITHUB_TOKEN-like installation token (comments by
    ``github-actions[bot]``, no ``/user``); ``app=False`` a personal token.
    """
    state = emulator.state
    token = fake_token("ghs_" if app else "ghp_")
    state.add_token(token, "github-actions[bot]" if app else "alice", permissions=permissions,
                    app=app, bot=app)  # fmt: skip
    repo = state.add_repo("github", "octo/demo")
    scenario = Scenario(emulator, repo, token)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "octo/demo",
           "GITHUB_API_URL": emulator.github_api, "GITHUB_TOKEN": token,
           "GITHUB_SHA": repo.head_sha()}  # fmt: skip
    if pull:
        scenario.pull = state.add_pull(repo, "feature")
        event = {"pull_request": {"number": scenario.pull.number,
                                  "head": {"sha": scenario.pull.head_sha, "ref": "feature"}}}  # fmt: skip
        path = tmp_path / "event.json"
        path.write_text(json.dumps(event))
        # GITHUB_SHA is the merge commit in pull_request runs; the event names the head.
        env.update(GITHUB_EVENT_PATH=str(path), GITHUB_SHA="f" * 40, GITHUB_HEAD_REF="feature")
    scenario.env = env
    return scenario


def gitlab(
    emulator: ForgeEmulator,
    *,
    mr: bool = True,
    permissions: frozenset[str] | set[str] = ALL_PERMISSIONS,
) -> Scenario:
    """``grp/proj`` with an open MR and a GitLab CI merge-request pipeline environment."""
    state = emulator.state
    token = fake_token("glpat-")
    state.add_token(token, "project_bot", permissions=permissions, bot=True)
    repo = state.add_repo("gitlab", "grp/proj")
    scenario = Scenario(emulator, repo, token)
    env = {"GITLAB_CI": "true", "CI_API_V4_URL": emulator.gitlab_api, "CI_PROJECT_PATH": "grp/proj",
           "CI_PROJECT_ID": str(repo.id), "CI_COMMIT_SHA": repo.head_sha(), "GITLAB_TOKEN": token,
           "CI_COMMIT_REF_NAME": "main"}  # fmt: skip
    if mr:
        scenario.pull = state.add_pull(repo, "feature")
        env.update(CI_MERGE_REQUEST_IID=str(scenario.pull.number), CI_COMMIT_SHA=scenario.pull.head_sha,
                   CI_MERGE_REQUEST_SOURCE_BRANCH_NAME="feature")  # fmt: skip
    scenario.env = env
    return scenario


def png(seed: int) -> bytes:
    """Distinct small PNG-like payloads (storage treats images as opaque bytes)."""
    return b"\x89PNG\r\n\x1a\n" + seed.to_bytes(4, "big") * 16


def bundle(
    folder: Path,
    *,
    images: int = 1,
    status: str = "succeeded",
    metrics: dict[str, Any] | None = None,
    notebook: str = "train.ipynb",
    text: str = "Accuracy went up.",
    seed: int = 0,
) -> Path:
    """A report bundle written with the report stage's own API."""
    from cml_nb.report import ImageBlock, MarkdownBlock, Report, write_bundle

    report = Report(title="Training report", notebook=notebook, status=status,
                    metrics=metrics if metrics is not None else {"accuracy": 0.91, "loss": 0.2})  # fmt: skip
    report.blocks.append(MarkdownBlock(f"## Results\n\n{text}"))
    for i in range(images):
        asset = report.add_asset(png(seed * 100 + i), "image/png")
        report.blocks.append(ImageBlock(asset=asset.name, alt=f"figure {i}"))
    return write_bundle(report, folder)
