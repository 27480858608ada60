"""What every runner cloud offers: the typed interface, the shared records, the registry.

A cloud is a class with a small interface (``Cloud``): check a machine type and image,
launch one tagged machine (trying zones and markets, telling capacity errors from the
rest), list cml-nb's machines, terminate them. ``lifecycle`` joins it with a forge and
never asks which cloud it has.

The registry maps names to ``module:Class`` targets, imported on use (the SDKs are
heavy and optional); third-party clouds come from the ``cml_nb.runner_clouds`` entry
point group. Each class builds itself from the command line's options with
``from_options``, so the CLI has no per-cloud code either::

    aws    cml_nb.runner.aws:Ec2           boto3 (a dependency)
    gcp    cml_nb.runner.gcp:ComputeEngine google-cloud-compute  (cml-nb[gcp])
    azure  cml_nb.runner.azure:AzureVms    azure-mgmt-compute... (cml-nb[azure])
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from cml_nb.errors import CloudError, ConfigError
from cml_nb.secrets import Scrubber

log = logging.getLogger(__name__)
Z = TypeVar("Z")

TAG_RUNNER = "cml-nb:runner"
TAG_EXPIRES = "cml-nb:expires"
TAG_FORGE = "cml-nb:forge"
TAG_REPOSITORY = "cml-nb:repository"
TAG_LABELS = "cml-nb:labels"

#: The command-line options a cloud may take besides ``--region`` (None: not given).
CLOUD_OPTIONS = ("zone", "project", "subscription", "resource_group")


@dataclass(frozen=True)
class InstanceTypeInfo:
    """What the runner needs to know about a machine type."""

    name: str
    gpus: int
    gpu_name: str
    architecture: str  # x86_64 or arm64


@dataclass(frozen=True)
class LaunchSpec:
    """One runner machine to create.

    Attributes:
        name: the runner's name (its ``cml-nb:runner`` tag, and the machine's name).
        instance_type: the machine type, already checked (GCP: ``machine[+accelerator[:n]]``).
        ami: the image (an AWS AMI id, a GCP image or family URL, an Azure image URN).
        user_data: the startup script (secret: never logged).
        tags: every tag, including the ``cml-nb:*`` ones.
        disk_gb: boot disk size.
        subnet: a subnet (AWS subnet id, GCP subnetwork, Azure subnet resource id).
        security_groups: AWS security group ids.
        spot: ask for spot capacity.
        spot_price: the most to pay per hour (default: the on-demand price).
        spot_fallback: launch on demand when no zone has spot capacity.
        max_lifetime_s: the lifetime, for clouds that enforce one themselves (GCP).
    """

    name: str
    instance_type: str
    ami: str
    user_data: str = field(repr=False)
    tags: Mapping[str, str]
    disk_gb: int = 100
    subnet: str | None = None
    security_groups: tuple[str, ...] = ()
    spot: bool = False
    spot_price: str | None = None
    spot_fallback: bool = False
    max_lifetime_s: int = 6 * 3600


@dataclass(frozen=True)
class Instance:
    """A machine that cml-nb launched, as its cloud describes it."""

    id: str
    name: str
    state: str
    instance_type: str
    launch_time: datetime
    zone: str
    spot: bool
    tags: Mapping[str, str]

    @property
    def expires(self) -> datetime | None:
        """When its max lifetime ends (from the ``cml-nb:expires`` tag)."""
        raw = self.tags.get(TAG_EXPIRES)
        if not raw:
            return None
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None


class Cloud(Protocol):
    """One region of one cloud, as ``lifecycle`` uses it.

    Every method turns the SDK's failures into one-line ``CloudError``s (or
    ``ConfigError`` for what the user can fix before anything exists), with secrets
    masked by ``scrubber``.
    """

    name: str
    region: str
    scrubber: Scrubber
    #: Where to read a machine's boot log, for "did not come online" messages.
    boot_log_hint: str

    def check_name(self, name: str) -> None:
        """Raise ``ConfigError`` when ``name`` cannot name a machine on this cloud."""

    def describe_instance_type(self, instance_type: str) -> InstanceTypeInfo:
        """GPUs and architecture of a machine type (``ConfigError`` if unknown)."""

    def zones_offering(self, instance_type: str) -> list[str]:
        """Zones of the region with the machine type (``ConfigError`` if none)."""

    def default_ami(self, info: InstanceTypeInfo) -> str:
        """The default image for the type: NVIDIA drivers when it has GPUs."""

    def check_image(self, ami: str, info: InstanceTypeInfo) -> None:
        """Raise ``ConfigError`` when the image is missing or of another architecture."""

    def launch(self, spec: LaunchSpec) -> Instance:
        """Create one tagged machine, trying each zone, then on demand if allowed.

        A capacity error (``is_capacity_error``) moves on to the next zone or market;
        anything else fails at once. A machine the cloud half-created is deleted
        before this raises.
        """

    def is_capacity_error(self, code: str) -> bool:
        """Whether the cloud's error ``code`` means "no capacity here, try elsewhere"."""

    def wait_running(self, instance_id: str, timeout_s: float) -> None:
        """Wait until the machine runs (``CloudError`` on timeout or failure)."""

    def instances(self, *, name: str | None = None, gone: bool = False) -> list[Instance]:
        """cml-nb's machines in the region (one runner's with ``name``), oldest first.

        ``gone`` adds machines that are terminated but still listed (EC2 keeps them
        for about an hour), so their forge runners can be unregistered.
        """

    def terminate(self, instance_ids: Iterable[str]) -> list[str]:
        """Terminate machines (with their disks, NICs and addresses); returns their ids."""


