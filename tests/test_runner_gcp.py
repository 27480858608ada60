"""GCP runners: the real google-cloud-compute against the Compute Engine v1 emulator.

The emulator (tests/cloud_emulators/gcp.py) routes and validates every request and
answer against the discovery document google-api-python-client ships; the client
finds its credentials through Application Default Credentials (a service-account key
whose token endpoint is the emulator's). After every test the ``gcp`` fixture asserts
that no VM, disk or external address is left and that no request broke the schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cloud_emulators.fixtures import gcp_fixture  # noqa: F401 (a fixture)
from cloud_emulators.gcp import GcpEmulator
from test_runner_aws import (
    REPO,
    _come_online,
    fake_token,
    github_fixture,  # noqa: F401 (a fixture)
    gitlab_fixture,  # noqa: F401 (a fixture)
    resolver,
)

from cml_nb.cli import main
from cml_nb.errors import CloudError, ConfigError
from cml_nb.runner import lifecycle
from cml_nb.runner.gcp import ComputeEngine
from cml_nb.runner.lifecycle import LaunchRequest, Scope
from cml_nb.runner.registration import GitHubRunners, GitLabRunners

REGION = "us-central1"
T4 = "n1-standard-8+nvidia-tesla-t4"
SCOPE = Scope("github", REPO)


def cloud(**options: Any) -> ComputeEngine:
    return ComputeEngine(REGION, **options)


def request(**overrides: Any) -> LaunchRequest:
    values: dict[str, Any] = {
        "instance_type": T4,
        "labels": ("cml-gpu",),
        "wait_running_s": 5,
        "wait_registered_s": 0,
        "poll_s": 0.1,
    }
    values.update(overrides)
    return LaunchRequest(**values)


def inserts(gcp: GcpEmulator) -> list[tuple[dict[str, str], Any]]:
    return gcp.requests("compute.instances.insert")


def metadata(body: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in body["metadata"]["items"]}


def test_launch_makes_one_guarded_vm_and_stop_deletes_it_all(
    gcp: GcpEmulator, github: GitHubRunners
) -> None:
    result = lifecycle.launch(
        request(name="gpu-1", max_lifetime_s=3 * 3600, tags={"team": "vision"}), cloud(), github
    )
    ((params, body),) = inserts(gcp)
    assert params["zone"] == "us-central1-a" and body["name"] == "gpu-1"
    scheduling = body["scheduling"]
    # Compute Engine's own lifetime guard: it deletes the VM after max-lifetime.
    assert scheduling["instanceTerminationAction"] == "DELETE"
    # ... a margin after the startup script's own guard (CLOUD_LIMIT_MARGIN_S).
    assert scheduling["maxRunDuration"] == {"seconds": str(3 * 3600 + 600)}
    assert scheduling["onHostMaintenance"] == "TERMINATE"
    assert scheduling["provisioningModel"] == "STANDARD"
    assert body["guestAccelerators"] == [
        {"acceleratorType": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4",
         "acceleratorCount": 1}
    ]  # fmt: skip
    # No service account (the API attaches none unless asked; an empty list is not sent):
    # the metadata server has no Google credentials for the job.
    assert body.get("serviceAccounts", []) == []
    (disk,) = body["disks"]
    assert disk["autoDelete"] and disk["boot"]
    assert disk["initializeParams"]["sourceImage"] == (
        "projects/deeplearning-platform-release/global/images/family/"
        "common-cu128-ubuntu-2204-nvidia-570"
    )
    assert body["labels"] == {"team": "vision", "cml-nb-runner": "gpu-1"}
    items = metadata(body)
    assert items["cml-nb-repository"] == REPO and items["cml-nb-forge"] == "github"
    assert "EXPECT_GPU=1" in items["user-data"] and "startup-script" not in items
    # Jobs are blocked from GCP's metadata service (IPv4 and IPv6), not EC2's IPv6 one.
    assert "fd20:ce::254" in items["user-data"] and "fd00:ec2::254" not in items["user-data"]
    assert gcp.leaks()["disks"] == ["us-central1-a/gpu-1"] and len(gcp.leaks()["addresses"]) == 1

    (view,) = lifecycle.list_runners(cloud(), resolver(github))
    assert (view.name, view.instance_id, view.repository) == (
        "gpu-1", "us-central1-a/gpu-1", f"github/{REPO}"
    )  # fmt: skip
    assert view.instance_type == T4 + ":1" and result.instance.expires is not None
    assert 3 * 3600 - 60 < view.expires_in_s <= 3 * 3600  # type: ignore[operator]
    actions = lifecycle.stop(cloud(), resolver(github), "gpu-1")
    assert [a.action for a in actions] == ["terminate"]
    assert gcp.leaks() == {"instances": [], "disks": [], "addresses": []}


def test_gpu_shorthand_with_built_in_gpu_and_spot(gcp: GcpEmulator, github: GitHubRunners) -> None:
    from cml_nb.runner.catalogue import resolve_instance_type

    machine = resolve_instance_type(gpu="l4", cloud="gcp")
    result = lifecycle.launch(request(instance_type=machine, spot=True), cloud(), github)
    ((_, body),) = inserts(gcp)
    assert body["machineType"].endswith("/machineTypes/g2-standard-8")
    assert "guestAccelerators" not in body or body["guestAccelerators"] == []
    assert body["scheduling"]["provisioningModel"] == "SPOT"
    assert body["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert body["scheduling"]["automaticRestart"] is False
    assert result.instance.spot
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_spot_eviction_deletes_the_vm_with_its_disk_and_address(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    lifecycle.launch(request(name="gpu-spot", spot=True, single=True), cloud(), github)
    assert len(gcp.leaks()["disks"]) == 1 and len(gcp.leaks()["addresses"]) == 1
    gcp.preempt("us-central1-a", "gpu-spot")
    # DELETE, not STOP: the preempted VM takes its disk and address with it.
    assert gcp.leaks() == {"instances": [], "disks": [], "addresses": []}
    assert lifecycle.list_runners(cloud(), resolver(github)) == []
    # GCP forgets a deleted VM at once, so cleanup cannot match the offline JIT runner to
    # it: GitHub drops an ephemeral runner that never connects after a day; remove it here.
    (runner_id,) = forge_emulator.state.repo(REPO).runners
    github.remove(runner_id)


def test_max_run_duration_is_gcps_own_lifetime_guard(
    gcp: GcpEmulator, github: GitHubRunners
) -> None:
    lifecycle.launch(request(name="gpu-old"), cloud(), github)
    gcp.run_out("us-central1-a", "gpu-old")  # maxRunDuration ends, launcher long gone
    assert gcp.leaks() == {"instances": [], "disks": [], "addresses": []}


def test_zone_resource_pool_exhausted_moves_to_the_next_zone(
    gcp: GcpEmulator, github: GitHubRunners
) -> None:
    gcp.faults.operation_error("ZONE_RESOURCE_POOL_EXHAUSTED", zone="us-central1-a")
    gcp.faults.operation_error("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", zone="us-central1-b")
    result = lifecycle.launch(request(), cloud(), github)
    assert [p["zone"] for p, _ in inserts(gcp)] == [
        "us-central1-a", "us-central1-b", "us-central1-c"
    ]  # fmt: skip
    assert result.instance.zone == "us-central1-c"
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_zone_given_is_tried_first(gcp: GcpEmulator, github: GitHubRunners) -> None:
    gcp.faults.operation_error("ZONE_RESOURCE_POOL_EXHAUSTED", zone="us-central1-f")
    chosen = ComputeEngine.from_options(None, zone="us-central1-f")
    assert chosen.region == REGION
    result = lifecycle.launch(request(), chosen, github)
    assert [p["zone"] for p, _ in inserts(gcp)] == ["us-central1-f", "us-central1-a"]
    lifecycle.stop(cloud(), resolver(github), result.name)
    with pytest.raises(ConfigError, match="--zone europe-west4-a is not in --region us-central1"):
        ComputeEngine.from_options("us-central1", zone="europe-west4-a")


def test_no_spot_capacity_anywhere_fails_clearly_and_leaves_nothing(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    gcp.faults.operation_error("ZONE_RESOURCE_POOL_EXHAUSTED", times=10)
    with pytest.raises(CloudError, match=r"no capacity for n1-standard-8\+nvidia-tesla-t4 in "
                       r"us-central1 .*us-central1-f spot.*--spot-fallback"):  # fmt: skip
        lifecycle.launch(request(spot=True, single=True), cloud(), github)
    assert len(inserts(gcp)) == 4
    assert forge_emulator.state.repo(REPO).runners == {}


def test_spot_falls_back_to_standard(gcp: GcpEmulator, github: GitHubRunners) -> None:
    gcp.faults.operation_error("ZONE_RESOURCE_POOL_EXHAUSTED", times=4)  # every zone, spot
    result = lifecycle.launch(request(spot=True, spot_fallback=True), cloud(), github)
    models = [b["scheduling"]["provisioningModel"] for _, b in inserts(gcp)]
    assert models == ["SPOT"] * 4 + ["STANDARD"]
    assert not result.instance.spot
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_gpu_quota_fails_at_once_with_the_fix(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    gcp.faults.operation_error(
        "QUOTA_EXCEEDED",
        status=403,
        message="Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 0.0 in region us-central1.",
    )
    with pytest.raises(CloudError, match=r"QUOTA_EXCEEDED: Quota 'NVIDIA_T4_GPUS' exceeded.*"
                       r"request more in the console"):  # fmt: skip
        lifecycle.launch(request(single=True), cloud(), github)
    assert len(inserts(gcp)) == 1  # a regional quota: other zones would fail the same way
    assert forge_emulator.state.repo(REPO).runners == {}


def test_operation_that_fails_late_leaves_no_vm_or_disk(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    gcp.faults.operation_error(
        "INTERNAL_ERROR", status=500, leaves_instance=True, polls=3,
        message="Internal error. Please try again or contact Google Support.",
    )  # fmt: skip
    with pytest.raises(CloudError, match="INTERNAL_ERROR: Internal error"):
        lifecycle.launch(request(name="gpu-late", single=True), cloud(), github)
    deletes = gcp.requests("compute.instances.delete")
    assert [p["instance"] for p, _ in deletes] == ["gpu-late"]
    assert forge_emulator.state.repo(REPO).runners == {}


def test_rate_limits_are_retried_with_the_same_request_id(
    gcp: GcpEmulator, github: GitHubRunners
) -> None:
    gcp.faults.too_many_requests("compute.instances.insert", times=2)
    gcp.faults.too_many_requests("compute.instances.aggregatedList", times=1)
    result = lifecycle.launch(request(), cloud(), github)
    ids = [e.query.get("requestId") for e in gcp.server.requests("POST", "/instances")]
    assert len(ids) == 3 and len(set(ids)) == 1 and ids[0]  # one VM however often asked
    assert len(gcp.leaks()["instances"]) == 1
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_endless_rate_limiting_fails_clearly_and_leaves_nothing(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    gcp.faults.too_many_requests("compute.instances.insert", times=100)
    with pytest.raises(CloudError, match="rateLimitExceeded.*kept rate-limiting"):
        lifecycle.launch(request(single=True), cloud(max_attempts=2), github)
    assert forge_emulator.state.repo(REPO).runners == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instance_type": "n1-standard-9"}, "unknown machine 'n1-standard-9' in us-central1"),
        ({"instance_type": "n1-standard-8+nvidia-tesla-k80"}, "with nvidia-tesla-k80"),
        ({"instance_type": "a2-highgpu-1g", "ami": "projects/nope/global/images/family/x"},
         "image projects/nope/global/images/family/x does not exist"),
        ({"instance_type": "t2a-standard-4",
          "ami": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"},
         "is for x86_64 but t2a-standard-4 runs arm64"),
        ({"name": "GPU_1"}, "not a valid GCP instance name"),
    ],
)  # fmt: skip
def test_bad_requests_fail_before_anything_is_created(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any,
    overrides: dict[str, Any], message: str,
) -> None:  # fmt: skip
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        lifecycle.launch(request(**overrides), cloud(), github)
    assert inserts(gcp) == []
    assert forge_emulator.requests("POST", "/actions/runners") == []


def test_arm_machine_gets_the_arm_image(gcp: GcpEmulator, github: GitHubRunners) -> None:
    result = lifecycle.launch(request(instance_type="t2a-standard-4"), cloud(), github)
    ((params, body),) = inserts(gcp)
    assert body["disks"][0]["initializeParams"]["sourceImage"].endswith("ubuntu-2204-lts-arm64")
    assert "EXPECT_GPU=0" in metadata(body)["user-data"]
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_registration_timeout_deletes_the_vm_and_unregisters(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    with pytest.raises(CloudError, match="did not come online.*get-serial-port-output"):
        lifecycle.launch(request(single=True, wait_registered_s=1), cloud(), github)
    assert forge_emulator.state.repo(REPO).runners == {}
    assert len(gcp.requests("compute.instances.delete")) == 1


def test_cleanup_is_scoped_to_the_repository(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "someone")
    forge_emulator.state.add_repo("github", "Someone/Else")
    other = GitHubRunners("Someone/Else", token=token, api_url=forge_emulator.github_api)
    mine = lifecycle.launch(request(name="gpu-mine", single=True), cloud(), github)
    theirs = lifecycle.launch(request(name="gpu-theirs", single=True), cloud(), other)
    # The exact repository (capitals, slash) survives GCP's label rules, in metadata.
    assert theirs.instance.tags["cml-nb:repository"] == "Someone/Else"
    later = datetime.now(timezone.utc) + timedelta(hours=7)

    actions = lifecycle.cleanup(cloud(), resolver(github, other), scope=SCOPE, now=later)
    assert [a.target for a in actions if a.action == "terminate"] == [
        f"{mine.instance.id} (gpu-mine)"
    ]
    assert gcp.leaks()["instances"] == ["us-central1-a/gpu-theirs"]
    swept = lifecycle.cleanup(cloud(), resolver(github, other), scope=None, now=later)
    assert [a.target for a in swept if a.action == "terminate"] == [
        f"{theirs.instance.id} (gpu-theirs)"
    ]


def test_cleanup_deletes_orphans_after_grace_and_spares_online_runners(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    lifecycle.launch(request(name="gpu-orphan", single=True), cloud(), github)
    stop = threading.Event()
    agent = threading.Thread(target=_come_online, args=(forge_emulator, "gpu-online", stop))
    agent.start()
    try:
        lifecycle.launch(
            request(name="gpu-online", single=True, wait_registered_s=10), cloud(), github
        )
    finally:
        stop.set()
        agent.join()
    assert lifecycle.cleanup(cloud(), resolver(github), scope=SCOPE, grace_s=3600) == []
    actions = [str(a) for a in lifecycle.cleanup(cloud(), resolver(github), scope=SCOPE,
                                                 grace_s=0)]  # fmt: skip
    assert any("gpu-orphan" in a and "offline" in a for a in actions)
    # GCP forgets the deleted VM at once; cleanup still unregisters its forge runner.
    assert any(a.startswith("unregister github runner") and "gpu-orphan" in a for a in actions)
    assert gcp.leaks()["instances"] == ["us-central1-a/gpu-online"]
    lifecycle.stop(cloud(), resolver(github), "gpu-online", force=True)


def test_gitlab_runner_on_gcp(gcp: GcpEmulator, gitlab: GitLabRunners, forge_emulator: Any) -> None:
    result = lifecycle.launch(request(name="gl-gpu"), cloud(), gitlab)
    (runner,) = forge_emulator.state.repo("group/gpu").runners.values()
    ((_, body),) = inserts(gcp)
    assert f"REGISTRATION={runner['token']}" in metadata(body)["user-data"]
    actions = lifecycle.stop(cloud(), resolver(gitlab), result.name)
    assert sorted(a.action for a in actions) == ["terminate", "unregister"]


def _cli_env(forge_emulator: Any) -> dict[str, str]:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "octo")
    forge_emulator.state.add_repo("github", REPO)
    return {"GITHUB_API_URL": forge_emulator.github_api, "GITHUB_TOKEN": token,
            "GITHUB_REPOSITORY": REPO, "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": ""}  # fmt: skip


def test_cli_launch_list_stop_cleanup_on_gcp_without_leaking_secrets(
    gcp: GcpEmulator, forge_emulator: Any
) -> None:
    env = _cli_env(forge_emulator)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, ["runner", *args], env=env, catch_exceptions=False)

    launched = cli("launch", "--cloud", "gcp", "--zone", "us-central1-a", "--gpu", "l4",
                   "--spot", "--idle-timeout", "10m", "--register-timeout", "0",
                   "--name", "cli-gpu")  # fmt: skip
    assert launched.exit_code == 0, launched.output
    assert launched.stdout.strip() == "cli-gpu" and "g2-standard-8" in launched.stderr
    listed = cli("list", "--cloud", "gcp", "--zone", "us-central1-a")
    assert "us-central1-a/cli-gpu" in listed.stdout and REPO in listed.stdout
    spared = cli("cleanup", "--cloud", "gcp", "--region", REGION)
    assert spared.exit_code == 0 and "cli-gpu" not in spared.stdout
    stopped = cli("stop", "cli-gpu", "--cloud", "gcp", "--region", REGION)
    assert stopped.exit_code == 0, stopped.output
    assert "terminate us-central1-a/cli-gpu" in stopped.stdout
    ((_, body),) = inserts(gcp)
    registration = metadata(body)["user-data"].split("REGISTRATION=")[1].split("\n")[0]
    key_file = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
    key = json.loads(key_file.read_text())["private_key"]
    for output in (launched.output, listed.output, spared.output, stopped.output):
        for secret in (env["GITHUB_TOKEN"], registration.strip("'"), key[40:80]):
            assert secret not in output


def test_cli_missing_credentials_project_or_option_is_one_line(
    gcp: GcpEmulator, forge_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _cli_env(forge_emulator)

    def cli(*args: str, **more: str) -> Any:
        return CliRunner().invoke(main, ["runner", *args], env={**env, **more})

    refused = cli("list", "--cloud", "gcp", "--region", REGION,
                  GOOGLE_APPLICATION_CREDENTIALS="/nonexistent/key.json")  # fmt: skip
    assert refused.exit_code == 5, refused.output
    assert "GOOGLE_APPLICATION_CREDENTIALS" in refused.output and "Traceback" not in refused.output
    no_region = cli("list", "--cloud", "gcp")
    assert no_region.exit_code == 2 and "no GCP region: pass --zone" in no_region.output
    wrong = cli("list", "--cloud", "gcp", "--region", REGION, "--subscription", "x")
    assert wrong.exit_code == 2 and "--subscription is for --cloud azure" in wrong.output
    unknown = cli("list", "--cloud", "ibm", "--region", REGION)
    assert unknown.exit_code == 2 and "choose one of aws, gcp, azure" in unknown.output
    bad_gpu = cli("launch", "--cloud", "gcp", "--region", REGION, "--gpu", "a10g")
    assert bad_gpu.exit_code == 2 and "on --cloud gcp" in bad_gpu.output
    assert gcp.calls == [] or all(m != "compute.instances.insert" for m, _, _ in gcp.calls)


def test_without_the_gcp_extra_the_message_names_it(gcp: GcpEmulator) -> None:
    # A separate interpreter in which google-cloud-compute cannot be imported.
    code = (
        "import sys; sys.modules['google.cloud.compute_v1'] = None\n"
        "from click.testing import CliRunner\nfrom cml_nb.cli import main\n"
        "r = CliRunner().invoke(main, ['runner', 'list', '--cloud', 'gcp', '--region', "
        "'us-central1'])\nprint(r.exit_code, r.output)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    assert out.startswith("2 ") and "pip install 'cml-nb[gcp]'" in out


def test_workload_identity_federation_as_in_ci(
    gcp: GcpEmulator, github: GitHubRunners, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What google-github-actions/auth (or GitLab's id_tokens) sets up: an external_account
    # file; the CI's OIDC token is exchanged at STS, then for the service account's token.
    token_file = tmp_path / "oidc-token"
    token_file.write_text(gcp.oidc_token)
    config = tmp_path / "external-account.json"
    config.write_text(json.dumps({
        "type": "external_account",
        "audience": gcp.audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{gcp.root}/v1/token",
        "service_account_impersonation_url": f"{gcp.root}/v1/projects/-/serviceAccounts/"
        f"{gcp.client_email}:generateAccessToken",
        "credential_source": {"file": str(token_file)},
    }))  # fmt: skip
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(config))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", gcp.project)
    result = lifecycle.launch(request(name="gpu-wif"), ComputeEngine(REGION), github)
    assert len(gcp.server.requests("POST", "/v1/token")) >= 1
    assert len(gcp.server.requests("POST", ":generateAccessToken")) >= 1
    lifecycle.stop(cloud(), resolver(github), result.name)
    token_file.write_text("not-the-ci-token")  # a token STS refuses: one line, exit 5
    refused = CliRunner().invoke(main, ["runner", "list", "--cloud", "gcp", "--region", REGION])
    assert refused.exit_code == 5 and "Google credentials were refused" in refused.output


def test_a_vm_that_shut_itself_down_is_deleted_by_cleanup(
    gcp: GcpEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    # Unlike EC2, a guest shutdown only stops a GCP VM: its disk stays billed until the
    # next cleanup (or maxRunDuration) deletes it.
    lifecycle.launch(request(name="gpu-idle", single=True), cloud(), github)
    gcp.guest_shutdown("us-central1-a", "gpu-idle")
    (view,) = lifecycle.list_runners(cloud(), resolver(github))
    assert view.state == "terminated" and gcp.leaks()["disks"] == ["us-central1-a/gpu-idle"]
    actions = [str(a) for a in lifecycle.cleanup(cloud(), resolver(github), scope=SCOPE,
                                                 grace_s=0)]  # fmt: skip
    assert any(a.startswith("terminate us-central1-a/gpu-idle") for a in actions)
    assert forge_emulator.state.repo(REPO).runners == {}
