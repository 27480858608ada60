"""``cml-nb -vv runner launch`` logs no registration secret, in any encoding.

boto3 sends the user-data base64-encoded (and URL-encoded in the request body), and
botocore's debug log prints both: the test launches for real against moto and the
forge emulator, then looks for the secret plainly, in every base64 run of the log
(at every alignment), and URL-decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import sys
from typing import Any
from urllib.parse import unquote

import pytest
from runner_fixtures import (
    Aws,
    aws_fixture,  # noqa: F401 (a fixture)
    moto_endpoint,  # noqa: F401 (a fixture)
)
from test_runner_aws import fake_token

from cml_nb.runner.script import secret_forms

REPO = "octo/gpu"


def _decoded_runs(text: str) -> list[bytes]:
    """Every run of base64 characters in ``text``, decoded at each of its 4 offsets."""
    found = []
    for run in re.findall(r"[A-Za-z0-9+/]{16,}", text):
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            try:
                found.append(base64.b64decode(chunk, validate=True))
            except (binascii.Error, ValueError):
                continue
    return found


def _assert_hidden(log: str, secret: str) -> None:
    for text in (log, unquote(log)):
        assert secret not in text
        for decoded in _decoded_runs(text):
            # A masked run may keep a byte or two at its edges, never the secret.
            assert secret.encode()[2:-2] not in decoded


@pytest.mark.parametrize("single", [False, True], ids=["registration-token", "jit-config"])
def test_debug_log_of_a_launch_shows_no_registration_secret(
    aws: Aws, forge_emulator: Any, single: bool
) -> None:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "octo")
    forge_emulator.state.add_repo("github", REPO)
    ((key, value),) = aws.tag.items()
    args = ["-vv", "runner", "launch", "--forge", "github", "--repo", REPO, "--gpu", "a10g",
            "--ami", aws.ami(), "--labels", "cml-gpu", "--tag", f"{key}={value}",
            "--register-timeout", "0", *(["--single"] if single else [])]  # fmt: skip
    env = {**os.environ, **aws.env(), "GITHUB_API_URL": forge_emulator.github_api}
    env["GITHUB_TOKEN"] = token
    result = subprocess.run(
        [sys.executable, "-c", "from cml_nb.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "RunInstances" in result.stderr  # botocore's debug log is on
        secrets = []
        for exchange in forge_emulator.requests("POST", "/actions/runners/"):
            data = json.loads(exchange.response or b"{}")
            secrets += [str(v) for k, v in data.items() if k in ("token", "encoded_jit_config")]
        assert secrets, "the launch got no registration secret"
        for secret in secrets:
            _assert_hidden(result.stderr + result.stdout, secret)
        assert "#!/bin/bash" not in result.stderr
    finally:
        for instance in aws.live():
            aws.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])


def test_secret_forms_cover_every_alignment_inside_base64() -> None:
    secret = "AAGH7REGISTRATIONxTOKENx12345678"
    forms = secret_forms(secret)
    for prefix in ("", "a", "ab", "abc", "#!/bin/bash\nREGISTRATION="):
        encoded = base64.b64encode((prefix + secret + "\nrest").encode()).decode()
        assert any(form in encoded for form in forms), prefix
