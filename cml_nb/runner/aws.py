"""EC2 runners through boto3: launch tagged instances, find them, terminate them.

Every instance is tagged at creation, in the RunInstances call itself, so there is
no moment when cml-nb owns an untagged machine. Instances shut down by their own
idle watcher terminate (``InstanceInitiatedShutdownBehavior=terminate``). Throttling
is retried by botocore's "standard" retry mode with exponential backoff; capacity
errors are retried in the region's other availability zones, then, with
``spot_fallback``, on demand.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cml_nb.errors import CloudError, ConfigError, MissingDependencyError
from cml_nb.runner.clouds import (
    TAG_EXPIRES,
    TAG_FORGE,
    TAG_LABELS,
    TAG_REPOSITORY,
    TAG_RUNNER,
    CapacityError,
    Instance,
    InstanceTypeInfo,
    LaunchSpec,
    launch_first_fit,
    refuse_options,
)
from cml_nb.secrets import Scrubber

__all__ = [
    "TAG_EXPIRES",
    "TAG_FORGE",
    "TAG_LABELS",
    "TAG_REPOSITORY",
    "TAG_RUNNER",
    "Ec2",
    "Instance",
    "InstanceTypeInfo",
    "LaunchSpec",
]

log = logging.getLogger(__name__)

#: States in which an instance costs money and may need cleaning up.
LIVE_STATES = ("pending", "running", "stopping", "stopped")

#: Errors that mean "not here, not now": try another zone (or on demand).
CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",
    }
)

#: Throttling codes EC2 uses (the same set botocore's standard retry mode backs off on).
THROTTLING_ERRORS = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "EC2ThrottledException"}
)

#: SSM public parameters naming current images (GPU: NVIDIA driver preinstalled).
DEFAULT_AMI_PARAMETERS = {
    ("gpu", "x86_64"): "/aws/service/deeplearning/ami/x86_64/"
    "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    ("gpu", "arm64"): "/aws/service/deeplearning/ami/arm64/"
    "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    ("cpu", "x86_64"): "/aws/service/canonical/ubuntu/server/22.04/stable/current/"
    "amd64/hvm/ebs-gp2/ami-id",
    ("cpu", "arm64"): "/aws/service/canonical/ubuntu/server/22.04/stable/current/"
    "arm64/hvm/ebs-gp2/ami-id",
}


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class Ec2:
    """The EC2 side of runners in one region.

    Args:
        region: the AWS region, e.g. ``us-west-2``.
        session: a ``boto3.Session`` (default: a new one from the environment); tests
            register botocore event hooks on it to inject faults.
        endpoint_url: another EC2 endpoint (moto, LocalStack); also read by boto3
            from ``AWS_ENDPOINT_URL``.
        max_attempts: attempts per request under throttling and transient faults.
        scrubber: masks secrets in error messages.
    """

    name = "aws"
    boot_log_hint = "EC2 console: Monitor and troubleshoot > Get system log"

    @classmethod
    def from_options(cls, region: str | None, **options: Any) -> Ec2:
        """From ``--region`` (default ``AWS_REGION``/``AWS_DEFAULT_REGION``)."""
        import os

        refuse_options("aws", options, ())
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise ConfigError("no AWS region: pass --region (e.g. us-west-2) or export AWS_REGION")
        return cls(region)

    def __init__(
        self,
        region: str,
        *,
        session: Any = None,
        endpoint_url: str | None = None,
        max_attempts: int = 8,
        scrubber: Scrubber | None = None,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - boto3 is a dependency
            raise MissingDependencyError("AWS runners", "aws", "boto3") from exc
        self.region = region
        self.scrubber = scrubber or Scrubber()
        self.session = session or boto3.Session()
        config = Config(
            region_name=region,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            user_agent_extra="cml-nb",
        )
        self.ec2 = self.session.client("ec2", config=config, endpoint_url=endpoint_url)
        # RunInstances gets no automatic retries: AWS answers "no capacity" with HTTP 500,
        # which botocore would retry in the same zone; ``launch`` moves on instead, and
        # retries throttling itself with the same ClientToken.
        self._launcher = self.session.client(
            "ec2",
            config=config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1})),
            endpoint_url=endpoint_url,
        )
        self.max_attempts = max_attempts
        self.ssm = self.session.client("ssm", config=config, endpoint_url=endpoint_url)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn botocore's exceptions into one-line ``CloudError``s."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError as exc:
            raise CloudError(
                f"{doing}: no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (in CI, use OIDC: aws-actions/configure-aws-credentials)"
            ) from exc
        except ClientError as exc:
            raise self._client_error(doing, exc) from exc
        except BotoCoreError as exc:
            raise CloudError(
                self.scrubber.scrub(f"{doing}: {exc} (check the network and AWS_REGION)")
            ) from exc

    def _client_error(self, doing: str, exc: Exception) -> CloudError:
        code = _error_code(exc)
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", exc))
        hint = "see the AWS message"
        if code in {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId"}:
            hint = "the AWS credentials lack EC2 permissions: see docs/runners.md for the policy"
        elif code.startswith("InvalidAMIID"):
            hint = f"the AMI does not exist in {self.region}: pass --ami with an image there"
        elif code in {"RequestLimitExceeded", "Throttling", "ThrottlingException"}:
            hint = "AWS kept throttling after every retry: try again in a few minutes"
        elif code in CAPACITY_ERRORS:
            hint = "no capacity: try another --region or --instance-type, or --spot-fallback"
        elif code in {"VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded"}:
            hint = "the account's vCPU quota is reached: request an increase in Service Quotas"
        return CloudError(self.scrubber.scrub(f"{doing}: {code}: {message} ({hint})"))

    # -- instance types and images -------------------------------------------------------

    def check_name(self, name: str) -> None:
        """Any name fits in an EC2 tag (up to 256 characters)."""
        if not name or len(name) > 256:
            raise ConfigError(f"runner name {name!r} must have 1 to 256 characters")

    def is_capacity_error(self, code: str) -> bool:
        """EC2's "not here, not now" codes (another zone or on demand may work)."""
        return code in CAPACITY_ERRORS

    def describe_instance_type(self, instance_type: str) -> InstanceTypeInfo:
        """GPU count and architecture of ``instance_type``; fails if AWS does not know it.

        Raises:
            ConfigError: the instance type does not exist.
            CloudError: AWS failed the request.
        """
        from botocore.exceptions import ClientError

        try:
            response = self.ec2.describe_instance_types(InstanceTypes=[instance_type])
        except ClientError as exc:
            if _error_code(exc).startswith("InvalidInstanceType"):
                raise ConfigError(
                    f"unknown instance type {instance_type!r}: check the spelling, or use "
                    "--size/--gpu (see docs/runners.md)"
                ) from exc
            raise self._client_error("checking the instance type", exc) from exc
        types = response.get("InstanceTypes", [])
        if not types:
            raise ConfigError(f"unknown instance type {instance_type!r}: check the spelling")
        data = types[0]
        gpus = data.get("GpuInfo", {}).get("Gpus", [])
        archs = data.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
        return InstanceTypeInfo(
            name=instance_type,
            gpus=sum(int(g.get("Count", 0)) for g in gpus),
            gpu_name=", ".join(str(g.get("Name", "")) for g in gpus),
            architecture="arm64" if "arm64" in archs else "x86_64",
        )

    def zones_offering(self, instance_type: str) -> list[str]:
        """Availability zones of the region that offer ``instance_type``."""
        with self._errors("listing availability zones"):
            response = self.ec2.describe_instance_type_offerings(
                LocationType="availability-zone",
                Filters=[{"Name": "instance-type", "Values": [instance_type]}],
            )
        zones = sorted({o["Location"] for o in response.get("InstanceTypeOfferings", [])})
        if not zones:
            raise ConfigError(
                f"{instance_type} is not offered in {self.region}: choose another --region "
                "or --instance-type"
            )
        return zones

    def check_image(self, ami: str, info: InstanceTypeInfo) -> None:
        """Fail early when the image is missing or built for another architecture."""
        with self._errors(f"checking image {ami}"):
            images = self.ec2.describe_images(ImageIds=[ami]).get("Images", [])
        if not images:
            raise ConfigError(f"image {ami} does not exist in {self.region}: pass another --ami")
        arch = images[0].get("Architecture", info.architecture)
        if arch != info.architecture:
            raise ConfigError(
                f"image {ami} is for {arch} but {info.name} runs {info.architecture}: "
                "pass a matching --ami or another instance type"
            )

    def default_ami(self, info: InstanceTypeInfo) -> str:
        """The current Ubuntu image for the type (with NVIDIA drivers when it has GPUs)."""
        from botocore.exceptions import ClientError

        name = DEFAULT_AMI_PARAMETERS[("gpu" if info.gpus else "cpu", info.architecture)]
        try:
            return str(self.ssm.get_parameter(Name=name)["Parameter"]["Value"])
        except ClientError as exc:
            raise CloudError(
                f"could not look up the default image ({name}: {_error_code(exc)}): "
                "pass --ami with an image id"
            ) from exc

    # -- launching -----------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> Instance:
        """Create one tagged instance, trying each zone, then on demand if allowed.

        Raises:
            CloudError: no zone had capacity, or AWS refused the request.
        """
        zones: list[str | None] = (
            [None] if spec.subnet else list(self.zones_offering(spec.instance_type))
        )
        return launch_first_fit(
            spec,
            zones,
            lambda zone, spot: self._run_instance(spec, zone=zone, spot=spot),
            region=self.region,
            where=lambda zone: zone or str(spec.subnet),
            markets=("spot", "on-demand"),
            hint="try another --region or --instance-type",
        )

    def _run_instance(self, spec: LaunchSpec, *, zone: str | None, spot: bool) -> Instance:
        from botocore.exceptions import ClientError

        tags = [{"Key": k, "Value": v} for k, v in spec.tags.items()]
        request: dict[str, Any] = {
            "ImageId": spec.ami,
            "InstanceType": spec.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": spec.user_data,
            "InstanceInitiatedShutdownBehavior": "terminate",
            # Same token on botocore's retries: a retried request never makes a second machine.
            "ClientToken": uuid.uuid4().hex,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/sda1",
                    "Ebs": {
                        "VolumeSize": spec.disk_gb,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
            # EC2's own guards for what the job can reach: IMDSv2 only, and a hop limit of 1
            # so a job's containers (one hop further) get no answer from the metadata service.
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 1,
                "InstanceMetadataTags": "disabled",
            },
        }
        if zone:
            request["Placement"] = {"AvailabilityZone": zone}
        if spec.subnet:
            request["SubnetId"] = spec.subnet
        if spec.security_groups:
            request["SecurityGroupIds"] = list(spec.security_groups)
        if spot:
            options: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if spec.spot_price:
                options["MaxPrice"] = spec.spot_price
            request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
        with self._errors(f"launching {spec.instance_type}"):
            for attempt in range(1, self.max_attempts + 1):
                try:
                    response = self._launcher.run_instances(**request)
                    break
                except ClientError as exc:
                    code = _error_code(exc)
                    if code in CAPACITY_ERRORS:
                        raise CapacityError(code) from exc
                    if code not in THROTTLING_ERRORS or attempt == self.max_attempts:
                        raise
                    # Full jitter: many launchers throttled together spread out.
                    delay = random.uniform(0, min(20.0, 0.5 * 2**attempt))
                    log.info("%s throttled (%s); retrying in %.1f s", spec.name, code, delay)
                    time.sleep(delay)
        return _instance(response["Instances"][0])

    # -- finding and terminating ---------------------------------------------------------

    def instances(self, *, name: str | None = None, gone: bool = False) -> list[Instance]:
        """Instances tagged by cml-nb (optionally one runner's); ``gone`` adds terminated ones."""
        states = (*LIVE_STATES, "shutting-down", "terminated") if gone else LIVE_STATES
        filters = [
            {"Name": f"tag:{TAG_RUNNER}", "Values": [name]}
            if name
            else {"Name": "tag-key", "Values": [TAG_RUNNER]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
        found: list[Instance] = []
        with self._errors("listing runner instances"):
            for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for reservation in page.get("Reservations", []):
                    found.extend(_instance(i) for i in reservation.get("Instances", []))
        return sorted(found, key=lambda i: i.launch_time)

    def terminate(self, instance_ids: Iterable[str]) -> list[str]:
        """Terminate these instances; returns their ids."""
        ids = sorted(set(instance_ids))
        if ids:
            with self._errors(f"terminating {', '.join(ids)}"):
                self.ec2.terminate_instances(InstanceIds=ids)
        return ids

    def wait_running(self, instance_id: str, timeout_s: float) -> None:
        """Wait until the instance runs (raises ``CloudError`` on timeout or failure)."""
        delay = 2 if timeout_s >= 10 else 1
        attempts = max(1, int(timeout_s // delay))
        with self._errors(f"waiting for {instance_id} to run"):
            waiter = self.ec2.get_waiter("instance_running")
            try:
                waiter.wait(
                    InstanceIds=[instance_id],
                    WaiterConfig={"Delay": delay, "MaxAttempts": attempts},
                )
            except Exception as exc:
                if type(exc).__name__ == "WaiterError":
                    raise CloudError(
                        f"{instance_id} did not reach 'running' within {timeout_s:.0f} s "
                        f"({exc}): it was terminated; check the AWS console's system log"
                    ) from exc
                raise


def _instance(data: Mapping[str, Any]) -> Instance:
    tags = {t["Key"]: t["Value"] for t in data.get("Tags", [])}
    return Instance(
        id=data["InstanceId"],
        name=tags.get(TAG_RUNNER) or tags.get("Name", ""),
        state=data.get("State", {}).get("Name", "unknown"),
        instance_type=data.get("InstanceType", ""),
        launch_time=data["LaunchTime"],
        zone=data.get("Placement", {}).get("AvailabilityZone", ""),
        spot=data.get("InstanceLifecycle") == "spot",
        tags=tags,
    )
