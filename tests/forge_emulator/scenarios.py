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


def granted(block: dict[str, str]) -> frozenset[str]:
    """The write permissions a workflow ``permissions:`` block gives GITHUB_TOKEN, as the
    emulator names them (``pull-requests`` -> ``pull_requests``); reads are always allowed.

    https://docs.github.com/en/actions/security-for-github-actions/security-guides/
    automatic-token-authentication#permissions-for-the-github_token: any permission the
    block leaves out is ``none``.
    """
    return frozenset(n.replace("-", "_") for n, level in block.items() if level == "write")


def init_permissions() -> frozenset[str]:
    """Exactly what ``cml-nb init --forge github`` grants its publishing jobs."""
    from cml_nb.pipelines.github import PUBLISH

    return granted(PUBLISH)


def github(
    emulator: ForgeEmulator,
    tmp_path: Path,
    *,
    app: bool = True,
    pull: bool = True,
    permissions: frozenset[str] | set[str] = ALL_PERMISSIONS,
    fork: bool = False,
) -> Scenario:
    """``octo/demo`` with an open PR and a GitHub Actions ``pull_request`` environment.

    ``app=True`` gives a GITHUB_TOKEN-like installation token (comments by
    ``github-actions[bot]``, no ``/user``); ``app=False`` a personal token. ``fork=True``
    opens the PR from ``mallory/demo``: its ``pull_request`` run gets a read-only token
    whatever ``permissions:`` says (automatic-token-authentication, same page as above).
    """
    state = emulator.state
    token = fake_token("ghs_" if app else "ghp_")
    state.add_token(token, "github-actions[bot]" if app else "alice",
                    permissions=frozenset() if fork else permissions, app=app, bot=app)  # fmt: skip
    repo = state.add_repo("github", "octo/demo")
    scenario = Scenario(emulator, repo, token)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "octo/demo",
           "GITHUB_API_URL": emulator.github_api, "GITHUB_TOKEN": token,
           "GITHUB_SHA": repo.head_sha(), "GITHUB_EVENT_NAME": "push"}  # fmt: skip
    if pull:
        scenario.pull = state.add_pull(repo, "feature", fork="mallory/demo" if fork else None)
        head_repo = {"full_name": scenario.pull.head_repo or "octo/demo", "fork": fork}
        event = {"pull_request": {"number": scenario.pull.number,
                                  "head": {"sha": scenario.pull.head_sha, "ref": "feature",
                                           "repo": head_repo}}}  # fmt: skip
        path = tmp_path / "event.json"
        path.write_text(json.dumps(event))
        # GITHUB_SHA is the merge commit in pull_request runs; the event names the head.
        env.update(GITHUB_EVENT_PATH=str(path), GITHUB_SHA="f" * 40, GITHUB_HEAD_REF="feature",
                   GITHUB_EVENT_NAME="pull_request")  # fmt: skip
    scenario.env = env
    return scenario


def github_workflow_run(
    emulator: ForgeEmulator,
    tmp_path: Path,
    *,
    fork: bool,
    permissions: frozenset[str] | set[str] | None = None,
) -> Scenario:
    """The second workflow of GitHub's fork pattern: ``on: workflow_run`` after a PR's run.

    https://docs.github.com/en/actions/writing-workflows/choosing-when-your-workflow-runs/
    events-that-trigger-workflows#workflow_run: GITHUB_SHA is the last commit on the
    default branch and GITHUB_REF the default branch; the token may write. The payload's
    ``workflow_run.pull_requests`` lists same-repository PRs and is empty for PRs from
    forks (github/docs#22501); ``head_sha``, ``head_branch`` and ``head_repository`` name
    the PR's head either way (octokit/webhooks common/workflow-run.schema.json).
    """
    s = github(emulator, tmp_path, permissions=permissions or init_permissions())
    assert s.pull is not None
    if fork:  # reopen the PR from a fork instead
        del s.repo.pulls[s.pull.number]
        s.pull = emulator.state.add_pull(s.repo, "patch-1", fork="mallory/demo")
    pull = s.pull
    head_repo = pull.head_repo or s.repo.full_name
    listed = [] if fork else [{"id": pull.number + 90000, "number": pull.number,
                               "url": f"{emulator.github_api}/repos/octo/demo/pulls/{pull.number}",
                               "head": {"ref": pull.head, "sha": pull.head_sha,
                                        "repo": {"id": s.repo.id, "name": "demo",
                                                 "url": f"{emulator.github_api}/repos/octo/demo"}},
                               "base": {"ref": pull.base, "sha": s.repo.head_sha(),
                                        "repo": {"id": s.repo.id, "name": "demo",
                                                 "url": f"{emulator.github_api}/repos/octo/demo"}}}]  # fmt: skip
    event = {"action": "completed",
             "workflow_run": {"id": 30433642, "name": "cml-nb", "event": "pull_request",
                              "status": "completed", "conclusion": "success",
                              "head_branch": pull.head, "head_sha": pull.head_sha,
                              "head_repository": {"full_name": head_repo, "fork": fork,
                                                  "owner": {"login": head_repo.split("/")[0]}},
                              "repository": {"full_name": "octo/demo"},
                              "pull_requests": listed},
             "repository": {"full_name": "octo/demo"}}  # fmt: skip
    path = tmp_path / "workflow_run.json"
    path.write_text(json.dumps(event))
    s.env.update(GITHUB_EVENT_NAME="workflow_run", GITHUB_EVENT_PATH=str(path),
                 GITHUB_SHA=s.repo.head_sha(), GITHUB_REF="refs/heads/main",
                 GITHUB_REF_NAME="main")  # fmt: skip
    s.env.pop("GITHUB_HEAD_REF", None)
    return s


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
