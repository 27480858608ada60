"""The publish stage: a report bundle to a sticky comment on the forge, with hosted images.

``publish()`` reads like the pipeline it runs: load the bundle, work out the forge,
repository and target from the CI context and flags, find the earlier report
comment, store the images it does not already link, render the Markdown within the
forge's size budget with the hidden marker and metrics, update or create the
comment, and optionally record a check run / commit status.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError, ForgeAuthError, TargetNotFoundError
from cml_nb.forge import COMMIT, ISSUE, PR, Comment, Forge, Target, forge_class
from cml_nb.forge import comments as sticky
from cml_nb.forge.connect import connect, context_for
from cml_nb.forge.context import ForgeContext
from cml_nb.secrets import Scrubber

log = logging.getLogger(__name__)

_TARGET = re.compile(r"^(?P<kind>auto|pr|mr|commit|issue)(?:/(?P<arg>[^/\s]+))?$")
_ASSET_LINK = re.compile(
    r"[^\s()\"'<>\[\]]+/(?P<name>[0-9a-f]{64}\.[A-Za-z0-9]+)(?:\?[^\s()\"'<>]*)?"
)


@dataclass
class PublishResult:
    """What ``publish`` did.

    Attributes:
        url: link to the report comment (empty on a dry run that would create one).
        action: ``created``, ``updated``, or ``dry-run``.
        target: where the comment is.
        body: the comment body as posted (or as it would be).
        uploaded: image names uploaded by this publish.
        reused: image names already stored.
        status_url: the check run or commit status, when ``check`` was asked.
        notes: things worth telling the user (e.g. image links that expire).
    """

    url: str
    action: str
    target: Target
    body: str = ""
    uploaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    status_url: str | None = None
    notes: list[str] = field(default_factory=list)


def parse_target(spec: str | None) -> tuple[str, str | None]:
    """``(kind, argument)`` of ``auto``, ``pr``, ``pr/N``, ``mr/N``, ``commit[/SHA]``, ``issue/N``.

    Raises:
        ConfigError: the spec is none of those.
    """
    found = _TARGET.match((spec or "auto").strip().lower())
    if found is None:
        raise ConfigError(
            f"bad --target {spec!r}: use auto, pr, pr/N (mr/N on GitLab), commit, commit/SHA or issue/N"
        )
    kind = "pr" if found.group("kind") == "mr" else found.group("kind")
    arg = found.group("arg")
    if kind in ("pr", "issue") and arg is not None and not arg.isdigit():
        raise ConfigError(f"bad --target {spec!r}: the number after {kind}/ must be digits")
    if kind == "issue" and arg is None:
        raise ConfigError("--target issue needs a number: issue/N")
    return kind, arg


def _pick(forge: Forge, ctx: ForgeContext, kind: str, arg: str | None) -> Target:
    name, repo = forge.name, forge.repository
    if kind == "issue":
        return Target(name, repo, ISSUE, int(arg or 0), ctx.sha)
    if kind == "commit":
        sha = arg or ctx.sha
        if not sha:
            raise TargetNotFoundError(
                "no commit to comment on: run inside a git checkout or pass --target commit/SHA"
            )
        return Target(name, repo, COMMIT, None, sha)
    if kind == "pr" and arg is not None:
        return forge.pull_request(int(arg))
    if ctx.pr_number is not None:
        found = forge.pull_request(ctx.pr_number)
        # A workflow_run reports on the run's commit, even if the PR has moved on since.
        return replace(found, sha=ctx.sha) if ctx.for_pull_request and ctx.sha else found
    if not ctx.sha:
        raise TargetNotFoundError(
            "no commit known to find its pull request: run inside a git checkout, or pass --target pr/N"
        )
    pulls = forge.pulls_for_commit(ctx.sha)
    if not pulls and ctx.head_owner and ctx.branch:
        # A fork's PR (workflow_run lists none): find it by its head, which GitHub set.
        by_head = getattr(forge, "pull_for_head", None)  # GitHub only; GitLab has no such event
        found_head = by_head(ctx.head_owner, ctx.branch, ctx.sha) if by_head else None
        pulls = [found_head] if found_head is not None else []
    if pulls:
        return pulls[0]
    if ctx.for_pull_request:
        # Never the commit: in workflow_run the fallback would land on the default branch
        # and make this PR's metrics everyone's baseline.
        raise TargetNotFoundError(
            f"this workflow_run is for a pull request, but no open pull request of {repo} has "
            f"head {ctx.head_owner}:{ctx.branch} at {ctx.sha[:12]} (closed, or pushed again "
            "since): pass --target pr/N; no commit comment was made"
        )
    if kind == "pr":
        raise TargetNotFoundError(
            f"no open pull request contains commit {ctx.sha[:12]} in {repo}: push the branch and "
            "open one, pass --target pr/N, or use --target commit"
        )
    return Target(name, repo, COMMIT, None, ctx.sha)


def resolve_target(
    *,
    forge: str | None = None,
    repo: str | None = None,
    target: str | None = "auto",
    token: str | None = None,
    api_url: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """Where ``publish`` would post, asking the forge when the target needs a lookup.

    Raises:
        ConfigError: bad target, or forge/repository unknown.
        ForgeAuthError: no usable token.
        TargetNotFoundError: no such PR, or no PR and no commit to fall back on.
    """
    kind, arg = parse_target(target)
    ctx = context_for(forge=forge, repo=repo, token=token, api_url=api_url, cwd=cwd, env=env)
    return _pick(connect(ctx), ctx, kind, arg)


def known_urls(comments: list[Comment]) -> dict[str, str]:
    """Asset name -> URL for every content-addressed image the given comments link."""
    found: dict[str, str] = {}
    for comment in comments:
        for match in _ASSET_LINK.finditer(comment.body):
            found[match.group("name")] = match.group(0)
    return found


def _payload(report: Any, marker: str, sha: str | None) -> dict[str, Any]:
    return {"marker": marker, "sha": sha, "status": report.status, "notebook": report.notebook,
            "metrics": report.metrics, "parameters": report.parameters}  # fmt: skip


def _scrub_around(text: str, keep: list[str], scrubber: Scrubber) -> str:
    """``text`` scrubbed everywhere except inside ``keep`` (the image URLs).

    A presigned URL names its access key id by design; masking it would break the link.
    """
    if not keep:
        return scrubber.scrub(text)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(set(keep), key=len, reverse=True)))
    parts, position = [], 0
    for found in pattern.finditer(text):
        parts += [scrubber.scrub(text[position : found.start()]), found.group(0)]
        position = found.end()
    return "".join(parts) + scrubber.scrub(text[position:])


def render(
    report: Any, *, urls: Mapping[str, str], marker: str, sha: str | None, max_chars: int,
    notes: list[str] | None = None, secrets: Iterable[str | None] = (),
) -> str:  # fmt: skip
    """The comment body: marker, Markdown within ``max_chars``, hidden metrics.

    Credentials are masked once more here (the token in use, secret-looking
    environment variables, known token formats), whatever the report holds.
    """
    from cml_nb.report import to_markdown

    payload = _payload(report, marker, sha)
    tail = "".join(f"\n\n<sub>{note}</sub>" for note in notes or [])
    budget = max_chars - sticky.envelope_size(marker, payload) - len(tail) - 16
    markdown = to_markdown(report, asset_url=lambda a: urls.get(a.name, f"assets/{a.name}"),
                           max_chars=budget)  # fmt: skip
    body = sticky.envelope(markdown + tail, marker, payload)
    scrubber = Scrubber([s for s in secrets if s])
    return _scrub_around(body, list(urls.values()), scrubber)


def default_marker(report: Any, bundle_dir: Path) -> str:
    """One marker per notebook: the notebook's stem, else the bundle folder's name."""
    notebook = str(report.notebook or "").split(",")[0].strip()
    return sticky.marker_name(Path(notebook).stem if notebook else Path(bundle_dir).resolve().name)


def publish(
    bundle_dir: Path,
    *,
    forge: str | None = None,
    repo: str | None = None,
    target: str | None = "auto",
    token: str | None = None,
    api_url: str | None = None,
    storage: str | None = None,
    marker: str | None = None,
    new: bool = False,
    check: bool | str = False,
    dry_run: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> PublishResult:
    """Post (or update) the report comment for the bundle in ``bundle_dir``.

    Args:
        bundle_dir: a report bundle (report.json, report.md, assets/).
        forge: ``github`` or ``gitlab`` (default: detected).
        repo: ``owner/name`` (default: detected).
        target: ``auto``, ``pr``, ``pr/N``, ``mr/N``, ``commit``, ``commit/SHA``, ``issue/N``.
        token: the token (default: GITHUB_TOKEN, GH_TOKEN, GITLAB_TOKEN, CI_JOB_TOKEN, REPO_TOKEN).
        api_url: the REST API root (default: GITHUB_API_URL / CI_API_V4_URL / the forge's).
        storage: image backend (default: the forge's own).
        marker: names the sticky comment (default: one per notebook).
        new: post a new comment instead of updating the earlier one.
        check: also record a check run (GitHub) or commit status (GitLab); a refused
            one is a logged warning (the comment is posted), or fatal when ``"required"``.
        dry_run: work out everything, write nothing; ``body`` holds what would be posted.
        cwd: where to look for the git checkout (default: the working directory).
        env: environment variables (default: ``os.environ``).

    Raises:
        NotebookReadError: the bundle is missing or unreadable.
        ConfigError: bad target or storage, or forge/repository unknown.
        ForgeError: the forge refused (auth, permission, not found, rate limits).
        StorageError: images could not be stored.
    """
    from cml_nb.report import load_bundle
    from cml_nb.storage import AssetData, get_storage

    report = load_bundle(Path(bundle_dir))
    name = sticky.marker_name(marker) if marker else default_marker(report, Path(bundle_dir))
    kind, arg = parse_target(target)
    ctx = context_for(forge=forge, repo=repo, token=token, api_url=api_url, cwd=cwd, env=env)
    if dry_run and not ctx.token:
        return _offline_dry_run(report, ctx, kind, arg, name)
    driver = connect(ctx)
    where = _pick(driver, ctx, kind, arg)
    sha = where.sha or ctx.sha
    existing = [] if new else sticky.find_existing(driver, where, name)
    assets = {n: AssetData(n, a.data, a.mime) for n, a in report.assets.items()}
    result = PublishResult("", "dry-run", where)
    if dry_run:
        result.url = existing[-1].url if existing else ""
        result.notes.append(
            f"would {'update' if existing else 'create'} the report comment {name!r} on "
            f"{where.describe()}; {len(assets)} image(s) left unstored"
        )
        result.body = render(report, urls={}, marker=name, sha=sha,
                             max_chars=driver.max_comment_chars, secrets=[ctx.token])  # fmt: skip
        return result
    backend = get_storage(storage or driver.default_storage, driver)
    stored = backend.store(assets, known=known_urls(existing))
    result.uploaded, result.reused, result.notes = stored.uploaded, stored.reused, stored.notes
    result.body = render(report, urls=stored.urls, marker=name, sha=sha,
                         max_chars=driver.max_comment_chars, notes=stored.notes,
                         secrets=[ctx.token])  # fmt: skip
    done = sticky.upsert(driver, where, result.body, name, new=new, existing=existing)
    result.url, result.action = done.comment.url, done.action
    if check and sha:
        secrets = [ctx.token] if ctx.token else []
        try:
            result.status_url = _record_status(driver, report, sha, name, result, stored.urls,
                                               secrets)  # fmt: skip
        except ForgeAuthError as refused:
            if check == "required":
                raise
            # The comment went through; a status the token may not set must not fail the job.
            log.warning("status not recorded (--check=required makes this fatal): %s", refused)
    log.info("%s report comment %s on %s", done.action, name, where.describe())
    return result


def _offline_dry_run(
    report: Any, ctx: ForgeContext, kind: str, arg: str | None, name: str
) -> PublishResult:
    """A dry run without a token: the target as far as the context tells, nothing asked."""
    assert ctx.forge is not None and ctx.repository is not None
    number = int(arg) if arg and kind in ("pr", "issue") else ctx.pr_number
    sha = ctx.sha or report.commit or None  # outside git, the commit the run recorded
    if kind in ("pr", "issue", "auto") and number is not None:
        where = Target(ctx.forge, ctx.repository, ISSUE if kind == "issue" else PR, number, sha)
    else:
        where = Target(
            ctx.forge, ctx.repository, COMMIT, None, arg if kind == "commit" and arg else sha
        )
    limit = forge_class(ctx.forge).max_comment_chars
    result = PublishResult("", "dry-run", where)
    result.body = render(report, urls={}, marker=name, sha=where.sha, max_chars=limit)
    result.notes.append(
        f"would post the report comment {name!r} on {where.describe()} (no token: the forge "
        "was not asked whether the comment exists or which pull request holds the commit)"
    )
    return result


def _record_status(
    driver: Forge, report: Any, sha: str, name: str, result: PublishResult,
    urls: Mapping[str, str], secrets: list[str],
) -> str:  # fmt: skip
    from cml_nb.report import to_markdown

    succeeded = report.status in ("succeeded", "unknown")
    title = f"{report.title}: {report.status}"
    summary = to_markdown(report, asset_url=lambda a: urls.get(a.name, f"assets/{a.name}"),
                          max_chars=min(driver.max_comment_chars, 65_535) - 100)  # fmt: skip
    summary = _scrub_around(summary, list(urls.values()), Scrubber(secrets))
    return driver.set_status(sha, succeeded=succeeded, name=f"cml-nb/{name}", title=title,
                             summary=summary, url=result.url)  # fmt: skip


__all__ = ["PR", "PublishResult", "context_for", "known_urls", "parse_target", "publish",
           "render", "resolve_target"]  # fmt: skip
