"""Azure runners: the real azure-identity and azure-mgmt SDKs against the Azure emulator.

The emulator (tests/cloud_emulators/azure.py) serves Entra ID's OIDC and token endpoints
and ARM over HTTPS on 127.0.0.1; ClientSecretCredential (through DefaultAzureCredential's
EnvironmentCredential) gets a token from it. Every answer and PUT body is deserialised
strictly into the SDK's models and every request must carry the pinned api-version.
After every test the ``azure`` fixture asserts that no VM, NIC, public IP or disk is left.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cloud_emulators.azure import AzureEmulator
from cloud_emulators.fixtures import azure_certificate, azure_fixture  # noqa: F401 (fixtures)
from test_runner_aws import (
    REPO,
    fake_token,
    github_fixture,  # noqa: F401 (a fixture)
    gitlab_fixture,  # noqa: F401 (a fixture)
    resolver,
)

from cml_nb.cli import main
from cml_nb.errors import CloudError, ConfigError
from cml_nb.runner import lifecycle
from cml_nb.runner.azure import AzureVms
from cml_nb.runner.lifecycle import LaunchRequest, Scope
from cml_nb.runner.registration import GitHubRunners, GitLabRunners

LOCATION = "westeurope"
GROUP = "ci-runners"
T4 = "Standard_NC4as_T4_v3"
SCOPE = Scope("github", REPO)
EMPTY = {"vms": [], "nics": [], "ips": [], "disks": []}


def cloud(**options: Any) -> AzureVms:
    return AzureVms(LOCATION, resource_group=GROUP, **options)


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


def creates(azure: AzureEmulator) -> list[dict[str, Any]]:
    return azure.requests("virtualMachines", "PUT")


def test_launch_creates_vm_nic_ip_disk_in_one_call_and_stop_deletes_them_all(
    azure: AzureEmulator, github: GitHubRunners
) -> None:
    result = lifecycle.launch(request(name="gpu-1", tags={"team": "vision"}), cloud(), github)
    (body,) = creates(azure)
    props = body["properties"]
    assert body["tags"]["cml-nb:runner"] == "gpu-1" and body["tags"]["cml-nb:repository"] == REPO
    assert body["tags"]["team"] == "vision" and body["zones"] == ["1"]
    assert props["storageProfile"]["osDisk"]["deleteOption"] == "Delete"
    assert props["storageProfile"]["imageReference"] == {
        "publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204",
        "version": "22.04.2026110101",
    }  # fmt: skip
    (nic,) = props["networkProfile"]["networkInterfaceConfigurations"]
    assert nic["properties"]["deleteOption"] == "Delete"
    ip = nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddressConfiguration"]
    assert ip["properties"]["deleteOption"] == "Delete" and ip["sku"]["name"] == "Standard"
    assert props["priority"] == "Regular" and "evictionPolicy" not in props
    linux = props["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert linux["ssh"]["publicKeys"][0]["keyData"].startswith("ssh-ed25519 ")
    script = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert "EXPECT_GPU=1" in script and "REGISTRATION=" in script
    assert "METADATA_ADDRESSES=169.254.169.254" in script  # Azure's IMDS, IPv4 only
    assert azure.leaks() == {"vms": ["gpu-1"], "nics": ["gpu-1-nic"], "ips": ["gpu-1-ip"],
                             "disks": ["gpu-1-disk"]}  # fmt: skip
    # The startup script is not readable back through the API.
    assert "customData" not in azure.vms["gpu-1"]["properties"]["osProfile"]

    (view,) = lifecycle.list_runners(cloud(), resolver(github))
    assert (view.name, view.instance_id, view.instance_type) == ("gpu-1", "gpu-1", T4)
    assert view.repository == f"github/{REPO}" and result.instance.zone == "1"
    actions = lifecycle.stop(cloud(), resolver(github), "gpu-1")
    assert [a.action for a in actions] == ["terminate"]
    assert azure.leaks() == EMPTY


def test_spot_vm_is_deleted_with_everything_when_evicted(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    result = lifecycle.launch(request(name="gpu-spot", spot=True, single=True), cloud(), github)
    (body,) = creates(azure)
    assert body["properties"]["priority"] == "Spot"
    assert body["properties"]["evictionPolicy"] == "Delete"
    assert body["properties"]["billingProfile"] == {"maxPrice": -1}  # up to the on-demand price
    assert result.instance.spot
    azure.evict("gpu-spot")
    assert azure.leaks() == EMPTY
    assert lifecycle.list_runners(cloud(), resolver(github)) == []
    (runner_id,) = forge_emulator.state.repo(REPO).runners  # GitHub drops it after a day
    github.remove(runner_id)


def test_spot_price_is_the_most_to_pay(azure: AzureEmulator, github: GitHubRunners) -> None:
    result = lifecycle.launch(request(spot=True, spot_price="0.35"), cloud(), github)
    (body,) = creates(azure)
    assert body["properties"]["billingProfile"] == {"maxPrice": 0.35}
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_sku_not_available_in_a_zone_moves_to_the_next(
    azure: AzureEmulator, github: GitHubRunners
) -> None:
    azure.faults.create_error("SkuNotAvailable", zone="1")
    azure.faults.create_error("ZonalAllocationFailed", zone="2", late=True, status=200)
    result = lifecycle.launch(request(), cloud(), github)
    assert [b["zones"] for b in creates(azure)] == [["1"], ["2"], ["3"]]
    assert result.instance.zone == "3"
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_allocation_failed_late_leaves_no_vm_nic_ip_or_disk(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    # The operation fails after the VM and what it owns exist, in Failed state.
    azure.faults.create_error("AllocationFailed", late=True, leaves_vm=True, times=3,
                              message="Allocation failed. We do not have sufficient capacity")  # fmt: skip
    with pytest.raises(CloudError, match=r"no capacity for Standard_NC4as_T4_v3 in westeurope "
                       r"\(zone 1 regular: AllocationFailed"):  # fmt: skip
        lifecycle.launch(request(single=True), cloud(), github)
    assert len(azure.requests("virtualMachines", "DELETE")) == 3
    assert forge_emulator.state.repo(REPO).runners == {}


def test_spot_falls_back_to_regular(azure: AzureEmulator, github: GitHubRunners) -> None:
    azure.faults.create_error("SkuNotAvailable", spot=True, times=3)
    result = lifecycle.launch(request(spot=True, spot_fallback=True), cloud(), github)
    assert [b["properties"]["priority"] for b in creates(azure)] == ["Spot"] * 3 + ["Regular"]
    assert not result.instance.spot
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_no_spot_capacity_says_spot_fallback(azure: AzureEmulator, github: GitHubRunners) -> None:
    azure.faults.create_error("SkuNotAvailable", spot=True, times=3)
    with pytest.raises(CloudError, match="--spot-fallback"):
        lifecycle.launch(request(spot=True, single=True), cloud(), github)


def test_quota_fails_at_once_with_the_fix(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    azure.faults.create_error(
        "OperationNotAllowed",
        message="Operation could not be completed as it results in exceeding approved "
        "Standard NCASv3_T4 Family Cores quota. Current Limit: 0",
    )
    with pytest.raises(CloudError, match=r"OperationNotAllowed: Operation could not be completed"
                       r".*request more in the portal"):  # fmt: skip
        lifecycle.launch(request(single=True), cloud(), github)
    assert len(creates(azure)) == 1
    assert forge_emulator.state.repo(REPO).runners == {}


def test_throttling_is_retried_after_retry_after(
    azure: AzureEmulator, github: GitHubRunners
) -> None:
    azure.faults.too_many_requests("virtualMachines.put", times=2)
    result = lifecycle.launch(request(), cloud(), github)
    assert len(creates(azure)) == 3 and len(azure.leaks()["vms"]) == 1
    lifecycle.stop(cloud(), resolver(github), result.name)


def test_endless_throttling_fails_clearly_and_leaves_nothing(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    azure.faults.too_many_requests("virtualMachines.put", times=100)
    with pytest.raises(CloudError, match="TooManyRequests.*kept throttling"):
        lifecycle.launch(request(single=True), cloud(max_attempts=2), github)
    assert forge_emulator.state.repo(REPO).runners == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instance_type": "Standard_NC4as_T5_v3"}, "unknown VM size 'Standard_NC4as_T5_v3'"),
        ({"ami": "microsoft-dsvm:ubuntu-hpc:2004:latest"}, "image microsoft-dsvm:ubuntu-hpc:2004"),
        ({"ami": "ubuntu-hpc"}, "is not an Azure image URN"),
        ({"instance_type": "Standard_D4ps_v5",
          "ami": "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"},
         "is for x64 but Standard_D4ps_v5 runs arm64"),
        ({"name": "-gpu"}, "not a valid Azure VM name"),
    ],
)  # fmt: skip
def test_bad_requests_fail_before_anything_is_created(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any,
    overrides: dict[str, Any], message: str,
) -> None:  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        lifecycle.launch(request(**overrides), cloud(), github)
    assert creates(azure) == []
    assert forge_emulator.requests("POST", "/actions/runners") == []


def test_missing_resource_group_says_how_to_create_it(
    azure: AzureEmulator, github: GitHubRunners
) -> None:
    with pytest.raises(CloudError, match="ResourceGroupNotFound.*az group create --name nope"):
        lifecycle.launch(request(), AzureVms(LOCATION, resource_group="nope"), github)
    assert creates(azure) == []


def test_size_without_zones_launches_regionally_and_arm_gets_arm_image(
    azure: AzureEmulator, github: GitHubRunners
) -> None:
    a10 = lifecycle.launch(request(instance_type="Standard_NV36ads_A10_v5"), cloud(), github)
    arm = lifecycle.launch(request(instance_type="Standard_D4ps_v5"), cloud(), github)
    regional, arm_body = creates(azure)
    assert "zones" not in regional and a10.instance.zone == ""
    assert arm_body["properties"]["storageProfile"]["imageReference"]["sku"] == "22_04-lts-arm64"
    assert (
        "EXPECT_GPU=0"
        in base64.b64decode(arm_body["properties"]["osProfile"]["customData"]).decode()
    )
    for result in (a10, arm):
        lifecycle.stop(cloud(), resolver(github), result.name)


def test_registration_timeout_deletes_the_vm_and_unregisters(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    with pytest.raises(CloudError, match="did not come online.*boot-diagnostics get-boot-log"):
        lifecycle.launch(request(single=True, wait_registered_s=1), cloud(), github)
    assert forge_emulator.state.repo(REPO).runners == {}


def test_cleanup_is_scoped_to_the_repository(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "someone")
    forge_emulator.state.add_repo("github", "someone/else")
    other = GitHubRunners("someone/else", token=token, api_url=forge_emulator.github_api)
    mine = lifecycle.launch(request(name="gpu-mine", single=True), cloud(), github)
    theirs = lifecycle.launch(request(name="gpu-theirs", single=True), cloud(), other)
    later = datetime.now(timezone.utc) + timedelta(hours=7)
    actions = lifecycle.cleanup(cloud(), resolver(github, other), scope=SCOPE, now=later)
    assert [a.target for a in actions if a.action == "terminate"] == ["gpu-mine (gpu-mine)"]
    assert azure.leaks()["vms"] == ["gpu-theirs"]
    swept = lifecycle.cleanup(cloud(), resolver(github, other), scope=None, now=later)
    assert [a.target for a in swept if a.action == "terminate"] == ["gpu-theirs (gpu-theirs)"]
    assert mine.instance.id == "gpu-mine" and theirs.instance.id == "gpu-theirs"


def test_cleanup_deletes_orphans_after_grace(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    lifecycle.launch(request(name="gpu-orphan", single=True), cloud(), github)
    assert lifecycle.cleanup(cloud(), resolver(github), scope=SCOPE, grace_s=3600) == []
    actions = [str(a) for a in lifecycle.cleanup(cloud(), resolver(github), scope=SCOPE,
                                                 grace_s=0)]  # fmt: skip
    assert any("gpu-orphan" in a and "offline" in a for a in actions)
    # Azure forgets the deleted VM at once; cleanup still unregisters its forge runner.
    assert any(a.startswith("unregister github runner") for a in actions)
    assert forge_emulator.state.repo(REPO).runners == {}


def test_gitlab_runner_on_azure(
    azure: AzureEmulator, gitlab: GitLabRunners, forge_emulator: Any
) -> None:
    result = lifecycle.launch(request(name="gl-gpu"), cloud(), gitlab)
    (runner,) = forge_emulator.state.repo("group/gpu").runners.values()
    (body,) = creates(azure)
    script = base64.b64decode(body["properties"]["osProfile"]["customData"]).decode()
    assert f"REGISTRATION={runner['token']}" in script
    actions = lifecycle.stop(cloud(), resolver(gitlab), result.name)
    assert sorted(a.action for a in actions) == ["terminate", "unregister"]


def _cli_env(forge_emulator: Any) -> dict[str, str]:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "octo")
    forge_emulator.state.add_repo("github", REPO)
    return {"GITHUB_API_URL": forge_emulator.github_api, "GITHUB_TOKEN": token,
            "GITHUB_REPOSITORY": REPO, "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": ""}  # fmt: skip


def test_cli_launch_list_stop_on_azure_without_leaking_secrets(
    azure: AzureEmulator, forge_emulator: Any
) -> None:
    env = _cli_env(forge_emulator)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, ["runner", *args], env=env, catch_exceptions=False)

    where = ("--cloud", "azure", "--region", LOCATION, "--resource-group", GROUP)
    launched = cli("launch", *where, "--gpu", "t4", "--spot", "--register-timeout", "0",
                   "--name", "cli-gpu")  # fmt: skip
    assert launched.exit_code == 0, launched.output
    assert launched.stdout.strip() == "cli-gpu" and T4 in launched.stderr
    listed = cli("list", *where)
    assert "cli-gpu" in listed.stdout and REPO in listed.stdout
    stopped = cli("stop", "cli-gpu", *where)
    assert stopped.exit_code == 0 and "terminate cli-gpu" in stopped.stdout
    (body,) = creates(azure)
    script = base64.b64decode(body["properties"]["osProfile"]["customData"]).decode()
    registration = script.split("REGISTRATION=")[1].split("\n")[0].strip("'")
    for output in (launched.output, listed.output, stopped.output):
        for secret in (env["GITHUB_TOKEN"], registration, azure.client_secret):
            assert secret not in output
    assert azure.client_secret not in script and env["GITHUB_TOKEN"] not in script


def test_cli_bad_credentials_and_missing_settings_are_one_line(
    azure: AzureEmulator, forge_emulator: Any
) -> None:
    env = _cli_env(forge_emulator)

    def cli(*args: str, **more: str) -> Any:
        return CliRunner().invoke(main, ["runner", *args], env={**env, **more})

    where = ("--cloud", "azure", "--region", LOCATION, "--resource-group", GROUP)
    refused = cli("list", *where, AZURE_CLIENT_SECRET="wrong")
    assert refused.exit_code == 5, refused.output
    assert "AZURE_CLIENT_SECRET" in refused.output and "Traceback" not in refused.output
    assert "wrong" not in refused.output.replace("wrong-", "")
    no_group = cli("list", "--cloud", "azure", "--region", LOCATION)
    assert no_group.exit_code == 2 and "pass --resource-group" in no_group.output
    no_sub = cli("list", *where, AZURE_SUBSCRIPTION_ID="")
    assert no_sub.exit_code == 2 and "AZURE_SUBSCRIPTION_ID" in no_sub.output
    wrong = cli("list", *where, "--zone", "1")
    assert wrong.exit_code == 2 and "--zone is for --cloud gcp" in wrong.output


def test_without_the_azure_extra_the_message_names_it(azure: AzureEmulator) -> None:
    code = (
        "import sys; sys.modules['azure.mgmt.compute'] = None\n"
        "from click.testing import CliRunner\nfrom cml_nb.cli import main\n"
        "r = CliRunner().invoke(main, ['runner', 'list', '--cloud', 'azure', '--region', "
        "'westeurope', '--resource-group', 'g'])\nprint(r.exit_code, r.output)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    assert out.startswith("2 ") and "pip install 'cml-nb[azure]'" in out


def test_oidc_federated_credential_as_in_ci(
    azure: AzureEmulator, github: GitHubRunners, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No client secret: the CI's OIDC token in AZURE_FEDERATED_TOKEN_FILE is the client
    # assertion (DefaultAzureCredential's WorkloadIdentityCredential).
    monkeypatch.delenv("AZURE_CLIENT_SECRET")
    token_file = tmp_path / "oidc-token"
    token_file.write_text(azure.federated_token)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    result = lifecycle.launch(request(name="gpu-oidc"), cloud(), github)
    lifecycle.stop(cloud(), resolver(github), result.name)
    (exchange, *_) = azure.server.requests("POST", "/oauth2/v2.0/token")
    assert b"client_assertion=" in exchange.body and b"client_secret" not in exchange.body


def test_a_vm_that_shut_itself_down_is_deleted_by_cleanup(
    azure: AzureEmulator, github: GitHubRunners, forge_emulator: Any
) -> None:
    # Unlike EC2, a guest shutdown leaves an Azure VM stopped but allocated (billed):
    # the next cleanup deletes it with its NIC, IP and disk.
    lifecycle.launch(request(name="gpu-idle", single=True), cloud(), github)
    azure.guest_shutdown("gpu-idle")
    actions = [str(a) for a in lifecycle.cleanup(cloud(), resolver(github), scope=SCOPE,
                                                 grace_s=0)]  # fmt: skip
    assert any(a.startswith("terminate gpu-idle") for a in actions)
    assert azure.leaks() == EMPTY and forge_emulator.state.repo(REPO).runners == {}
