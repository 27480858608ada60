"""``cml-nb runner`` end to end: moto's EC2, the forge emulator, a killed launcher.

Also the token-leak checks for the runner path: the forge token and the runner
registration secret appear in no output of any command, not even on failures,
and the user-data is never printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from runner_fixtures import (
    Aws,
    aws_fixture,  # noqa: F401 (a fixture)
    moto_endpoint,  # noqa: F401 (a fixture)
)
from test_runner_aws import fake_token

from cml_nb.cli import main
from cml_nb.cli.runner import Duration

REPO = "octo/gpu"
DOCS = Path(__file__).parents[1] / "docs" / "runners.md"


@pytest.fixture
def env(aws: Aws, forge_emulator: Any) -> dict[str, str]:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "octo")
    forge_emulator.state.add_repo("github", REPO)
    return {
        **aws.env(),
        "GITHUB_API_URL": forge_emulator.github_api,
        "GITHUB_TOKEN": token,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": "",
    }


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["runner", *args], env=env, catch_exceptions=False)


def launch_args(aws: Aws, *more: str) -> list[str]:
    ((key, value),) = aws.tag.items()
    return ["launch", "--gpu", "a10g", "--size", "m", "--ami", aws.ami(),
            "--tag", f"{key}={value}", "--register-timeout", "0", *more]  # fmt: skip


def secrets_seen(forge_emulator: Any, env: dict[str, str]) -> list[str]:
    """The forge token and every registration secret the emulator handed out."""
    found = [env["GITHUB_TOKEN"]]
    for exchange in forge_emulator.requests("POST", "/actions/runners/"):
        data = json.loads(exchange.response or b"{}")
        found += [v for k, v in data.items() if k in ("token", "encoded_jit_config")]
    return found


def assert_no_leak(texts: list[str], secrets: list[str]) -> None:
    assert len(secrets) >= 2, "the test saw no registration secret"
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert "REGISTRATION=" not in text and "#!/bin/bash" not in text


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("6h", 21600), ("1h30m", 5400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert Duration().convert(text, None, None) == seconds


def test_every_runner_command_has_help_that_the_docs_mention() -> None:
    docs = DOCS.read_text()
    for verb in ("launch", "list", "stop", "cleanup"):
        result = CliRunner().invoke(main, ["runner", verb, "--help"])
        assert result.exit_code == 0 and len(result.output) > 200
        assert f"cml-nb runner {verb}" in docs


def test_launch_list_stop_cleanup_without_leaking_secrets(
    aws: Aws, env: dict[str, str], forge_emulator: Any, tmp_path: Path
) -> None:
    outputs = tmp_path / "github_output"
    outputs.touch()
    launched = cli({**env, "GITHUB_OUTPUT": str(outputs)}, *launch_args(aws, "--name", "cli-gpu"))
    assert launched.exit_code == 0, launched.output
    assert launched.stdout.strip() == "cli-gpu"
    assert "g5.xlarge" in launched.stderr
    assert outputs.read_text() == "runner-name=cli-gpu\n"
    (live,) = aws.live()
    user_data = aws.ec2.describe_instance_attribute(
        InstanceId=live["InstanceId"], Attribute="userData"
    )["UserData"]["Value"]
    script = base64.b64decode(user_data).decode()
    assert "REGISTRATION=" in script
    for credential in (env["GITHUB_TOKEN"], env["AWS_SECRET_ACCESS_KEY"]):
        assert credential not in script  # only the registration secret travels

    listed = cli(env, "list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if line.startswith("cli-gpu"))
    assert live["InstanceId"] in row and "missing" in row and REPO in row
    as_json = json.loads(cli(env, "list", "--json").stdout)
    assert [r["name"] for r in as_json if r["instance_id"] == live["InstanceId"]] == ["cli-gpu"]

    spared = cli(env, "cleanup")  # within the grace period: nothing to do
    assert "cli-gpu" not in spared.output

    stopped = cli(env, "stop", "cli-gpu")
    assert stopped.exit_code == 0, stopped.output
    assert f"terminate {live['InstanceId']}" in stopped.stdout
    assert aws.live() == []
    outputs_seen = [launched.output, listed.output, spared.output, stopped.output]
    assert_no_leak(outputs_seen, secrets_seen(forge_emulator, env) + ["x" * 8])


def test_unknown_instance_type_exits_2_before_anything_is_created(
    aws: Aws, env: dict[str, str], forge_emulator: Any
) -> None:
    result = cli(env, "launch", "--instance-type", "g5.xlargee", "--ami", aws.ami())
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "unknown instance type 'g5.xlargee'" in result.stderr
    assert aws.all() == [] and forge_emulator.requests("POST") == []


def test_registration_timeout_exits_5_and_leaves_nothing(
    aws: Aws, env: dict[str, str], forge_emulator: Any
) -> None:
    args = launch_args(aws, "--single")
    args[args.index("--register-timeout") + 1] = "1s"
    result = cli(env, *args)
    assert result.exit_code == 5
    assert "did not come online" in result.stderr and "terminated" in result.stderr
    assert aws.live() == [] and forge_emulator.state.repo(REPO).runners == {}
    assert_no_leak([result.output], secrets_seen(forge_emulator, env))


def test_no_default_ami_in_region_says_pass_ami(aws: Aws, env: dict[str, str]) -> None:
    args = launch_args(aws)
    del args[args.index("--ami") : args.index("--ami") + 2]
    result = cli(env, *args)
    assert result.exit_code == 5 and "pass --ami" in result.stderr
    assert aws.all() == []


def _launcher(env: dict[str, str], args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from cml_nb.cli import main; main()", "runner", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_instance(aws: Aws, launcher: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = aws.live()
        if live and live[0]["State"]["Name"] == "running":
            return str(live[0]["InstanceId"])
        assert launcher.poll() is None, launcher.communicate()[0]
        time.sleep(0.2)
    raise AssertionError("the launcher created no instance")


def test_killed_launcher_is_cleaned_up_by_cleanup(
    aws: Aws, env: dict[str, str], forge_emulator: Any
) -> None:
    args = launch_args(aws, "--name", "killed-gpu")
    args[args.index("--register-timeout") + 1] = "10m"
    launcher = _launcher(env, args)
    try:
        instance_id = _wait_for_instance(aws, launcher)
    finally:
        launcher.kill()  # SIGKILL: the launcher gets no chance to clean up
        output, _ = launcher.communicate(timeout=30)
    assert launcher.returncode == -signal.SIGKILL
    assert [i["InstanceId"] for i in aws.live()] == [instance_id]  # leaked, for now

    result = cli(env, "cleanup", "--grace", "0")
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"terminate {instance_id} \(killed-gpu\): its runner is not registered", result.stdout
    )
    assert aws.live() == []
    assert_no_leak([output, result.output], secrets_seen(forge_emulator, env))


def test_cancelled_launcher_terminates_its_instance(
    aws: Aws, env: dict[str, str], forge_emulator: Any
) -> None:
    args = launch_args(aws, "--single")
    args[args.index("--register-timeout") + 1] = "10m"
    launcher = _launcher(env, args)
    try:
        _wait_for_instance(aws, launcher)
        launcher.send_signal(signal.SIGTERM)  # how CI cancels a job
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 130, output
    assert aws.live() == [] and forge_emulator.state.repo(REPO).runners == {}
    assert_no_leak([output], secrets_seen(forge_emulator, env))


def test_pyproject_settings_apply_to_runner_commands(
    aws: Aws, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cml-nb.runner]\nregion = "us-west-2"\n\n'
        '[tool.cml-nb.runner.launch]\nlabels = "from-pyproject"\nregister-timeout = "0"\n'
    )
    monkeypatch.chdir(tmp_path)
    no_region = {**env, "AWS_DEFAULT_REGION": "", "AWS_REGION": ""}
    ((key, value),) = aws.tag.items()
    result = cli(no_region, "launch", "--gpu", "t4", "--ami", aws.ami(), "--tag", f"{key}={value}")
    assert result.exit_code == 0, result.output
    (live,) = aws.live()
    assert {"Key": "cml-nb:labels", "Value": "from-pyproject"} in live["Tags"]
    assert live["InstanceType"] == "g4dn.xlarge"
    stopped = cli(no_region, "stop", result.stdout.strip())
    assert stopped.exit_code == 0, stopped.output
    assert aws.live() == []


def test_cleanup_is_scoped_to_the_ci_repository_unless_all_repositories(
    aws: Aws, env: dict[str, str], forge_emulator: Any
) -> None:
    ((key, value),) = aws.tag.items()
    tags = [{"Key": k, "Value": v} for k, v in {key: value, "cml-nb:runner": "foreign",
            "cml-nb:forge": "github", "cml-nb:repository": "someone/else"}.items()]  # fmt: skip
    foreign = aws.ec2.run_instances(
        ImageId=aws.ami(), InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    outside_ci = {k: v for k, v in env.items() if not k.startswith("GITHUB_R")}
    outside_ci["GITHUB_ACTIONS"] = ""
    refused = cli(outside_ci, "cleanup", "--grace", "0")
    assert refused.exit_code == 2
    assert "pass --repo owner/repo" in refused.output and "--all-repositories" in refused.output
    assert cli(env, "cleanup", "--grace", "0", "--all-repositories", "--repo", "x/y").exit_code == 2

    scoped = cli(env, "cleanup", "--grace", "0")  # GITHUB_REPOSITORY=octo/gpu
    assert scoped.exit_code == 0, scoped.output
    assert foreign not in scoped.output and [i["InstanceId"] for i in aws.live()] == [foreign]
    by_flag = cli(outside_ci, "cleanup", "--grace", "0", "--repo", "someone/else", "--dry-run")
    assert f"would terminate {foreign} (foreign)" in by_flag.stdout

    swept = cli(outside_ci, "cleanup", "--grace", "0", "--all-repositories")
    assert swept.exit_code == 0, swept.output
    assert f"terminate {foreign} (foreign): it has no valid cml-nb:expires tag" in swept.stdout
    assert aws.live() == []
