"""``cml-nb init``: write the CI pipeline that runs a notebook on every pull/merge request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command("init")
@click.option(
    "--forge",
    type=click.Choice(["github", "gitlab"]),
    help="Where CI runs (default: read from the 'origin' remote's address).",
)
@click.option(
    "-n",
    "--notebook",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The notebook CI runs (default: the repository's only notebook).",
)
@click.option(
    "--gpu-runner",
    type=click.Choice(["aws", "gcp", "azure"]),
    help="Launch a self-hosted GPU runner on this cloud and run the notebook there.",
)
@click.option(
    "--gpu",
    default="t4",
    show_default=True,
    help="GPU of the launched runner (cml-nb runner launch --gpu).",
)
@click.option("--region", help="Region of the runner (default: us-east-1 on AWS, us-central1 on "
              "GCP, eastus on Azure).")  # fmt: skip
@click.option(
    "--sweep", is_flag=True, help="Run a parameter sweep as a matrix of shards, then merge."
)
@click.option(
    "--shards",
    type=click.IntRange(min=2),
    default=4,
    show_default=True,
    help="Matrix jobs of the sweep.",
)
@click.option(
    "--sweep-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The sweep's parameter space, YAML (default: sweep.yaml at the repository root).",
)
@click.option(
    "--requirements",
    "-r",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Requirement files CI installs (default: requirements.txt when present).",
)
@click.option("--python", default="3.12", show_default=True, help="Python version in CI.")
@click.option(
    "--install",
    help="pip requirement for cml-nb itself (default: this version, cml-nb==X.Y.Z).",
)
@click.option(
    "--branch",
    help="Default branch, whose runs later pull requests compare against (GitHub; "
    "default: origin's HEAD, else main).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the pipeline here instead of .github/workflows/cml-nb.yml or .gitlab-ci.yml.",
)
@click.option(
    "--use-action", is_flag=True,
    help="GitHub: run the notebook with the cml-nb composite action (uses: cml-nb/cml-nb).",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite an existing pipeline file.")
@click.option("--dry-run", is_flag=True, help="Print the pipeline instead of writing it.")
def command(
    forge: str | None,
    notebook: Path | None,
    gpu_runner: str | None,
    gpu: str,
    region: str,
    sweep: bool,
    shards: int,
    sweep_file: Path | None,
    requirements: tuple[Path, ...],
    python: str,
    install: str | None,
    branch: str | None,
    output: Path | None,
    use_action: bool,
    force: bool,
    dry_run: bool,
) -> None:
    """Write the CI pipeline that runs a notebook and publishes its report.

    \b
    cml-nb init --forge github --notebook train.ipynb
    cml-nb init --forge gitlab --gpu-runner aws --sweep --shards 8

    GitHub: .github/workflows/cml-nb.yml; GitLab: .gitlab-ci.yml. An existing file
    is kept unless --force. The secrets the pipeline needs are printed at the end.
    Exit codes: 0 written, 2 bad usage or the file exists, 3 notebook not found.
    """
    from cml_nb import pipelines

    settings: dict[str, Any] = {
        "gpu_runner": gpu_runner,
        "gpu": gpu,
        "region": region or _default_region(gpu_runner),
        "sweep": sweep,
        "shards": shards,
        "python": python,
        "branch": branch,
        "use_action": use_action,
    }
    if install:
        settings["install"] = install
    root = pipelines.find_root()
    pipeline = pipelines.init(
        root,
        forge=forge,
        notebook=notebook,
        output=output,
        requirements=requirements or None,
        sweep_file=sweep_file,
        force=force,
        dry_run=dry_run,
        **settings,
    )
    if dry_run:
        click.echo(pipeline.text, nl=False)
        return
    click.echo(f"wrote {root / pipeline.path}")
    if pipeline.secrets:
        click.echo("\nAdd these secrets before the first run:")
        for secret in pipeline.secrets:
            click.echo(f"  {secret.name}: {secret.why}.\n    where: {secret.where}")
    else:
        click.echo("\nNo secrets to add: the workflow's GITHUB_TOKEN publishes the report.")
    for note in pipeline.notes:
        click.echo(f"\nnote: {note}")
    click.echo(f"\nNext: commit {pipeline.path}, push, and open a {pipeline.request}.")


def _default_region(cloud: str | None) -> str:
    from cml_nb.pipelines.clouds import LOGINS

    return LOGINS[cloud or "aws"].region
