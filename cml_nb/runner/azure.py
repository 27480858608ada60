"""Azure runners through the azure-mgmt SDKs: launch tagged VMs, find them, delete them.

A runner is one ``virtualMachines`` PUT that creates everything at once: the VM (tagged
with the ``cml-nb:*`` tags), its NIC and public IP (VM-managed network interface
configurations, ``networkApiVersion 2020-11-01``) and its OS disk, each with
``deleteOption: Delete``, so deleting the VM, or Azure evicting a Spot VM (eviction
policy Delete), deletes all four. The VMs share one virtual network per resource group
(``cml-nb-runners``, created on first use; networks cost nothing). The startup script
travels as ``customData``, which the instance metadata service does not serve. Linux
VMs need an SSH key: each gets a fresh public key whose private half is never kept.

Azure has no maximum run time for a VM, so the lifetime guards are the startup
script's and ``cleanup``'s. Credentials come from ``DefaultAzureCredential``
(``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET``, OIDC federation in
GitHub Actions, managed identity); ``CML_NB_AZURE_ENDPOINT`` and ``AZURE_AUTHORITY_HOST``
point the SDKs elsewhere.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

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
from cml_nb.secrets import Scrubber

log = logging.getLogger(__name__)

#: Error codes that mean "not in this zone or market now": try the next one.
CAPACITY_ERRORS = frozenset(
    {
        "SkuNotAvailable",
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
    }
)
#: Quota codes: the subscription's vCPU family quota; other zones will not help.
QUOTA_ERRORS = frozenset({"OperationNotAllowed", "QuotaExceeded"})

#: Default images (URNs): Microsoft's Ubuntu HPC image has the NVIDIA driver and CUDA.
DEFAULT_IMAGES = {
    ("gpu", "x86_64"): "microsoft-dsvm:ubuntu-hpc:2204:latest",
    ("cpu", "x86_64"): "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest",
    ("cpu", "arm64"): "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-arm64:latest",
}
#: Microsoft's own Entra ID hosts: instance discovery works there, not on others.
_MICROSOFT_AUTHORITIES = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"}
)
NETWORK = "cml-nb-runners"
ADMIN_USER = "cmlnb"
_NAME = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,62}[a-zA-Z0-9])?")


def _capabilities(sku: Any) -> dict[str, str]:
    return {str(c.name): str(c.value) for c in (sku.capabilities or [])}


def _throwaway_ssh_key() -> str:
    """An OpenSSH public key nobody holds the private half of (Linux VMs need one)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


