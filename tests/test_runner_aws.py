"""Runner launch, list, stop and cleanup against moto (EC2) and the forge emulator.

Real boto3 talks to moto's server on 127.0.0.1; real PyGithub and python-gitlab talk
to the forge emulator. Faults come through botocore event hooks. After every test
the ``aws`` fixture asserts that no instance tagged by the test is still alive.
"""

from __future__ import annotations

import base64
import logging
import secrets
import string
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import pytest
from runner_fixtures import (
    REGION,
    Aws,
    aws_error,
    aws_fixture,  # noqa: F401 (a fixture)
    moto_endpoint,  # noqa: F401 (a fixture)
)

from cml_nb.errors import CloudError, ConfigError, ForgeAuthError
from cml_nb.runner import lifecycle
from cml_nb.runner.aws import TAG_EXPIRES, TAG_RUNNER, Ec2
from cml_nb.runner.lifecycle import LaunchRequest
from cml_nb.runner.registration import GitHubRunners, GitLabRunners

REPO = "octo/gpu"
SCOPE = lifecycle.Scope("github", REPO)


def fake_token(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


@pytest.fixture(name="github")
def github_fixture(forge_emulator: Any) -> GitHubRunners:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "octo")
    forge_emulator.state.add_repo("github", REPO)
    return GitHubRunners(REPO, token=token, api_url=forge_emulator.github_api)


@pytest.fixture(name="gitlab")
def gitlab_fixture(forge_emulator: Any) -> GitLabRunners:
    token = fake_token("glpat-")
    forge_emulator.state.add_token(token, "octo")
    forge_emulator.state.add_repo("gitlab", "group/gpu")
    return GitLabRunners("group/gpu", token=token, url=forge_emulator.root)


def cloud(aws: Aws, **options: Any) -> Ec2:
    return Ec2(REGION, session=aws.session, endpoint_url=aws.endpoint, **options)


def request(aws: Aws, **overrides: Any) -> LaunchRequest:
    values: dict[str, Any] = {
        "instance_type": "g5.xlarge",
        "labels": ("cml-gpu",),
        "ami": aws.ami(),
        "tags": aws.tag,
        "wait_running_s": 10,
        "wait_registered_s": 0,
        "poll_s": 0.1,
    }
    values.update(overrides)
    return LaunchRequest(**values)


def resolver(*forges: Any) -> lifecycle.ForgeResolver:
    by_key = {(f.name, f.repository): f for f in forges}
    return lambda name, repository: by_key.get((name, repository))


