"""``cml-nb runner``: launch, list, stop and clean up cloud GPU runners."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.2
    """``90s``, ``10m``, ``6h``, ``1h30m`` or plain seconds, as whole seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Seconds in ``value``."""
        if isinstance(value, int | float):
            return int(value)
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+", text):
            return int(text)
        parts = re.findall(r"(\d+)\s*([smhd])", text)
        if not parts or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
            self.fail(f"{value!r} is not a duration: use e.g. 90s, 10m, 6h or 1h30m", param, ctx)
        return sum(int(n) * _UNITS[u] for n, u in parts)


DURATION = Duration()


def _ci_forge() -> str | None:
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return "github"
    if os.environ.get("GITLAB_CI") == "true":
        return "gitlab"
    return None


def _ci_repository(forge: str | None) -> str | None:
    if forge == "gitlab":
        return os.environ.get("CI_PROJECT_PATH")
    return os.environ.get("GITHUB_REPOSITORY")


@dataclass(frozen=True)
class CloudTarget:
    """``--cloud`` and where in it: built into a cloud client only when a command runs."""

    cloud: str
    region: str | None
    options: dict[str, str | None]

    def connect(self) -> Any:
        """The cloud client (a ``cml_nb.runner.clouds.Cloud``)."""
        from cml_nb.runner import get_cloud

        return get_cloud(self.cloud, self.region, **self.options)


def cloud_options(func: F) -> F:
    """``--cloud`` and where in it (passed on as ``target``), and the forge credentials."""
    decorators = [
        click.option("--cloud", default="aws", show_default=True,
                     help="Cloud to run the machine in: aws, gcp or azure."),
        click.option("--region", help="Region (AWS: default AWS_REGION; GCP: default from --zone "
                     "or CLOUDSDK_COMPUTE_REGION; Azure: the location, e.g. westeurope)."),
        click.option("--zone", help="GCP zone to try first, e.g. us-central1-a (the region's "
                     "other zones follow when it has no capacity)."),
        click.option("--project", help="GCP project (default GOOGLE_CLOUD_PROJECT, then the "
                     "credentials' project)."),
        click.option("--subscription", help="Azure subscription id (default AZURE_SUBSCRIPTION_ID)."),
        click.option("--resource-group", help="Azure resource group for the VMs (default "
                     "AZURE_DEFAULTS_GROUP)."),
        click.option("--token", help="Forge token (default: GITHUB_TOKEN/GH_TOKEN or "
                     "GITLAB_TOKEN, then REPO_TOKEN). It must administer the repository's runners."),
        click.option("--api-url", help="Forge API root: GitHub's (default GITHUB_API_URL) or "
                     "the GitLab instance (default CI_SERVER_URL)."),
    ]  # fmt: skip

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cml_nb.runner.clouds import CLOUD_OPTIONS

        target = CloudTarget(
            kwargs.pop("cloud"),
            kwargs.pop("region"),
            {name: kwargs.pop(name) for name in CLOUD_OPTIONS},
        )
        return func(*args, target=target, **kwargs)

    for decorator in reversed(decorators):
        wrapper = decorator(wrapper)
    return wrapper  # type: ignore[return-value]


def _sigterm_as_interrupt() -> None:
    # A cancelled CI job gets SIGTERM: treat it as Ctrl-C so the launch is undone.
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)


def _forge_options(forge: str, token: str | None, api_url: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"token": token}
    if api_url:
        options["api_url" if forge == "github" else "url"] = api_url
    return options


def _resolver(token: str | None, api_url: str | None) -> Callable[[str, str], Any]:
    """Forge clients for instances' (forge, repository) tags; None without credentials."""
    from cml_nb.errors import ForgeAuthError
    from cml_nb.runner.registration import get_forge

    def resolve(forge: str, repository: str) -> Any:
        try:
            return get_forge(forge, repository, **_forge_options(forge, token, api_url))
        except ForgeAuthError as exc:
            click.echo(f"cml-nb: warning: {exc}; only expiry times are checked", err=True)
            return None

    return resolve


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 3600:
        return f"{sign}{int(seconds // 60)}m"
    return f"{sign}{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


@click.group()
@click.pass_context
def command(ctx: click.Context) -> None:
    """Cloud GPU runners for CI: launch one, list them, stop one, clean up leaks.

    \b
    A runner is a cloud machine (--cloud aws, gcp or azure) that registers
    with GitHub Actions or GitLab CI, runs jobs with the given labels, and
    terminates itself when idle for --idle-timeout or after --max-lifetime. Run 'cml-nb runner cleanup' on a
    schedule: it terminates instances whose lifetime ended or whose runner is
    gone. See docs/runners.md.
    """
    # [tool.cml-nb.runner] settings (region = ...) apply to every runner command.
    defaults = dict(ctx.default_map or {})
    shared = {k: v for k, v in defaults.items() if not isinstance(v, dict)}
    for verb in ("launch", "list", "stop", "cleanup"):
        defaults[verb] = {**shared, **(defaults.get(verb) or {})}
    ctx.default_map = defaults