class AzureVms:
    """The Azure side of runners in one location, subscription and resource group.

    Args:
        location: the Azure location (``--region``), e.g. ``westeurope``.
        subscription: the subscription id (default ``AZURE_SUBSCRIPTION_ID``).
        resource_group: where the VMs go (default ``AZURE_DEFAULTS_GROUP``); it must exist.
        credential: an azure-identity credential (default ``DefaultAzureCredential``).
        max_attempts: attempts per request under 429s and 5xx answers (azure-core's
            retry policy, honouring ``Retry-After``).
        scrubber: masks secrets in error messages.
    """

    name = "azure"

    @classmethod
    def from_options(cls, region: str | None, **options: Any) -> AzureVms:
        """From ``--region``, ``--subscription`` and ``--resource-group`` (or the environment)."""
        refuse_options("azure", options, ("subscription", "resource_group"))
        location = region or os.environ.get("AZURE_DEFAULTS_LOCATION")
        if not location:
            raise ConfigError(
                "no Azure location: pass --region (e.g. westeurope) or export "
                "AZURE_DEFAULTS_LOCATION"
            )
        return cls(
            location,
            subscription=options.get("subscription"),
            resource_group=options.get("resource_group"),
        )

    def __init__(
        self,
        location: str,
        *,
        subscription: str | None = None,
        resource_group: str | None = None,
        credential: Any = None,
        max_attempts: int = 6,
        scrubber: Scrubber | None = None,
    ) -> None:
        try:
            from azure.identity import DefaultAzureCredential
            from azure.mgmt.compute import ComputeManagementClient
            from azure.mgmt.network import NetworkManagementClient
            from azure.mgmt.resource.resources import ResourceManagementClient
        except ImportError as exc:
            raise MissingDependencyError("Azure runners", "azure", "azure-mgmt-compute") from exc
        self.region = location.lower().replace(" ", "")
        self.scrubber = scrubber or Scrubber()
        subscription = subscription or os.environ.get("AZURE_SUBSCRIPTION_ID")
        if not subscription:
            raise ConfigError(
                "no Azure subscription: pass --subscription or export AZURE_SUBSCRIPTION_ID"
            )
        group = resource_group or os.environ.get("AZURE_DEFAULTS_GROUP")
        if not group:
            raise ConfigError(
                "no Azure resource group: pass --resource-group (create one with "
                "'az group create') or export AZURE_DEFAULTS_GROUP"
            )
        self.subscription, self.resource_group = subscription, group
        if credential is None:
            authority = os.environ.get("AZURE_AUTHORITY_HOST", "")
            host = re.sub(r"^https?://", "", authority).split("/")[0].split(":")[0]
            # Instance discovery asks login.microsoftonline.com about the authority; a
            # private cloud's own authority (AZURE_AUTHORITY_HOST) is not listed there.
            credential = DefaultAzureCredential(
                exclude_interactive_browser_credential=True,
                disable_instance_discovery=bool(host) and host not in _MICROSOFT_AUTHORITIES,
            )
        endpoint = os.environ.get("CML_NB_AZURE_ENDPOINT") or None
        options: dict[str, Any] = {"retry_total": max_attempts - 1, "polling_interval": 5}
        self.compute = ComputeManagementClient(credential, subscription, endpoint, **options)
        self.network = NetworkManagementClient(credential, subscription, endpoint, **options)
        self.resources = ResourceManagementClient(credential, subscription, endpoint, **options)
        self.boot_log_hint = (
            f"az vm boot-diagnostics get-boot-log --resource-group {group} --name NAME"
        )
        self._skus: dict[str, Any] | None = None

    # -- errors ----------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn azure-core's exceptions into one-line ``CloudError``s."""
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        try:
            yield
        except ClientAuthenticationError as exc:
            raise CloudError(
                self.scrubber.scrub(
                    f"{doing}: no usable Azure credentials ({str(exc).splitlines()[0]}): set "
                    "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET, or sign in with "
                    "OIDC (in GitHub Actions, azure/login), or 'az login'"
                )
            ) from exc
        except HttpResponseError as exc:
            raise self._cloud_error(doing, exc) from exc
        except AzureError as exc:
            raise CloudError(self.scrubber.scrub(f"{doing}: {exc} (check the network)")) from exc

    @staticmethod
    def _code(exc: Any) -> str:
        error = getattr(exc, "error", None)
        return str(getattr(error, "code", "") or "")

    def _cloud_error(self, doing: str, exc: Any) -> CloudError:
        code = self._code(exc)
        status = int(getattr(exc, "status_code", 0) or 0)
        message = str(getattr(getattr(exc, "error", None), "message", "") or exc.message)
        hint = "see the Azure message"
        if status in {401, 403} or code in {"AuthorizationFailed", "InvalidAuthenticationToken"}:
            hint = (
                "the identity lacks permissions: give it the Virtual Machine Contributor and "
                "Network Contributor roles on the resource group (see docs/runners.md)"
            )
        elif code in QUOTA_ERRORS:
            hint = (
                "the subscription's vCPU quota for this VM family is reached: request more in "
                "the portal (Quotas > Compute), or try another --region or size"
            )
        elif code in CAPACITY_ERRORS:
            hint = "no capacity: try another --region or size, or --spot-fallback"
        elif status == 429:
            hint = "Azure kept throttling after every retry: try again in a few minutes"
        elif code == "ResourceGroupNotFound":
            hint = f"create it ('az group create --name {self.resource_group}') or pass another"
        return CloudError(
            self.scrubber.scrub(f"{doing}: {code or status}: {message.splitlines()[0]} ({hint})")
        )

    # -- sizes and images ------------------------------------------------------------------

    def check_name(self, name: str) -> None:
        """Linux VM names: letters, digits and hyphens, 1 to 64, no hyphen at either end."""
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"runner name {name!r} is not a valid Azure VM name: use letters, digits and "
                "hyphens (at most 64, not starting or ending with a hyphen)"
            )

    def is_capacity_error(self, code: str) -> bool:
        """Azure's allocation and SKU availability codes (another zone or on demand may work)."""
        return code in CAPACITY_ERRORS

    def _sku(self, size: str) -> Any:
        if self._skus is None:
            with self._errors(f"listing the VM sizes of {self.region}"):
                listed = self.compute.resource_skus.list(filter=f"location eq '{self.region}'")
                self._skus = {
                    str(s.name).lower(): s
                    for s in listed
                    if str(getattr(s.resource_type, "value", s.resource_type)) == "virtualMachines"
                }
        sku = self._skus.get(size.lower())
        restricted = any(
            str(getattr(r.type, "value", r.type)) == "Location"
            and str(getattr(r.reason_code, "value", r.reason_code)) == "NotAvailableForSubscription"
            for r in ((sku.restrictions or []) if sku is not None else [])
        )
        if sku is None or restricted:
            raise ConfigError(
                f"unknown VM size {size!r} in {self.region}"
                + (" (not available to this subscription)" if restricted else "")
                + ": check the spelling, choose another --region, or use --size/--gpu "
                "(see docs/runners.md)"
            )
        return sku

    def describe_instance_type(self, instance_type: str) -> InstanceTypeInfo:
        """GPUs and architecture of a VM size, from the location's resource SKUs."""
        sku = self._sku(instance_type)
        capabilities = _capabilities(sku)
        gpus = int(float(capabilities.get("GPUs", "0") or 0))
        return InstanceTypeInfo(
            name=str(sku.name),
            gpus=gpus,
            gpu_name=str(sku.family or "") if gpus else "",
            architecture="arm64"
            if capabilities.get("CpuArchitectureType") == "Arm64"
            else "x86_64",
        )

    def zones_offering(self, instance_type: str) -> list[str]:
        """Availability zones with the size ("" for a location without zones for it)."""
        sku = self._sku(instance_type)
        zones: set[str] = set()
        for info in sku.location_info or []:
            zones |= {str(z) for z in (info.zones or [])}
        for restriction in sku.restrictions or []:
            kind = str(getattr(restriction.type, "value", restriction.type))
            if kind == "Zone" and restriction.restriction_info is not None:
                zones -= {str(z) for z in (restriction.restriction_info.zones or [])}
        return sorted(zones) or [""]

    def default_ami(self, info: InstanceTypeInfo) -> str:
        """The image URN for the size: Ubuntu HPC (NVIDIA driver) for GPUs."""
        key = ("gpu" if info.gpus else "cpu", info.architecture)
        if key not in DEFAULT_IMAGES:
            raise ConfigError(f"no default image for {info.name}: pass --image")
        return DEFAULT_IMAGES[key]

    def _image(self, ami: str) -> tuple[dict[str, str], Any]:
        parts = ami.split(":")
        if len(parts) != 4 or not all(parts):
            raise ConfigError(
                f"--image {ami!r} is not an Azure image URN: use publisher:offer:sku:version, "
                "e.g. microsoft-dsvm:ubuntu-hpc:2204:latest"
            )
        from azure.core.exceptions import ResourceNotFoundError

        publisher, offer, sku, version = parts
        images = self.compute.virtual_machine_images
        try:
            with self._errors(f"checking image {ami}"):
                if version == "latest":
                    versions = images.list(
                        self.region, publisher, offer, sku, top=1, orderby="name desc"
                    )
                    if not versions:
                        raise ResourceNotFoundError("no versions")
                    version = str(versions[0].name)
                found = images.get(self.region, publisher, offer, sku, version)
        except (ResourceNotFoundError, CloudError) as exc:
            cause = exc if isinstance(exc, ResourceNotFoundError) else exc.__cause__
            if isinstance(cause, ResourceNotFoundError):
                raise ConfigError(
                    f"image {ami} does not exist in {self.region}: pass another --image"
                ) from exc
            raise
        reference = {"publisher": publisher, "offer": offer, "sku": sku, "version": version}
        return reference, found

    def check_image(self, ami: str, info: InstanceTypeInfo) -> None:
        """Fail early when the image is missing or built for another architecture."""
        _, found = self._image(ami)
        raw = getattr(found.properties, "architecture", None) or "x64"
        architecture = str(getattr(raw, "value", raw))
        wanted = "Arm64" if info.architecture == "arm64" else "x64"
        if architecture.lower() != wanted.lower():
            raise ConfigError(
                f"image {ami} is for {architecture} but {info.name} runs {info.architecture}: "
                "pass a matching --image or another size"
            )

    # -- launching -------------------------------------------------------------------------

    def _subnet(self, spec: LaunchSpec) -> str:
        if spec.subnet:
            return spec.subnet
        body: Any = {  # JSON in ARM's shape (the SDK takes it as is)
            "location": self.region,
            "tags": {"cml-nb:network": "runners"},
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.231.0.0/16"]},
                "subnets": [{"name": "runners", "properties": {"addressPrefix": "10.231.0.0/20"}}],
            },
        }
        from azure.core.exceptions import ResourceNotFoundError

        network: Any
        with self._errors(f"preparing the network {NETWORK}"):
            try:
                network = self.network.virtual_networks.get(self.resource_group, NETWORK)
            except ResourceNotFoundError:
                network = self.network.virtual_networks.begin_create_or_update(
                    self.resource_group, NETWORK, body
                ).result()
        return str(network.properties.subnets[0].id)

    def launch(self, spec: LaunchSpec) -> Instance:
        """Create one tagged VM (with its NIC, IP and disk), trying each zone, then regular.

        Raises:
            ConfigError: an option Azure does not have.
            CloudError: no zone had capacity, a quota is reached, or Azure refused.
        """
        if spec.security_groups:
            raise ConfigError("--security-group is an AWS option: drop it (Azure: use --subnet)")
        with self._errors(f"checking resource group {self.resource_group}"):
            if not self.resources.resource_groups.check_existence(self.resource_group):
                raise ConfigError(
                    f"resource group {self.resource_group} does not exist: create it with "
                    f"'az group create --name {self.resource_group} --location {self.region}'"
                )
        zones = self.zones_offering(spec.instance_type)
        subnet = self._subnet(spec)
        reference, _ = self._image(spec.ami)
        return launch_first_fit(
            spec,
            zones,
            lambda zone, spot: self._create(
                spec, zone=zone, spot=spot, subnet=subnet, image=reference
            ),
            region=self.region,
            where=lambda zone: f"zone {zone}" if zone else self.region,
            markets=("spot", "regular"),
            hint="try another --region or size",
        )

    def _body(
        self, spec: LaunchSpec, zone: str, spot: bool, subnet: str, image: dict[str, str]
    ) -> dict[str, Any]:
        ip_configuration = {
            "name": "ipconfig",
            "properties": {
                "subnet": {"id": subnet},
                "publicIPAddressConfiguration": {
                    "name": f"{spec.name}-ip",
                    "sku": {"name": "Standard"},  # closed to inbound traffic without an NSG
                    "properties": {"deleteOption": "Delete", "publicIPAllocationMethod": "Static"},
                },
            },
        }
        properties: dict[str, Any] = {
            "hardwareProfile": {"vmSize": spec.instance_type},
            "storageProfile": {
                "imageReference": image,
                "osDisk": {
                    "name": f"{spec.name}-disk",
                    "createOption": "FromImage",
                    "deleteOption": "Delete",
                    "diskSizeGB": spec.disk_gb,
                    "managedDisk": {"storageAccountType": "StandardSSD_LRS"},
                },
            },
            "osProfile": {
                "computerName": spec.name,
                "adminUsername": ADMIN_USER,
                # customData, unlike userData, is not served by the metadata service.
                "customData": base64.b64encode(spec.user_data.encode()).decode(),
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {
                        "publicKeys": [
                            {
                                "path": f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                                "keyData": _throwaway_ssh_key(),
                            }
                        ]
                    },
                },
            },
            "networkProfile": {
                "networkApiVersion": "2020-11-01",
                "networkInterfaceConfigurations": [
                    {
                        "name": f"{spec.name}-nic",
                        "properties": {
                            "primary": True,
                            "deleteOption": "Delete",
                            "ipConfigurations": [ip_configuration],
                        },
                    }
                ],
            },
            "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
            "priority": "Spot" if spot else "Regular",
        }
        if spot:
            # Evicted Spot VMs are deleted (with what has deleteOption Delete), not kept.
            properties["evictionPolicy"] = "Delete"
            properties["billingProfile"] = {
                "maxPrice": float(spec.spot_price) if spec.spot_price else -1
            }
        body: dict[str, Any] = {
            "location": self.region,
            "tags": dict(spec.tags),
            "properties": properties,
        }
        if zone:
            body["zones"] = [zone]
        return body

    def _create(
        self, spec: LaunchSpec, *, zone: str, spot: bool, subnet: str, image: dict[str, str]
    ) -> Instance:
        from azure.core.exceptions import HttpResponseError

        body: Any = self._body(spec, zone, spot, subnet, image)
        doing = f"launching {spec.instance_type}" + (f" in zone {zone}" if zone else "")
        try:
            poller = self.compute.virtual_machines.begin_create_or_update(
                self.resource_group, spec.name, body
            )
            created = poller.result()
        except HttpResponseError as exc:
            # A late failure leaves the VM in Failed state with its NIC, IP and disk.
            self._delete_leftover(spec.name)
            if self._code(exc) in CAPACITY_ERRORS:
                raise CapacityError(self._code(exc)) from exc
            with self._errors(doing):
                raise
        except BaseException:
            self._delete_leftover(spec.name)
            raise
        return self._instance(created)

    def _delete_leftover(self, name: str) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self.compute.virtual_machines.get(self.resource_group, name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            log.warning("could not check for a leftover VM %s: %s", name, exc)
            return
        log.warning("%s: deleting the VM a failed create left behind", name)
        with self._errors(f"deleting {name}"):
            self.compute.virtual_machines.begin_delete(self.resource_group, name).result()

    # -- finding and deleting --------------------------------------------------------------

    def instances(self, *, name: str | None = None, gone: bool = False) -> list[Instance]:
        """cml-nb's VMs in the resource group and location (deleted VMs are gone at once)."""
        found: list[Instance] = []
        with self._errors("listing runner instances"):
            for vm in self.compute.virtual_machines.list(self.resource_group):
                tags = dict(vm.tags or {})
                if TAG_RUNNER not in tags or str(vm.location).lower() != self.region:
                    continue
                if name is None or tags[TAG_RUNNER] == name:
                    found.append(self._instance(vm))
        return sorted(found, key=lambda i: i.launch_time)

    def _instance(self, vm: Any) -> Instance:
        tags = dict(vm.tags or {})
        properties = vm.properties
        created = properties.time_created or datetime.now(timezone.utc)
        return Instance(
            id=str(vm.name),
            name=tags.get(TAG_RUNNER, str(vm.name)),
            state=str(properties.provisioning_state or "unknown").lower(),  # a plain string
            instance_type=str(properties.hardware_profile.vm_size),
            launch_time=created.astimezone(timezone.utc),
            zone=(vm.zones or [""])[0],
            spot=str(getattr(properties.priority, "value", properties.priority)) == "Spot",
            tags=tags,
        )

    def terminate(self, instance_ids: Iterable[str]) -> list[str]:
        """Delete these VMs with their NICs, IPs and disks (``deleteOption``); their names."""
        from azure.core.exceptions import ResourceNotFoundError

        ids = sorted(set(instance_ids))
        with self._errors(f"deleting {', '.join(ids)}"):
            pollers = []
            for name in ids:
                try:
                    pollers.append(
                        self.compute.virtual_machines.begin_delete(self.resource_group, name)
                    )
                except ResourceNotFoundError:
                    continue
            for poller in pollers:
                poller.result()
        return ids

    def wait_running(self, instance_id: str, timeout_s: float) -> None:
        """Check the VM's power state (the create call returns once Azure started it)."""
        with self._errors(f"reading {instance_id}"):
            view = self.compute.virtual_machines.instance_view(self.resource_group, instance_id)
        codes = [str(s.code) for s in (view.statuses or [])]
        if "PowerState/running" not in codes:
            raise CloudError(
                f"{instance_id} is not running ({', '.join(codes) or 'no status'}): it was "
                f"deleted; read its boot log ({self.boot_log_hint})"
            )