def test_launch_tags_in_the_same_call_and_stop_terminates(aws: Aws, github: GitHubRunners) -> None:
    sent: list[dict[str, Any]] = []
    aws.on("provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(params))
    result = lifecycle.launch(request(aws, name="gpu-1", idle_timeout_s=300), cloud(aws), github)

    assert len(sent) == 1
    tagged = {t["Key"]: t["Value"] for t in sent[0]["TagSpecifications"][0]["Tags"]}
    assert tagged[TAG_RUNNER] == "gpu-1" and tagged["cml-nb:repository"] == REPO
    assert sent[0]["InstanceInitiatedShutdownBehavior"] == "terminate"
    # Containers a job starts are one hop away: IMDSv2 with hop limit 1 does not answer them.
    assert sent[0]["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert sent[0]["MetadataOptions"]["HttpTokens"] == "required"
    (live,) = aws.live()
    tags = {t["Key"]: t["Value"] for t in live["Tags"]}
    expires = datetime.fromisoformat(tags[TAG_EXPIRES].replace("Z", "+00:00"))
    assert (
        timedelta(hours=5, minutes=59) < expires - datetime.now(timezone.utc) <= timedelta(hours=6)
    )
    assert live["InstanceType"] == "g5.xlarge" and result.instance.id == live["InstanceId"]
    user_data = aws.ec2.describe_instance_attribute(
        InstanceId=live["InstanceId"], Attribute="userData"
    )["UserData"]["Value"]
    script = base64.b64decode(user_data).decode()
    assert "IDLE_TIMEOUT_SECONDS=300" in script and "EXPECT_GPU=1" in script
    assert "LABELS=cml-gpu" in script and "REGISTRATION_KIND=token" in script

    views = lifecycle.list_runners(cloud(aws), resolver(github))
    assert [(v.name, v.forge_status) for v in views if v.instance_id == live["InstanceId"]] == [
        ("gpu-1", "missing")
    ]
    actions = lifecycle.stop(cloud(aws), resolver(github), "gpu-1")
    assert [a.action for a in actions] == ["terminate"]
    assert aws.live() == []


def test_user_data_deadline_is_the_expiry_tag(aws: Aws, github: GitHubRunners) -> None:
    result = lifecycle.launch(
        request(aws, name="gpu-deadline", max_lifetime_s=7200), cloud(aws), github
    )
    (live,) = aws.live()
    tags = {t["Key"]: t["Value"] for t in live["Tags"]}
    expires = datetime.fromisoformat(tags[TAG_EXPIRES].replace("Z", "+00:00"))
    user_data = aws.ec2.describe_instance_attribute(
        InstanceId=result.instance.id, Attribute="userData"
    )["UserData"]["Value"]
    script = base64.b64decode(user_data).decode()
    # The instance powers off at EXPIRES_AT; cleanup terminates at the tag: the same second.
    assert f"EXPIRES_AT={int(expires.timestamp())}\n" in script
    lifecycle.stop(cloud(aws), resolver(github), "gpu-deadline")
    assert aws.live() == []


def test_unknown_instance_type_fails_before_anything_is_created(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    with pytest.raises(ConfigError, match="unknown instance type 'g5.huge'"):
        lifecycle.launch(request(aws, instance_type="g5.huge"), cloud(aws), github)
    assert aws.all() == []
    assert forge_emulator.requests("POST", "/actions/runners") == []


def test_unknown_ami_fails_before_anything_is_created(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    with pytest.raises(CloudError, match="InvalidAMIID.*pass --ami"):
        lifecycle.launch(request(aws, ami="ami-00000000", single=True), cloud(aws), github)
    assert aws.all() == []
    assert forge_emulator.requests("POST", "/actions/runners") == []


def test_image_of_the_wrong_architecture_fails_early(aws: Aws, github: GitHubRunners) -> None:
    with pytest.raises(ConfigError, match="is for x86_64 but g5g.xlarge runs arm64"):
        lifecycle.launch(request(aws, instance_type="g5g.xlarge"), cloud(aws), github)
    assert aws.all() == []


def test_launch_that_fails_after_registration_removes_the_forge_runner(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    aws.on(
        "before-send.ec2.RunInstances",
        lambda request, **_: aws_error("UnauthorizedOperation", 403, "not allowed"),
    )
    with pytest.raises(CloudError, match="UnauthorizedOperation.*EC2 permissions"):
        lifecycle.launch(request(aws, single=True), cloud(aws), github)
    assert aws.all() == []
    assert forge_emulator.state.repo(REPO).runners == {}  # the JIT runner was removed again


def _zone(request: Any) -> str:
    body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
    return parse_qs(body).get("Placement.AvailabilityZone", [""])[0]


def test_capacity_errors_are_retried_in_other_zones(aws: Aws, github: GitHubRunners) -> None:
    tried: list[str] = []

    def no_capacity_in_a_or_b(request: Any, **_: Any) -> Any:
        tried.append(_zone(request))
        if tried[-1] in ("us-west-2a", "us-west-2b"):
            return aws_error("InsufficientInstanceCapacity", 500)
        return None

    aws.on("before-send.ec2.RunInstances", no_capacity_in_a_or_b)
    result = lifecycle.launch(request(aws), cloud(aws), github)
    assert tried[:2] == ["us-west-2a", "us-west-2b"] and result.instance.zone == tried[-1]
    lifecycle.stop(cloud(aws), resolver(github), result.name)


def test_spot_without_capacity_anywhere_fails_clearly(aws: Aws, github: GitHubRunners) -> None:
    aws.on(
        "before-send.ec2.RunInstances",
        lambda request, **_: aws_error("InsufficientInstanceCapacity", 500),
    )
    with pytest.raises(CloudError, match=r"no capacity for g5\.xlarge.*--spot-fallback"):
        lifecycle.launch(request(aws, spot=True), cloud(aws), github)
    assert aws.all() == []


def test_spot_falls_back_to_on_demand(aws: Aws, github: GitHubRunners) -> None:
    def no_spot(request: Any, **_: Any) -> Any:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        return aws_error("InsufficientInstanceCapacity", 500) if "MarketType=spot" in body else None

    aws.on("before-send.ec2.RunInstances", no_spot)
    result = lifecycle.launch(
        request(aws, spot=True, spot_fallback=True, spot_price="0.5"), cloud(aws), github
    )
    (live,) = aws.live()
    assert live.get("InstanceLifecycle") != "spot" and result.instance.id == live["InstanceId"]
    lifecycle.stop(cloud(aws), resolver(github), result.name)


def test_spot_instance_when_there_is_capacity(aws: Aws, github: GitHubRunners) -> None:
    result = lifecycle.launch(request(aws, spot=True), cloud(aws), github)
    assert result.instance.spot
    lifecycle.stop(cloud(aws), resolver(github), result.name)


def test_throttling_is_retried_with_backoff(aws: Aws, github: GitHubRunners) -> None:
    answers: list[str] = []

    def throttle_twice(request: Any, **_: Any) -> Any:
        answers.append("throttled" if len(answers) < 2 else "passed")
        return aws_error("RequestLimitExceeded", 503) if answers[-1] == "throttled" else None

    aws.on("before-send.ec2.RunInstances", throttle_twice)
    result = lifecycle.launch(request(aws), cloud(aws), github)
    assert answers == ["throttled", "throttled", "passed"]
    lifecycle.stop(cloud(aws), resolver(github), result.name)


def test_endless_throttling_fails_clearly_and_leaves_nothing(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    aws.on(
        "before-send.ec2.RunInstances",
        lambda request, **_: aws_error("RequestLimitExceeded", 503),
    )
    with pytest.raises(CloudError, match="RequestLimitExceeded.*kept throttling"):
        lifecycle.launch(request(aws, single=True), cloud(aws, max_attempts=2), github)
    assert aws.live() == []
    assert forge_emulator.state.repo(REPO).runners == {}


def test_failure_after_the_instance_exists_terminates_it(aws: Aws, github: GitHubRunners) -> None:
    def lost_response(**_: Any) -> None:
        raise ConnectionResetError("the launcher lost AWS's answer")

    aws.on("after-call.ec2.RunInstances", lost_response)
    with pytest.raises(ConnectionResetError):
        lifecycle.launch(request(aws), cloud(aws), github)
    (created,) = aws.all()  # it was created, found by its tags, and terminated
    assert created["State"]["Name"] in ("shutting-down", "terminated")
    assert aws.live() == []


def test_interrupt_while_waiting_terminates_the_instance(aws: Aws, github: GitHubRunners) -> None:
    launched: list[bool] = []

    def ctrl_c_once_launched(**_: Any) -> None:
        if launched == [True]:  # the first wait for 'running' after the launch
            launched.append(True)
            raise KeyboardInterrupt

    aws.on("after-call.ec2.RunInstances", lambda **_: launched.append(True))
    aws.on("before-call.ec2.DescribeInstances", ctrl_c_once_launched)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.launch(request(aws), cloud(aws), github)
    assert len(aws.all()) == 1 and aws.live() == []


def test_registration_timeout_terminates_and_unregisters(
    aws: Aws, github: GitHubRunners, forge_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CloudError, match="did not come online on github within 1 s") as caught:
        lifecycle.launch(request(aws, single=True, wait_registered_s=1), cloud(aws), github)
    assert aws.live() == [] and len(aws.all()) == 1
    assert forge_emulator.state.repo(REPO).runners == {}
    secret = base64.b64decode(
        aws.ec2.describe_instance_attribute(
            InstanceId=aws.all()[0]["InstanceId"], Attribute="userData"
        )["UserData"]["Value"]
    ).decode()
    jit = secret.split("REGISTRATION=")[1].split("\n")[0]
    assert len(jit) > 20
    for text in (str(caught.value), caplog.text):
        assert jit not in text and github.scrubber.scrub(jit) == "***"


def _come_online(forge_emulator: Any, name: str, stop: threading.Event) -> None:
    """Plays the runner agent: marks the runner online once it exists."""
    repo = forge_emulator.state.repo(REPO)
    while not stop.is_set():
        with forge_emulator.state.lock:
            for runner in repo.runners.values():
                if runner["name"] == name:
                    runner["status"] = "online"
                    return
        time.sleep(0.05)


def test_waits_for_the_runner_then_cleanup_spares_it_until_expiry(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    stop = threading.Event()
    agent = threading.Thread(target=_come_online, args=(forge_emulator, "gpu-online", stop))
    agent.start()
    try:
        result = lifecycle.launch(
            request(aws, name="gpu-online", single=True, wait_registered_s=10),
            cloud(aws),
            github,
        )
    finally:
        stop.set()
        agent.join()
    assert result.registered
    views = [
        v for v in lifecycle.list_runners(cloud(aws), resolver(github)) if v.name == "gpu-online"
    ]
    assert [v.forge_status for v in views] == ["online"]

    spared = lifecycle.cleanup(cloud(aws), resolver(github), scope=SCOPE, grace_s=0)
    assert not [a for a in spared if "gpu-online" in a.target]
    assert len(aws.live()) == 1

    later = datetime.now(timezone.utc) + timedelta(hours=7)
    actions = lifecycle.cleanup(cloud(aws), resolver(github), scope=SCOPE, grace_s=0, now=later)
    mine = [str(a) for a in actions if "gpu-online" in a.target]
    assert mine and "max lifetime ended" in mine[0]
    assert aws.live() == []


def test_busy_runner_is_not_stopped_without_force(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    result = lifecycle.launch(request(aws, name="gpu-busy", single=True), cloud(aws), github)
    runner = next(iter(forge_emulator.state.repo(REPO).runners.values()))
    runner.update(status="online", busy=True)
    with pytest.raises(CloudError, match="running a job.*--force"):
        lifecycle.stop(cloud(aws), resolver(github), "gpu-busy")
    assert len(aws.live()) == 1
    actions = lifecycle.stop(cloud(aws), resolver(github), result.name, force=True)
    assert sorted(a.action for a in actions) == ["terminate", "unregister"]
    assert forge_emulator.state.repo(REPO).runners == {} and aws.live() == []


def test_cleanup_terminates_orphans_and_unregisters_dead_runners(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    lifecycle.launch(request(aws, name="gpu-orphan", single=True), cloud(aws), github)
    assert len(forge_emulator.state.repo(REPO).runners) == 1  # registered, never online

    within_grace = lifecycle.cleanup(cloud(aws), resolver(github), scope=SCOPE, grace_s=3600)
    assert within_grace == []
    dry = lifecycle.cleanup(cloud(aws), resolver(github), scope=SCOPE, grace_s=0, dry_run=True)
    assert len(aws.live()) == 1 and any("gpu-orphan" in a.target for a in dry)

    done = lifecycle.cleanup(cloud(aws), resolver(github), scope=SCOPE, grace_s=0)
    actions = [str(a) for a in done]
    assert any("gpu-orphan" in a and "offline" in a for a in actions if a.startswith("terminate"))
    assert any(a.startswith("unregister github runner") for a in actions)
    assert aws.live() == [] and forge_emulator.state.repo(REPO).runners == {}


def test_gitlab_runner_launch_and_stop(
    aws: Aws, gitlab: GitLabRunners, forge_emulator: Any
) -> None:
    result = lifecycle.launch(
        request(aws, name="gl-gpu", labels=("cml-gpu", "cuda")), cloud(aws), gitlab
    )
    repo = forge_emulator.state.repo("group/gpu")
    (runner,) = repo.runners.values()
    assert runner["description"] == "gl-gpu" and runner["tag_list"] == ["cml-gpu", "cuda"]
    script = base64.b64decode(
        aws.ec2.describe_instance_attribute(InstanceId=result.instance.id, Attribute="userData")[
            "UserData"
        ]["Value"]
    ).decode()
    assert f"REGISTRATION={runner['token']}" in script
    assert f"FORGE_URL={forge_emulator.root}" in script
    views = lifecycle.list_runners(cloud(aws), resolver(gitlab))
    assert [v.forge_status for v in views if v.name == "gl-gpu"] == ["offline"]
    actions = lifecycle.stop(cloud(aws), resolver(gitlab), "gl-gpu")
    assert sorted(a.action for a in actions) == ["terminate", "unregister"]
    assert repo.runners == {} and aws.live() == []


def test_gitlab_runner_whose_jobs_cannot_be_read_is_not_stopped(
    aws: Aws, gitlab: GitLabRunners, forge_emulator: Any
) -> None:
    result = lifecycle.launch(request(aws, name="gl-busy"), cloud(aws), gitlab)
    (runner,) = forge_emulator.state.repo("group/gpu").runners.values()
    runner.update(online=True, status="online")
    # A token that may list the project's runners but not read a runner's jobs (403).
    reader = fake_token("glpat-")
    forge_emulator.state.add_token(reader, "octo", permissions={"contents", "issues"})
    limited = GitLabRunners("group/gpu", token=reader, url=forge_emulator.root)

    views = lifecycle.list_runners(cloud(aws), resolver(limited))
    assert [v.forge_status for v in views if v.name == "gl-busy"] == ["unknown"]
    with pytest.raises(CloudError, match=r"may be running a job.*--force") as refused:
        lifecycle.stop(cloud(aws), resolver(limited), "gl-busy")
    assert "\n" not in str(refused.value) and reader not in str(refused.value)
    assert len(aws.live()) == 1 and len(forge_emulator.state.repo("group/gpu").runners) == 1

    # With a token that can read the jobs: a running job refuses, a finished one does not.
    runner["jobs"] = [{"id": 7, "status": "running"}]
    with pytest.raises(CloudError, match="is running a job"):
        lifecycle.stop(cloud(aws), resolver(gitlab), "gl-busy")
    runner["jobs"] = [{"id": 7, "status": "success"}]
    actions = lifecycle.stop(cloud(aws), resolver(gitlab), result.name)
    assert sorted(a.action for a in actions) == ["terminate", "unregister"]
    assert aws.live() == []


def test_refused_registration_creates_nothing_and_says_why(aws: Aws, forge_emulator: Any) -> None:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "reader", permissions={"contents"})
    forge_emulator.state.add_repo("github", REPO)
    github = GitHubRunners(REPO, token=token, api_url=forge_emulator.github_api)
    with pytest.raises(ForgeAuthError, match="administer the repository's self-hosted runners"):
        lifecycle.launch(request(aws), cloud(aws), github)
    assert aws.all() == []


def test_forge_faults_and_rate_limits_are_retried(
    aws: Aws, github: GitHubRunners, gitlab: GitLabRunners, forge_emulator: Any
) -> None:
    forge_emulator.faults.bad_gateway("POST", "generate-jitconfig", times=1)
    forge_emulator.faults.secondary_rate_limit("POST", "generate-jitconfig", times=1)
    forge_emulator.faults.too_many_requests("POST", "/user/runners", times=2)
    for forge in (github, gitlab):
        result = lifecycle.launch(request(aws, single=True), cloud(aws), forge)
        lifecycle.stop(cloud(aws), resolver(forge), result.name)
    assert len(forge_emulator.requests("POST", "generate-jitconfig")) == 3
    assert len(forge_emulator.requests("POST", "/user/runners")) == 3


def test_cleanup_leaves_other_repositories_runners_alone(
    aws: Aws, github: GitHubRunners, forge_emulator: Any
) -> None:
    token = fake_token("ghp_")
    forge_emulator.state.add_token(token, "someone")
    forge_emulator.state.add_repo("github", "someone/else")
    other = GitHubRunners("someone/else", token=token, api_url=forge_emulator.github_api)
    mine = lifecycle.launch(request(aws, name="gpu-mine", single=True), cloud(aws), github)
    theirs = lifecycle.launch(request(aws, name="gpu-theirs", single=True), cloud(aws), other)
    # Launched by hand with cml-nb's name tag but no expiry or repository: not ours to judge.
    untagged = aws.ec2.run_instances(
        ImageId=aws.ami(), InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": TAG_RUNNER, "Value": "hand-made"},
            *({"Key": k, "Value": v} for k, v in aws.tag.items()),
        ]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    later = datetime.now(timezone.utc) + timedelta(hours=7)  # all of them past expiry

    actions = lifecycle.cleanup(cloud(aws), resolver(github, other), scope=SCOPE, now=later)
    assert [a.target for a in actions if a.action == "terminate"] == [
        f"{mine.instance.id} (gpu-mine)"
    ]
    alive = {i["InstanceId"] for i in aws.live()}
    assert alive == {theirs.instance.id, untagged}
    assert [r["name"] for r in forge_emulator.state.repo("someone/else").runners.values()] == [
        "gpu-theirs"
    ]
    # Repository names are compared as the forges route them: case-insensitively.
    shouty = lifecycle.Scope("github", "SomeOne/Else")
    assert lifecycle.cleanup(cloud(aws), resolver(other), scope=shouty, dry_run=True, now=later)
    # Another forge's project of the same path is not this scope either.
    gitlab_scope = lifecycle.Scope("gitlab", "someone/else")
    assert lifecycle.cleanup(cloud(aws), resolver(other), scope=gitlab_scope, now=later) == []

    swept = lifecycle.cleanup(cloud(aws), resolver(github, other), scope=None, now=later)
    reasons = {a.target: a.reason for a in swept if a.action == "terminate"}
    assert reasons == {
        f"{theirs.instance.id} (gpu-theirs)": "its max lifetime ended at "
        f"{theirs.instance.expires:%Y-%m-%d %H:%M} UTC",
        f"{untagged} (hand-made)": "it has no valid cml-nb:expires tag",
    }
    assert aws.live() == [] and forge_emulator.state.repo("someone/else").runners == {}
