"""``cml-nb pr create``: commit changed files to a branch and open a PR/MR for them.

Files go through the forge's API (Git Data API on GitHub, the commits API on
GitLab), so no git credentials or push access of the checkout are needed. The
branch name is derived from the commit, so running twice reuses the branch and
the open pull request instead of opening another.
"""

from __future__ import annotations

import glob
import logging
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cml_nb.errors import ConfigError
from cml_nb.forge.connect import connect, context_for

log = logging.getLogger(__name__)

SKIP_CI = "[skip ci]"


@dataclass
class PullRequestResult:
    """What ``create_pull_request`` did.

    Attributes:
        action: ``created``, ``updated`` (the open PR reused) or ``unchanged`` (nothing
            differs from the base: no branch, no PR).
        url: the PR/MR link (empty when unchanged).
        number: the PR/MR number, when there is one.
        branch: the head branch.
        committed: paths committed by this call (empty when the branch already had them).
        commit: the new commit's sha, when one was made.
    """

    action: str
    url: str = ""
    number: int | None = None
    branch: str = ""
    committed: list[str] = field(default_factory=list)
    commit: str | None = None


def _repo_root(cwd: Path) -> Path:
    try:
        done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True,
                              text=True, timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return cwd
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else cwd


def collect_files(patterns: Sequence[str], cwd: Path) -> dict[str, bytes]:
    """Files matching the glob ``patterns`` (``**`` allowed), keyed by path in the repository.

    Raises:
        ConfigError: a pattern matches no file, or a file lies outside the repository.
    """
    root = _repo_root(cwd).resolve()
    found: dict[str, bytes] = {}
    for pattern in patterns:
        matches = [Path(m) for m in glob.glob(pattern, root_dir=cwd, recursive=True)]
        files = [(cwd / m).resolve() for m in matches if (cwd / m).is_file()]
        if not files:
            raise ConfigError(f"{pattern!r} matches no file in {cwd}: check the glob (quote it)")
        for path in files:
            try:
                key = path.relative_to(root).as_posix()
            except ValueError:
                raise ConfigError(f"{path} is outside the repository at {root}") from None
            found[key] = path.read_bytes()
    return found


def create_pull_request(
    patterns: Sequence[str],
    *,
    forge: str | None = None,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    branch: str | None = None,
    base: str | None = None,
    title: str | None = None,
    message: str | None = None,
    body: str | None = None,
    skip_ci: bool = True,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> PullRequestResult:
    """Commit changed files to a branch and open (or reuse) a pull/merge request from it.

    Only files matching ``patterns`` whose content differs from the current commit
    are committed.

    Args:
        patterns: globs relative to ``cwd``, e.g. ``metrics.json models/*.onnx``.
        forge: ``github`` or ``gitlab`` (default: detected).
        repo: ``owner/name`` (default: detected).
        token: the token (default: from the environment, as for ``publish``).
        api_url: the REST API root (default: detected).
        branch: head branch (default ``cml-nb/pr-<short sha>``).
        base: branch to merge into (default: the current branch, else the default branch).
        title: PR title (default: the commit message's first line).
        message: commit message (default ``cml-nb: update N file(s)``).
        body: PR description, e.g. a rendered report.
        skip_ci: add ``[skip ci]`` to the commit message so the commit does not
            start another pipeline.
        cwd: the working copy (default: the working directory).
        env: environment variables (default ``os.environ``).

    Raises:
        ConfigError: no file matches, or no commit is known.
        ForgeError: the forge refused (permissions: contents and pull requests write).
    """
    cwd = Path(cwd or Path.cwd())
    files = collect_files(patterns, cwd)
    ctx = context_for(forge=forge, repo=repo, token=token, api_url=api_url, cwd=cwd, env=env)
    if not ctx.sha:
        raise ConfigError("no commit known to branch from: run inside a git checkout (or in CI)")
    driver = connect(ctx)
    changed = {p: d for p, d in files.items() if driver.read_file(p, ctx.sha) != d}
    if not changed:
        return PullRequestResult("unchanged")
    head = branch or f"cml-nb/pr-{ctx.sha[:8]}"
    into = base or ctx.branch or driver.default_branch()
    if into == head:
        raise ConfigError(f"the PR branch and its base are both {head}: pass --branch or --base")
    on_branch = {p: d for p, d in changed.items() if driver.read_file(p, head) != d}
    text = message or f"cml-nb: update {len(changed)} file(s)"
    if skip_ci and SKIP_CI not in text:
        text = f"{text} {SKIP_CI}"
    result = PullRequestResult("", branch=head, committed=sorted(on_branch))
    if on_branch:
        result.commit = driver.commit_files(head, on_branch, text, start=ctx.sha)
    summary = body or "Files updated by cml-nb:\n\n" + "\n".join(
        f"- `{p}`" for p in sorted(changed)
    )
    pr_title = title or text.replace(SKIP_CI, "").strip().splitlines()[0]
    info = driver.open_pull_request(head=head, base=into, title=pr_title, body=summary)
    result.action, result.url, result.number = info.action, info.url, info.number
    return result