@command.command()
@click.option(
    "--forge",
    type=click.Choice(["github", "gitlab"]),
    help="Where the runner registers (default: the CI system this runs in).",
)
@click.option(
    "--repo",
    "repository",
    help="owner/repo, an organisation, or a GitLab project path "
    "(default: GITHUB_REPOSITORY or CI_PROJECT_PATH).",
)
@cloud_options
@click.option("--instance-type", help="Machine type: EC2 g5.xlarge, GCP g2-standard-8 or "
              "n1-standard-8+nvidia-tesla-t4[:count], Azure Standard_NC4as_T4_v3.")  # fmt: skip
@click.option(
    "--size",
    type=click.Choice(["s", "m", "l", "xl"]),
    help="Generic size (m: 1 GPU, l: 4, xl: 8); see docs/runners.md.",
)
@click.option("--gpu", help="GPU shorthand: none, t4, a10g/a10, l4, l40s, v100, a100, h100 "
              "(per cloud: see docs/runners.md).")  # fmt: skip
@click.option(
    "--labels",
    default="cml-gpu",
    show_default=True,
    help="Comma-separated runner labels (GitLab: tags) that jobs ask for.",
)
@click.option(
    "--idle-timeout",
    type=DURATION,
    default="10m",
    show_default=True,
    help="Terminate after this long without a job.",
)
@click.option(
    "--max-lifetime",
    type=DURATION,
    default="6h",
    show_default=True,
    help="Terminate after this long, busy or not (a second, independent guard).",
)
@click.option(
    "--single", is_flag=True, help="Run one job, then terminate (GitHub: a single-use JIT runner)."
)
@click.option("--spot", is_flag=True, help="Use a spot instance.")
@click.option("--spot-price", help="Most to pay per hour for spot (AWS and Azure; default: "
              "the on-demand price).")  # fmt: skip
@click.option(
    "--spot-fallback", is_flag=True, help="Launch on demand when no zone has spot capacity."
)
@click.option("--image", "--ami", "ami", help="Image: an AWS AMI id, a GCP image or family "
              "(projects/P/global/images/family/F), an Azure URN (publisher:offer:sku:version). "
              "Default: the cloud's image with NVIDIA drivers.")  # fmt: skip
@click.option(
    "--disk-gb",
    type=click.IntRange(8, 16384),
    default=100,
    show_default=True,
    help="Root volume size.",
)
@click.option("--subnet", help="Subnet: AWS subnet id, GCP subnetwork, Azure subnet resource "
              "id (default: the default network; Azure: a new one per runner).")  # fmt: skip
@click.option(
    "--security-group", "security_groups", multiple=True, help="Security group id (repeatable)."
)
@click.option(
    "--startup-script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A bash script to run as root before the runner starts.",
)
@click.option("--name", help="Runner name (default: cml-nb-<random>).")
@click.option(
    "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Extra instance tag (repeatable)."
)
@click.option(
    "--register-timeout",
    type=DURATION,
    default="15m",
    show_default=True,
    help="Fail (and terminate) when the runner is not online by then; 0 to not wait.",
)
@click.option("--cml-nb-spec", help="pip requirement installed on the runner "
              "(default: this cml-nb's version).")  # fmt: skip
def launch(
    forge: str | None,
    repository: str | None,
    target: CloudTarget,
    token: str | None,
    api_url: str | None,
    instance_type: str | None,
    size: str | None,
    gpu: str | None,
    labels: str,
    idle_timeout: int,
    max_lifetime: int,
    single: bool,
    spot: bool,
    spot_price: str | None,
    spot_fallback: bool,
    ami: str | None,
    disk_gb: int,
    subnet: str | None,
    security_groups: tuple[str, ...],
    startup_script: Path | None,
    name: str | None,
    tags: tuple[str, ...],
    register_timeout: int,
    cml_nb_spec: str | None,
) -> None:
    """Launch a runner instance registered with the forge; print its name.

    Any failure after the instance exists terminates it. Exit codes: 2 bad options
    (nothing created), 4 the forge refused, 5 the cloud failed or the runner did
    not come online.
    """
    from cml_nb import __version__
    from cml_nb.errors import ConfigError
    from cml_nb.runner import lifecycle
    from cml_nb.runner.catalogue import resolve_instance_type
    from cml_nb.runner.registration import get_forge

    forge = forge or _ci_forge()
    if forge is None:
        raise ConfigError("no --forge: pass --forge github or --forge gitlab")
    extra: dict[str, str] = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag {item!r} is not KEY=VALUE")
        extra[key] = value
    if spot_price and not spot:
        raise ConfigError("--spot-price needs --spot")
    request = lifecycle.LaunchRequest(
        instance_type=resolve_instance_type(instance_type, size=size, gpu=gpu, cloud=target.cloud),
        labels=tuple(label.strip() for label in labels.split(",") if label.strip()),
        idle_timeout_s=idle_timeout,
        max_lifetime_s=max_lifetime,
        name=name,
        single=single,
        spot=spot,
        spot_price=spot_price,
        spot_fallback=spot_fallback,
        ami=ami,
        disk_gb=disk_gb,
        subnet=subnet,
        security_groups=security_groups,
        startup_script=startup_script.read_text(encoding="utf-8") if startup_script else "",
        tags=extra,
        cml_nb_spec=cml_nb_spec or f"cml-nb=={__version__}",
        wait_registered_s=register_timeout,
    )
    if max_lifetime < idle_timeout:
        raise ConfigError("--max-lifetime is shorter than --idle-timeout: raise it")
    runners = get_forge(
        forge, repository or _ci_repository(forge) or "", **_forge_options(forge, token, api_url)
    )
    cloud = target.connect()
    _sigterm_as_interrupt()
    result = lifecycle.launch(
        request, cloud, runners, progress=lambda line: click.echo(line, err=True)
    )
    instance = result.instance
    click.echo(
        f"runner {result.name}: {instance.id} {instance.instance_type} in {instance.zone}, "
        f"labels {','.join(request.labels)}, expires {instance.expires or '?'}",
        err=True,
    )
    click.echo(result.name)
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
            handle.write(f"runner-name={result.name}\n")