@dataclass(frozen=True)
class CloudEntry:
    """A registered cloud: where its class lives and what to install for it."""

    target: str  # "module:Class"
    extra: str
    title: str


#: Built-in clouds, registered explicitly.
CLOUDS: dict[str, CloudEntry] = {
    "aws": CloudEntry("cml_nb.runner.aws:Ec2", "aws", "AWS EC2"),
    "gcp": CloudEntry("cml_nb.runner.gcp:ComputeEngine", "gcp", "Google Compute Engine"),
    "azure": CloudEntry("cml_nb.runner.azure:AzureVms", "azure", "Azure virtual machines"),
}


class CapacityError(Exception):
    """A zone or market had no capacity (internal: ``launch_first_fit`` tries the next one)."""


def launch_first_fit(
    spec: LaunchSpec,
    zones: Sequence[Z],
    create: Callable[[Z, bool], Instance],
    *,
    region: str,
    where: Callable[[Z], str],
    markets: tuple[str, str],
    hint: str,
) -> Instance:
    """Try ``create(zone, spot)`` in each zone, then (``spot_fallback``) without spot.

    Args:
        spec: the machine to create (its ``spot`` and ``spot_fallback`` choose the markets).
        zones: where to try, in order.
        create: creates one machine or raises ``CapacityError``.
        region: the region, for the message.
        where: how a zone reads in the message.
        markets: how the spot and the regular market read in the message.
        hint: what else to try (e.g. ``"try another --region or --instance-type"``).

    Raises:
        CloudError: no zone had capacity in any market.
    """
    tries = [spec.spot] + ([False] if spec.spot and spec.spot_fallback else [])
    failures: list[str] = []
    for spot in tries:
        for zone in zones:
            try:
                return create(zone, spot)
            except CapacityError as exc:
                failures.append(f"{where(zone)} {markets[0] if spot else markets[1]}: {exc}")
                log.warning("no capacity (%s), trying elsewhere", failures[-1])
    raise CloudError(
        f"no capacity for {spec.instance_type} in {region} ({'; '.join(failures)}): "
        + hint
        + ("" if not spec.spot or spec.spot_fallback else ", or add --spot-fallback")
    )


def cloud_class(name: str) -> Any:
    """The class registered as ``name`` (built-in or from an entry point).

    Raises:
        ConfigError: no cloud has that name.
    """
    entry = CLOUDS.get(name)
    if entry is not None:
        module, _, attribute = entry.target.partition(":")
        return getattr(importlib.import_module(module), attribute)
    from importlib.metadata import entry_points

    for point in entry_points(group="cml_nb.runner_clouds"):
        if point.name == name:
            return point.load()
    raise ConfigError(f"unknown cloud {name!r}: choose one of {', '.join(CLOUDS)}")


def get_cloud(name: str, region: str | None, **options: Any) -> Any:
    """The cloud called ``name``, built from command-line style options.

    Args:
        name: a registered cloud.
        region: ``--region`` (None: the cloud's own default from the environment).
        options: ``zone``, ``project``, ``subscription``, ``resource_group`` (None or
            absent when not given); a cloud refuses the ones it does not take.

    Raises:
        ConfigError: unknown cloud, an option it does not take, or no region.
    """
    given = {k: v for k, v in options.items() if v not in (None, "", ())}
    return cloud_class(name).from_options(region, **given)


def refuse_options(cloud: str, given: Mapping[str, Any], takes: Iterable[str]) -> None:
    """Raise ``ConfigError`` for options ``cloud`` does not take (one line, the fix)."""
    extra = sorted(set(given) - set(takes))
    if extra:
        flags = ", ".join("--" + key.replace("_", "-") for key in extra)
        owners = {"zone": "gcp", "project": "gcp", "subscription": "azure"}
        hint = "; ".join(
            f"--{k.replace('_', '-')} is for --cloud {owners.get(k, 'azure')}" for k in extra
        )
        raise ConfigError(f"--cloud {cloud} does not take {flags} ({hint}): drop it")
