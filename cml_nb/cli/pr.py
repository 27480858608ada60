"""``cml-nb pr``: pull/merge requests made by cml-nb (``pr create``)."""

from __future__ import annotations

from pathlib import Path

import click

from cml_nb.cli.publish import forge_options


@click.group()
def command() -> None:
    """Open pull/merge requests with files a run produced (e.g. retrained metrics)."""


@command.command("create")
@click.argument("patterns", nargs=-1, required=True, metavar="GLOB...")
@forge_options
@click.option("--branch", metavar="NAME", help="Head branch (default cml-nb/pr-<short sha>).")
@click.option("--base", metavar="NAME", help="Branch to merge into (default: the current one).")
@click.option("--title", help="Title (default: the commit message).")
@click.option("-m", "--message", help="Commit message (default 'cml-nb: update N file(s)').")
@click.option(
    "--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
    help="A report bundle whose Markdown becomes the description.",
)  # fmt: skip
@click.option(
    "--skip-ci/--no-skip-ci", default=True, show_default=True,
    help="Add [skip ci] to the commit message so it starts no pipeline.",
)  # fmt: skip
def create(
    patterns: tuple[str, ...],
    forge: str | None,
    repo: str | None,
    token: str | None,
    api_url: str | None,
    branch: str | None,
    base: str | None,
    title: str | None,
    message: str | None,
    report_dir: Path | None,
    skip_ci: bool,
) -> None:
    """Commit the files matching GLOB... that changed to a branch and open a PR/MR.

    Running it again for the same commit updates the branch and reuses the open
    pull request. Needs contents and pull-requests write access (docs/publish.md).
    """
    from cml_nb.forge.pulls import create_pull_request

    body = None
    if report_dir is not None:
        from cml_nb.report import load_bundle, to_markdown

        body = to_markdown(load_bundle(report_dir), max_chars=60_000)
    result = create_pull_request(
        list(patterns), forge=forge, repo=repo, token=token, api_url=api_url, branch=branch,
        base=base, title=title, message=message, body=body, skip_ci=skip_ci,
    )  # fmt: skip
    if result.action == "unchanged":
        click.echo("nothing changed: no pull request needed", err=True)
        return
    click.echo(f"{result.action} pull request #{result.number} from {result.branch}", err=True)
    click.echo(result.url)
