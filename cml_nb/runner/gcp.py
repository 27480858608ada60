"""Compute Engine runners through google-cloud-compute: launch, find, delete.

A runner is one VM created in one ``instances.insert`` call with everything that
keeps it from leaking: labels ``list`` and ``cleanup`` find it by, Compute Engine's own
lifetime guard (``scheduling.maxRunDuration`` with ``instanceTerminationAction:
DELETE``, for spot and standard VMs alike), a boot disk that is deleted with it
(``autoDelete``), an ephemeral external address (released with it), and no service
account, so the metadata server hands the job no Google credentials. Spot VMs are
deleted, not stopped, when Compute Engine preempts them.

GCP label values allow only ``[a-z0-9_-]``, so the exact ``cml-nb:*`` values (a
repository ``Octo/GPU``, an expiry time) ride in metadata items ``cml-nb-*``; labels
carry the runner's name and the user's ``--tag`` values, for filtering. Credentials are
Application Default Credentials; ``CML_NB_GCP_ENDPOINT`` points the client elsewhere.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from cml_nb.errors import CloudError, ConfigError, MissingDependencyError
from cml_nb.runner.clouds import (
    TAG_RUNNER,
    CapacityError,
    Instance,
    InstanceTypeInfo,
    LaunchSpec,
    launch_first_fit,
    refuse_options,
)
from cml_nb.runner.script import CLOUD_LIMIT_MARGIN_S
from cml_nb.secrets import Scrubber

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Label that marks a cml-nb VM; its value is the runner's name.
LABEL_RUNNER = "cml-nb-runner"
_META_PREFIX = "cml-nb-"

#: Operation error codes that mean "not in this zone now": try the next zone or market.
CAPACITY_ERRORS = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "RESOURCE_POOL_EXHAUSTED",
        "STOCKOUT",
    }
)
#: Quota codes: the whole region (or project) is out of quota, other zones will not help.
QUOTA_ERRORS = frozenset({"QUOTA_EXCEEDED", "quotaExceeded", "RESOURCE_EXHAUSTED"})
#: HTTP statuses retried with backoff (requestId makes a retried insert safe).
_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})

#: Default images (project, family): the Deep Learning VM with NVIDIA drivers for GPUs.
DEFAULT_IMAGES = {
    ("gpu", "x86_64"): ("deeplearning-platform-release", "common-cu128-ubuntu-2204-nvidia-570"),
    ("cpu", "x86_64"): ("ubuntu-os-cloud", "ubuntu-2204-lts"),
    ("cpu", "arm64"): ("ubuntu-os-cloud", "ubuntu-2204-lts-arm64"),
}

_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_MACHINE = re.compile(r"(?P<machine>[a-z0-9-]+)(\+(?P<accelerator>[a-z0-9-]+)(:(?P<count>\d+))?)?")


def parse_machine(instance_type: str) -> tuple[str, str | None, int]:
    """``n1-standard-8+nvidia-tesla-t4:2`` -> machine type, accelerator type, count.

    Raises:
        ConfigError: the text is not ``machine[+accelerator[:count]]``.
    """
    match = _MACHINE.fullmatch(instance_type.strip())
    if not match:
        raise ConfigError(
            f"{instance_type!r} is not a GCP machine: use a machine type such as g2-standard-8, "
            "or machine+accelerator[:count] such as n1-standard-8+nvidia-tesla-t4"
        )
    accelerator = match["accelerator"]
    return match["machine"], accelerator, int(match["count"] or 1) if accelerator else 0


def _short(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _codes(exc: Exception) -> list[str]:
    """Error codes in a google-api-core exception (operation errors or REST reasons)."""
    found: list[str] = []
    for error in getattr(exc, "errors", None) or []:
        if isinstance(error, dict):
            found.append(str(error.get("code") or error.get("reason") or ""))
        else:
            found.append(str(getattr(error, "code", "") or getattr(error, "reason", "")))
    return [code for code in found if code]


class ComputeEngine:
    """The Compute Engine side of runners in one region of one project.

    Args:
        region: the region, e.g. ``us-central1``.
        project: the project id (default ``GOOGLE_CLOUD_PROJECT``, then the credentials').
        zone: the zone to try first (the others of the region follow on capacity errors).
        credentials: google-auth credentials (default: Application Default Credentials).
        max_attempts: attempts per request under 429s and 5xx answers.
        scrubber: masks secrets in error messages.
    """

    name = "gcp"

    @classmethod
    def from_options(cls, region: str | None, **options: Any) -> ComputeEngine:
        """From ``--region`` or ``--zone`` (default ``CLOUDSDK_COMPUTE_REGION``), ``--project``."""
        refuse_options("gcp", options, ("zone", "project"))
        zone = options.get("zone")
        region = (
            region
            or (zone.rsplit("-", 1)[0] if zone else None)
            or os.environ.get("CLOUDSDK_COMPUTE_REGION")
        )
        if not region:
            raise ConfigError(
                "no GCP region: pass --zone (e.g. us-central1-a) or --region, "
                "or export CLOUDSDK_COMPUTE_REGION"
            )
        if zone and not zone.startswith(region + "-"):
            raise ConfigError(f"--zone {zone} is not in --region {region}: drop one of them")
        return cls(region, project=options.get("project"), zone=zone)

    def __init__(
        self,
        region: str,
        *,
        project: str | None = None,
        zone: str | None = None,
        credentials: Any = None,
        max_attempts: int = 6,
        scrubber: Scrubber | None = None,
    ) -> None:
        try:
            import google.auth
            from google.api_core.client_options import ClientOptions
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import compute_v1
        except ImportError as exc:
            raise MissingDependencyError("GCP runners", "gcp", "google-cloud-compute") from exc
        self.region = region
        self.zone = zone
        self.scrubber = scrubber or Scrubber()
        self.max_attempts = max_attempts
        self.compute = compute_v1
        found_project: str | None = None
        if credentials is None:
            try:
                credentials, found_project = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/cloud-platform"]
                )
            except DefaultCredentialsError as exc:
                raise CloudError(
                    "no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a key or "
                    "workload identity file, or run 'gcloud auth application-default login' "
                    "(in GitHub Actions, google-github-actions/auth)"
                ) from exc
        self.project = (
            project
            or os.environ.get("GOOGLE_CLOUD_PROJECT")
            or os.environ.get("CLOUDSDK_CORE_PROJECT")
            or found_project
        )
        if not self.project:
            raise ConfigError("no GCP project: pass --project or export GOOGLE_CLOUD_PROJECT")
        endpoint = os.environ.get("CML_NB_GCP_ENDPOINT")
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        kwargs: dict[str, Any] = {"credentials": credentials, "client_options": options}
        self.instances_client = compute_v1.InstancesClient(**kwargs)
        self.regions_client = compute_v1.RegionsClient(**kwargs)
        self.machine_types = compute_v1.MachineTypesClient(**kwargs)
        self.accelerator_types = compute_v1.AcceleratorTypesClient(**kwargs)
        self.images = compute_v1.ImagesClient(**kwargs)
        self.zone_operations = compute_v1.ZoneOperationsClient(**kwargs)
        self._offers: dict[tuple[str, str, str | None], Any | None] = {}
        self.boot_log_hint = (
            "gcloud compute instances get-serial-port-output NAME --zone ZONE "
            f"--project {self.project}"
        )

    # -- calls ---------------------------------------------------------------------------

    def _call(self, doing: str, function: Callable[..., T], /, **kwargs: Any) -> T:
        """``function(**kwargs)``, retrying 429s and 5xx answers with full jitter."""
        from google.api_core import exceptions

        for attempt in range(1, self.max_attempts + 1):
            try:
                return function(**kwargs)
            except exceptions.GoogleAPICallError as exc:
                status = int(getattr(exc, "code", 0) or 0)
                if status not in _RETRIED_STATUS or attempt == self.max_attempts:
                    raise
                delay = random.uniform(0, min(20.0, 0.25 * 2**attempt))
                log.info("%s: HTTP %s; retrying in %.1f s", doing, status, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn google-api-core's exceptions into one-line ``CloudError``s."""
        from google.api_core import exceptions
        from google.auth.exceptions import GoogleAuthError

        try:
            yield
        except exceptions.GoogleAPICallError as exc:
            raise self._cloud_error(doing, exc) from exc
        except GoogleAuthError as exc:
            raise CloudError(
                self.scrubber.scrub(
                    f"{doing}: Google credentials were refused ({exc}): check "
                    "GOOGLE_APPLICATION_CREDENTIALS or the workload identity provider"
                )
            ) from exc

    def _cloud_error(self, doing: str, exc: Any) -> CloudError:
        codes = _codes(exc)
        status = int(getattr(exc, "code", 0) or 0)
        message = str(getattr(exc, "message", "") or exc)
        hint = "see the Compute Engine message"
        if status in {401, 403} and not set(codes) & QUOTA_ERRORS:
            hint = (
                "the credentials lack Compute Engine permissions: grant roles/compute.instanceAdmin.v1 "
                "(see docs/runners.md)"
            )
        elif set(codes) & QUOTA_ERRORS:
            hint = (
                "a quota is reached: request more in the console (IAM & Admin > Quotas), e.g. "
                "the GPUs of this model in the region, or try another --region"
            )
        elif set(codes) & CAPACITY_ERRORS:
            hint = "no capacity: try another --zone/--region or machine, or --spot-fallback"
        elif status == 429:
            hint = "Compute Engine kept rate-limiting after every retry: try again in a minute"
        code = ",".join(codes) or str(status or type(exc).__name__)
        return CloudError(self.scrubber.scrub(f"{doing}: {code}: {message} ({hint})"))

    # -- machine types and images --------------------------------------------------------

    def check_name(self, name: str) -> None:
        """Compute Engine names are RFC 1035 labels: ``[a-z]([-a-z0-9]*[a-z0-9])?``, 63 long."""
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"runner name {name!r} is not a valid GCP instance name: use lowercase letters, "
                "digits and hyphens, starting with a letter (at most 63)"
            )

    def is_capacity_error(self, code: str) -> bool:
        """Compute Engine's stock-out codes (another zone or on demand may work)."""
        return code in CAPACITY_ERRORS

    def _zones(self) -> list[str]:
        with self._errors(f"reading region {self.region}"):
            region = self._call(
                "regions.get", self.regions_client.get, project=self.project, region=self.region
            )
        zones = sorted(_short(url) for url in region.zones)
        if self.zone:
            if self.zone not in zones:
                raise ConfigError(f"zone {self.zone} is not in {self.region}: check --zone")
            zones.remove(self.zone)
            zones.insert(0, self.zone)
        return zones

    def _offered(self, zone: str, machine: str, accelerator: str | None) -> Any | None:
        """The machine type in ``zone`` (None when the zone lacks it or the accelerator)."""
        key = (zone, machine, accelerator)
        if key not in self._offers:  # asked by the checks and again by launch
            self._offers[key] = self._look_up(zone, machine, accelerator)
        return self._offers[key]

    def _look_up(self, zone: str, machine: str, accelerator: str | None) -> Any | None:
        from google.api_core import exceptions

        try:
            found = self._call(
                "machineTypes.get",
                self.machine_types.get,
                project=self.project,
                zone=zone,
                machine_type=machine,
            )
            if accelerator:
                self._call(
                    "acceleratorTypes.get",
                    self.accelerator_types.get,
                    project=self.project,
                    zone=zone,
                    accelerator_type=accelerator,
                )
        except exceptions.NotFound:
            return None
        return found

    def describe_instance_type(self, instance_type: str) -> InstanceTypeInfo:
        """GPUs and architecture of ``machine[+accelerator[:count]]`` (``ConfigError`` if unknown)."""
        machine, accelerator, count = parse_machine(instance_type)
        found = None
        with self._errors(f"checking machine type {machine}"):
            for zone in self._zones():
                found = self._offered(zone, machine, accelerator)
                if found is not None:
                    break
        if found is None:
            raise ConfigError(
                f"unknown machine {instance_type!r} in {self.region}: no zone offers "
                f"{machine}{' with ' + accelerator if accelerator else ''}; check the spelling, "
                "choose another --region, or use --size/--gpu (see docs/runners.md)"
            )
        built_in = [
            (a.guest_accelerator_type, a.guest_accelerator_count) for a in found.accelerators
        ]
        gpus = [(accelerator, count)] if accelerator else built_in
        architecture = str(getattr(found, "architecture", "") or "X86_64").upper()
        return InstanceTypeInfo(
            name=instance_type,
            gpus=sum(int(n) for _, n in gpus),
            gpu_name=", ".join(str(a) for a, _ in gpus),
            architecture="arm64" if architecture == "ARM64" else "x86_64",
        )

    def zones_offering(self, instance_type: str) -> list[str]:
        """Zones of the region (``--zone`` first) that offer the machine and accelerator."""
        machine, accelerator, _ = parse_machine(instance_type)
        with self._errors(f"listing the zones of {self.region}"):
            zones = [z for z in self._zones() if self._offered(z, machine, accelerator)]
        if not zones:
            raise ConfigError(
                f"{instance_type} is not offered in {self.region}: choose another --region "
                "or machine"
            )
        return zones

    def default_ami(self, info: InstanceTypeInfo) -> str:
        """The image family for the type: Deep Learning VM (NVIDIA drivers) for GPUs."""
        key = ("gpu" if info.gpus else "cpu", info.architecture)
        if key not in DEFAULT_IMAGES:
            raise ConfigError(f"no default image for {info.name}: pass --image")
        project, family = DEFAULT_IMAGES[key]
        return f"projects/{project}/global/images/family/{family}"

    def check_image(self, ami: str, info: InstanceTypeInfo) -> None:
        """Fail early when the image (or family) is missing or of another architecture."""
        from google.api_core import exceptions

        match = re.fullmatch(r"(?:.*/)?projects/([^/]+)/global/images/(family/)?([^/]+)", ami)
        if not match:
            raise ConfigError(
                f"--image {ami!r} is not a GCP image: use projects/P/global/images/NAME "
                "or projects/P/global/images/family/FAMILY"
            )
        project, family, image = match.groups()
        try:
            with self._errors(f"checking image {ami}"):
                if family:
                    found = self._call(
                        "images.getFromFamily",
                        self.images.get_from_family,
                        project=project,
                        family=image,
                    )
                else:
                    found = self._call("images.get", self.images.get, project=project, image=image)
        except CloudError as exc:
            if isinstance(exc.__cause__, exceptions.NotFound):
                raise ConfigError(f"image {ami} does not exist: pass another --image") from exc
            raise
        architecture = str(getattr(found, "architecture", "") or "").upper()
        wanted = "ARM64" if info.architecture == "arm64" else "X86_64"
        if architecture and architecture != wanted:
            raise ConfigError(
                f"image {ami} is for {architecture.lower()} but {info.name} runs "
                f"{info.architecture}: pass a matching --image or another machine"
            )

    # -- launching -----------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> Instance:
        """Create one labelled VM, trying each zone, then standard VMs if allowed.

        Raises:
            ConfigError: an option Compute Engine does not have.
            CloudError: no zone had capacity, a quota is reached, or GCP refused.
        """
        if spec.spot_price or spec.security_groups:
            raise ConfigError(
                "--spot-price and --security-group are AWS options: GCP spot VMs have no bid "
                "and firewalls are network rules; drop them"
            )
        zones = self.zones_offering(spec.instance_type)
        return launch_first_fit(
            spec,
            zones,
            lambda zone, spot: self._insert(spec, zone=zone, spot=spot),
            region=self.region,
            where=str,
            markets=("spot", "standard"),
            hint="try another --region or machine",
        )

    def _labels(self, spec: LaunchSpec) -> dict[str, str]:
        labels = {}
        for key, value in spec.tags.items():
            if key.startswith("cml-nb:") or key == "Name":
                continue
            if not _LABEL.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
                raise ConfigError(
                    f"--tag {key}={value} is not a valid GCP label: keys and values take "
                    "lowercase letters, digits, '-' and '_' (at most 63)"
                )
            labels[key] = value
        labels[LABEL_RUNNER] = spec.name
        return labels

    def _body(self, spec: LaunchSpec, zone: str, spot: bool) -> dict[str, Any]:
        machine, accelerator, count = parse_machine(spec.instance_type)
        labels = self._labels(spec)
        # cloud-init reads ``user-data`` once per VM, as on EC2; ``startup-script`` would
        # run at every boot, and the script keeps its own guards across reboots.
        metadata = [{"key": "user-data", "value": spec.user_data}]
        metadata += [
            {"key": _META_PREFIX + key.removeprefix("cml-nb:"), "value": value}
            for key, value in spec.tags.items()
            if key.startswith("cml-nb:")
        ]
        network: dict[str, Any] = {
            # An ephemeral external address: released with the VM, so it cannot leak.
            "access_configs": [{"name": "external-nat", "type_": "ONE_TO_ONE_NAT"}]
        }
        if spec.subnet:
            network["subnetwork"] = spec.subnet
        else:
            network["network"] = "global/networks/default"
        body: dict[str, Any] = {
            "name": spec.name,
            "machine_type": f"zones/{zone}/machineTypes/{machine}",
            "labels": labels,
            "metadata": {"items": metadata},
            "disks": [
                {
                    "boot": True,
                    "auto_delete": True,
                    "initialize_params": {
                        "source_image": spec.ami,
                        "disk_size_gb": spec.disk_gb,
                        "disk_type": f"zones/{zone}/diskTypes/pd-balanced",
                        "labels": labels,
                    },
                }
            ],
            "network_interfaces": [network],
            # No service account (the API attaches none unless one is named, unlike gcloud
            # and the console): the job gets no Google credentials from the metadata server.
            "service_accounts": [],
            "scheduling": {
                "provisioning_model": "SPOT" if spot else "STANDARD",
                # Compute Engine's own lifetime guard: it deletes the VM at the end, a
                # margin after the startup script's own guard should have shut it down.
                "instance_termination_action": "DELETE",
                "max_run_duration": {"seconds": int(spec.max_lifetime_s) + CLOUD_LIMIT_MARGIN_S},
                # GPUs cannot live-migrate; a restarted runner would re-register.
                "on_host_maintenance": "TERMINATE",
                "automatic_restart": False,
            },
        }
        if accelerator:
            body["guest_accelerators"] = [
                {
                    "accelerator_type": f"zones/{zone}/acceleratorTypes/{accelerator}",
                    "accelerator_count": count,
                }
            ]
        return body

    def _wait(self, zone: str, operation: Any, doing: str, timeout_s: float = 600) -> None:
        """Wait for a zone operation; raise ``_OperationFailed`` when it ends in error.

        Polls with our own ``zoneOperations.wait`` client: the SDK's ``result()`` polls
        through a client of its own that ignores a custom endpoint.
        """
        deadline = time.monotonic() + timeout_s
        name = operation.name
        while getattr(operation.status, "name", operation.status) != "DONE":
            if time.monotonic() >= deadline:
                raise CloudError(
                    f"{doing}: operation {name} still {operation.status} after {timeout_s:.0f} s"
                )
            operation = self._call(
                "zoneOperations.wait",
                self.zone_operations.wait,
                project=self.project,
                zone=zone,
                operation=name,
            )
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            raise _OperationFailed(
                [str(e.code) for e in errors],
                "; ".join(str(e.message) for e in errors),
                int(operation.http_error_status_code or 0),
            )

    def _insert(self, spec: LaunchSpec, *, zone: str, spot: bool) -> Instance:
        body = self.compute.Instance(self._body(spec, zone, spot))
        request_id = str(uuid.uuid4())  # the same on retries: one VM however often we ask
        doing = f"launching {spec.instance_type} in {zone}"
        try:
            with self._errors(doing):
                operation = self._call(
                    "instances.insert",
                    self.instances_client.insert,
                    request={
                        "project": self.project,
                        "zone": zone,
                        "instance_resource": body,
                        "request_id": request_id,
                    },
                )
                self._wait(zone, operation, doing)
        except _OperationFailed as failed:
            # A late failure can leave a half-made VM (and its disk) behind: delete it.
            self._delete_leftover(spec.name, zone)
            if any(code in CAPACITY_ERRORS for code in failed.codes):
                raise CapacityError(",".join(failed.codes)) from failed
            raise self._cloud_error(doing, failed) from failed
        except CloudError:
            self._delete_leftover(spec.name, zone)
            raise
        with self._errors(f"reading {spec.name}"):
            created = self._call(
                "instances.get",
                self.instances_client.get,
                project=self.project,
                zone=zone,
                instance=spec.name,
            )
        return self._instance(created)

    def _delete_leftover(self, name: str, zone: str) -> None:
        from google.api_core import exceptions

        try:
            self._call(
                "instances.get",
                self.instances_client.get,
                project=self.project,
                zone=zone,
                instance=name,
            )
        except exceptions.NotFound:
            return
        except exceptions.GoogleAPICallError as exc:
            log.warning("could not check for a leftover %s in %s: %s", name, zone, exc)
            return
        log.warning("%s: deleting the VM a failed insert left in %s", name, zone)
        self._delete(f"{zone}/{name}")

    # -- finding and deleting ------------------------------------------------------------

    def instances(self, *, name: str | None = None, gone: bool = False) -> list[Instance]:
        """cml-nb's VMs in the region (deleted VMs are gone at once: ``gone`` adds none)."""
        label = f'labels.{LABEL_RUNNER} = "{name}"' if name else f"labels.{LABEL_RUNNER}:*"
        found: list[Instance] = []
        with self._errors("listing runner instances"):
            pages = self._call(
                "instances.aggregatedList",
                self.instances_client.aggregated_list,
                request={"project": self.project, "filter": label},
            )
            for scope, listed in pages:
                zone = _short(scope)
                if not zone.startswith(self.region + "-"):
                    continue
                found.extend(self._instance(i) for i in listed.instances)
        return sorted(found, key=lambda i: i.launch_time)

    def _instance(self, data: Any) -> Instance:
        metadata = {item.key: item.value for item in data.metadata.items}
        tags = dict(data.labels)
        tags.update(
            {
                "cml-nb:" + key.removeprefix(_META_PREFIX): value
                for key, value in metadata.items()
                if key.startswith(_META_PREFIX)
            }
        )
        zone = _short(data.zone)
        created = datetime.fromisoformat(data.creation_timestamp.replace("Z", "+00:00"))
        return Instance(
            id=f"{zone}/{data.name}",
            name=tags.get(TAG_RUNNER) or data.labels.get(LABEL_RUNNER, data.name),
            state=str(data.status).lower(),
            instance_type=_short(data.machine_type)
            + "".join(
                f"+{_short(a.accelerator_type)}:{a.accelerator_count}"
                for a in data.guest_accelerators
            ),
            launch_time=created.astimezone(timezone.utc),
            zone=zone,
            spot=data.scheduling.provisioning_model == "SPOT",
            tags=tags,
        )

    def _delete(self, instance_id: str) -> Any:
        from google.api_core import exceptions

        zone, _, name = instance_id.partition("/")
        try:
            return self._call(
                "instances.delete",
                self.instances_client.delete,
                request={
                    "project": self.project,
                    "zone": zone,
                    "instance": name,
                    "request_id": str(uuid.uuid4()),
                },
            )
        except exceptions.NotFound:
            return None

    def terminate(self, instance_ids: Iterable[str]) -> list[str]:
        """Delete these VMs (``zone/name``), with their boot disks; returns their ids."""
        ids = sorted(set(instance_ids))
        with self._errors(f"deleting {', '.join(ids)}"):
            started = [(i, self._delete(i)) for i in ids]
            for instance_id, operation in started:
                if operation is not None:
                    try:
                        self._wait(instance_id.partition("/")[0], operation, "deleting")
                    except _OperationFailed as failed:
                        raise self._cloud_error(f"deleting {instance_id}", failed) from failed
        return ids

    def wait_running(self, instance_id: str, timeout_s: float) -> None:
        """Wait until the VM is RUNNING (``CloudError`` on timeout or when it is gone)."""
        from google.api_core import exceptions

        zone, _, name = instance_id.partition("/")
        deadline = time.monotonic() + timeout_s
        status = "unknown"
        with self._errors(f"waiting for {instance_id} to run"):
            while True:
                try:
                    status = self._call(
                        "instances.get",
                        self.instances_client.get,
                        project=self.project,
                        zone=zone,
                        instance=name,
                    ).status
                except exceptions.NotFound:
                    status = "deleted"
                if status == "RUNNING":
                    return
                if status in {"deleted", "TERMINATED", "STOPPED", "STOPPING"}:
                    break
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        raise CloudError(
            f"{instance_id} did not reach RUNNING within {timeout_s:.0f} s (it is {status}): "
            f"it was deleted; read its serial console ({self.boot_log_hint})"
        )


class _OperationFailed(Exception):
    """A zone operation ended in error (internal: mapped to capacity or ``CloudError``)."""

    def __init__(self, codes: list[str], message: str, status: int) -> None:
        super().__init__(message)
        self.codes, self.message, self.code = codes, message, status
        self.errors = [{"code": code} for code in codes]