@command.command(name="list")
@cloud_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(
    target: CloudTarget, token: str | None, api_url: str | None, as_json: bool
) -> None:
    """List runner instances with their state, age, expiry and forge status."""
    from dataclasses import asdict

    from cml_nb.runner import lifecycle

    views = lifecycle.list_runners(target.connect(), _resolver(token, api_url))
    if as_json:
        click.echo(json.dumps([asdict(v) for v in views], indent=2))
        return
    if not views:
        click.echo("no runner instances", err=True)
        return
    rows = [("NAME", "INSTANCE", "STATE", "TYPE", "AGE", "EXPIRES IN", "FORGE", "REPOSITORY")]
    rows += [
        (v.name, v.instance_id, v.state, v.instance_type, _age(v.age_s), _age(v.expires_in_s),
         v.forge_status, v.repository)
        for v in views
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@command.command()
@click.argument("name")
@cloud_options
@click.option("--force", is_flag=True, help="Stop it even while it runs a job.")
def stop(
    name: str, target: CloudTarget, token: str | None, api_url: str | None, force: bool
) -> None:
    """Unregister runner NAME from its forge, then terminate its instance."""
    from cml_nb.runner import lifecycle

    for action in lifecycle.stop(target.connect(), _resolver(token, api_url), name, force=force):
        click.echo(str(action))


@command.command()
@cloud_options
@click.option(
    "--forge",
    type=click.Choice(["github", "gitlab"]),
    help="Forge of the repository to clean up for (default: the CI system this runs in).",
)
@click.option(
    "--repo",
    "repository",
    help="Only this repository's runners (default: GITHUB_REPOSITORY or CI_PROJECT_PATH).",
)
@click.option(
    "--all-repositories",
    is_flag=True,
    help="Admin sweep: every repository's runners in the region, and untagged ones.",
)
@click.option(
    "--grace",
    type=DURATION,
    default="15m",
    show_default=True,
    help="Spare instances younger than this whose runner has not registered yet.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be done, do nothing.")  # fmt: skip
def cleanup(
    target: CloudTarget,
    token: str | None,
    api_url: str | None,
    forge: str | None,
    repository: str | None,
    all_repositories: bool,
    grace: int,
    dry_run: bool,
) -> None:
    """Terminate runner instances past their lifetime or whose forge runner is gone.

    Run it on a schedule (a cron workflow). It looks only at the runners of one
    repository (--repo, default the CI job's), unless --all-repositories. It never
    terminates a runner that is online before its max lifetime ends. Prints one
    line per action.
    """
    from cml_nb.errors import ConfigError
    from cml_nb.runner import lifecycle

    scope: lifecycle.Scope | None = None
    if all_repositories:
        if repository or forge:
            raise ConfigError("--all-repositories sweeps every repository: drop --repo/--forge")
    else:
        forge = forge or _ci_forge() or ("github" if repository else None)
        repository = repository or _ci_repository(forge)
        if not forge or not repository:
            raise ConfigError(
                "cleanup needs the repository whose runners it cleans up: pass --repo owner/repo "
                "(and --forge gitlab for GitLab), or --all-repositories for an admin sweep"
            )
        scope = lifecycle.Scope(forge, repository)
    actions = lifecycle.cleanup(
        target.connect(),
        _resolver(token, api_url),
        scope=scope,
        grace_s=grace,
        dry_run=dry_run,
    )
    for action in actions:
        click.echo(("would " if dry_run else "") + str(action))
    if not actions:
        click.echo("nothing to clean up", err=True)
    sys.stdout.flush()
