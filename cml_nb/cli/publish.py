"""``cml-nb publish``: post a report bundle as a sticky comment on the PR, MR or commit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


if TYPE_CHECKING:  # click.ParamType is generic only in click >= 8.2
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType


class CheckMode(_ParamType):
    """``--check`` alone (or ``true`` in config) is ``optional``; ``--check=required`` is fatal."""

    name = "optional|required"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """``optional``, ``required`` or False, from a flag value, a config bool or text."""
        if isinstance(value, bool) or value is None:
            return "optional" if value else False
        text = str(value).strip().lower()
        if text in ("optional", "true", "1", "yes"):
            return "optional"
        if text == "required":
            return "required"
        if text in ("false", "0", "no", ""):
            return False
        self.fail(
            f"{value!r} is not optional or required (write --check or --check=required, "
            "after the report folder)",
            param,
            ctx,
        )


def forge_options(func: F) -> F:
    """``--forge``, ``--repo``, ``--token``, ``--api-url`` (shared with ``pr create``)."""
    decorators = [
        click.option("--forge", type=click.Choice(["github", "gitlab"]),
                     help="Forge (default: from CI variables or the git remote)."),
        click.option("--repo", metavar="OWNER/NAME",
                     help="Repository or GitLab project path (default: detected)."),
        click.option("--token", metavar="TOKEN",
                     help="API token (default: GITHUB_TOKEN, GH_TOKEN, GITLAB_TOKEN, "
                          "CI_JOB_TOKEN or REPO_TOKEN). Prefer the variables: flags show in `ps`."),
        click.option("--api-url", metavar="URL",
                     help="REST API root for self-hosted forges (default: GITHUB_API_URL or "
                          "CI_API_V4_URL)."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def publish_options(func: F) -> F:
    """Options of ``publish`` that ``run --publish`` also takes."""
    decorators = [
        click.option("--target", default="auto", show_default=True,
                     help="auto, pr, pr/N (mr/N), commit, commit/SHA or issue/N."),
        click.option("--storage", metavar="NAME",
                     help="Where images go: github-branch[:BRANCH], gitlab-uploads or "
                          "s3://BUCKET/PREFIX[?presign=SECONDS] (default: the forge's own)."),
        click.option("--marker", metavar="NAME",
                     help="Names the sticky comment (default: one per notebook)."),
        click.option("--new", is_flag=True, help="Post a new comment instead of updating."),
        click.option("--check", type=CheckMode(), is_flag=False, flag_value="optional",
                     default=False,
                     help="Also record a GitHub check run / GitLab commit status; if the forge "
                          "refuses it, warn (--check=required: fail)."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@click.command()
@click.argument("report_dir", type=click.Path(file_okay=False, path_type=Path))
@publish_options
@forge_options
@click.option(
    "--dry-run", is_flag=True, help="Print what would be posted and where; write nothing."
)
@click.option("--s3-acl", metavar="ACL",
              help="Canned ACL for s3:// images, e.g. public-read (default: none; new buckets "
                   "refuse ACLs, so grant reads by bucket policy). Same as ?acl=ACL.")  # fmt: skip
def command(
    report_dir: Path,
    target: str,
    storage: str | None,
    marker: str | None,
    new: bool,
    check: str | bool,
    forge: str | None,
    repo: str | None,
    token: str | None,
    api_url: str | None,
    dry_run: bool,
    s3_acl: str | None,
) -> None:
    """Post REPORT_DIR (made by `cml-nb report`) as a comment that later runs update.

    \b
    The comment carries a hidden marker, so publishing again edits it in place
    (--new posts another); images are stored once by content hash. Tokens and
    permissions per forge: see docs/publish.md. Exit code 4: the forge refused.
    """
    from cml_nb.publish import publish
    from cml_nb.storage.s3 import with_acl

    storage = with_acl(storage or "", s3_acl) or None
    result = publish(
        report_dir, forge=forge, repo=repo, target=target, token=token, api_url=api_url,
        storage=storage, marker=marker, new=new, check=check, dry_run=dry_run,
    )  # fmt: skip
    for note in result.notes:
        click.echo(note, err=True)
    if dry_run:
        click.echo(result.body)
        return
    images = f"{len(result.uploaded)} image(s) uploaded, {len(result.reused)} reused"
    click.echo(f"{result.action} report comment on {result.target.describe()} ({images})", err=True)
    if result.status_url is not None:
        click.echo(f"status: {result.status_url}", err=True)
    from cml_nb.ci.finish import finish_publish  # job summary (hosted images), step output

    finish_publish(result)
    click.echo(result.url)
