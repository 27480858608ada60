"""Fixtures for runner tests: moto's EC2 in server mode on 127.0.0.1, fault hooks.

moto validates instance types and AMIs here (``MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION``
and ``MOTO_ENABLE_AMI_VALIDATION``), so a typo fails as it would on AWS. Faults are
injected the way botocore lets any caller do it: ``before-send`` handlers that
answer in AWS's own error format, and ``after-call`` handlers that fail once the
request has taken effect. Every test tags its instances with a fresh
``cml-nb-test`` value, and teardown asserts that none of them is left alive.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

# moto reads these once, when its settings module is imported.
os.environ["MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION"] = "true"
os.environ["MOTO_ENABLE_AMI_VALIDATION"] = "true"

import boto3  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402

REGION = "us-west-2"
LIVE = ["pending", "running", "stopping", "stopped"]
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free port of 127.0.0.1, for the whole session."""
    from moto import settings
    from moto.server import ThreadedMotoServer

    settings.EC2_ENABLE_INSTANCE_TYPE_VALIDATION = True
    settings.ENABLE_AMI_VALIDATION = True
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


def aws_error(code: str, status: int = 400, message: str = "injected") -> AWSResponse:
    """A response in EC2's error format, as AWS sends it."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
    ).encode()
    return AWSResponse("https://ec2.amazonaws.com/", status, {}, _Raw(body))


@dataclass
class Aws:
    """One test's view of moto: a session with hooks, its tag, and checks."""

    endpoint: str
    session: Any
    tag: dict[str, str]
    calls: list[str] = field(default_factory=list)

    @property
    def ec2(self) -> Any:
        return self.session.client("ec2", region_name=REGION, endpoint_url=self.endpoint)

    def ami(self) -> str:
        images = self.ec2.describe_images(
            Filters=[{"Name": "name", "Values": ["Deep Learning AMI Ubuntu*"]}]
        )["Images"]
        return str(images[0]["ImageId"])

    def live(self) -> list[dict[str, Any]]:
        """This test's instances that still cost money."""
        ((key, value),) = self.tag.items()
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": f"tag:{key}", "Values": [value]},
                {"Name": "instance-state-name", "Values": LIVE},
            ]
        )
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def all(self) -> list[dict[str, Any]]:
        """This test's instances in every state."""
        ((key, value),) = self.tag.items()
        reservations = self.ec2.describe_instances(
            Filters=[{"Name": f"tag:{key}", "Values": [value]}]
        )["Reservations"]
        return [i for r in reservations for i in r["Instances"]]

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Register a botocore event handler on this test's session."""
        self.session.events.register(event, handler)

    def env(self) -> dict[str, str]:
        """Environment for a cml-nb subprocess that talks to this moto."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": REGION,
        }


@pytest.fixture(name="aws")
def aws_fixture(moto_endpoint: str) -> Iterator[Aws]:
    """A fresh boto3 session against moto; asserts at teardown that nothing leaked."""
    session = boto3.Session(region_name=REGION, **FAKE_CREDENTIALS)
    view = Aws(moto_endpoint, session, {"cml-nb-test": uuid.uuid4().hex})
    yield view
    clean = boto3.Session(region_name=REGION, **FAKE_CREDENTIALS)
    leaked = Aws(moto_endpoint, clean, view.tag).live()
    assert not leaked, f"instances left running: {[i['InstanceId'] for i in leaked]}"
