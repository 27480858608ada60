"""Runner lifecycle: launch, list, stop and clean up, joining cloud and forge.

``launch`` is a short pipeline: check the instance type (nothing is created for an
unknown one), get a registration from the forge, render the startup script, create
the tagged instance, wait for it to run and for its runner to come online. Any
failure or interruption after the registration undoes everything: the instance is
terminated (found by its tags even when the launch call itself crashed) and the
forge runner is removed. A launcher killed outright leaves a tagged instance whose
runner never comes online: ``cleanup`` terminates it.

The forge's view of a runner is its heartbeat: ``cleanup`` terminates instances past
their ``cml-nb:expires`` tag, and, after a grace period, instances whose runner is
missing or offline on the forge. A runner that is online is never terminated before
its expiry, so jobs are not killed mid-way.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cml_nb.errors import CloudError, CmlNbError, ConfigError
from cml_nb.runner.clouds import (
    TAG_EXPIRES,
    TAG_FORGE,
    TAG_LABELS,
    TAG_REPOSITORY,
    TAG_RUNNER,
    Cloud,
    Instance,
    LaunchSpec,
)
from cml_nb.runner.registration import ForgeRunner, Registration, RunnerForge
from cml_nb.runner.script import METADATA_ADDRESSES, StartupSettings, render

log = logging.getLogger(__name__)

#: Given (forge name, repository) from an instance's tags, a forge client or None.
ForgeResolver = Callable[[str, str], "RunnerForge | None"]


@dataclass(frozen=True)
class LaunchRequest:
    """What ``cml-nb runner launch`` asks for (durations in seconds)."""

    instance_type: str
    labels: tuple[str, ...]
    idle_timeout_s: int = 600
    max_lifetime_s: int = 6 * 3600
    name: str | None = None
    single: bool = False
    spot: bool = False
    spot_price: str | None = None
    spot_fallback: bool = False
    ami: str | None = None
    disk_gb: int = 100
    subnet: str | None = None
    security_groups: tuple[str, ...] = ()
    startup_script: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    cml_nb_spec: str = "cml-nb"
    wait_running_s: float = 600
    wait_registered_s: float = 900
    poll_s: float = 10


@dataclass(frozen=True)
class LaunchResult:
    """A launched runner."""

    name: str
    instance: Instance
    registered: bool


@dataclass(frozen=True)
class RunnerView:
    """One runner as ``cml-nb runner list`` shows it."""

    name: str
    instance_id: str
    state: str
    instance_type: str
    age_s: float | None
    expires_in_s: float | None
    forge_status: str  # online, busy, offline, missing, unknown
    repository: str


@dataclass(frozen=True)
class Scope:
    """The repository a ``cleanup`` runs for: only its instances are touched.

    Attributes:
        forge: ``github`` or ``gitlab`` (the ``cml-nb:forge`` tag).
        repository: ``owner/repo`` or a GitLab project path (``cml-nb:repository``);
            compared case-insensitively, as both forges route repository names.
    """

    forge: str
    repository: str

    def covers(self, instance: Instance) -> bool:
        """Whether ``instance`` was launched for this forge and repository."""
        forge, repository = _key(instance)
        return (forge, repository.strip("/").lower()) == (
            self.forge,
            self.repository.strip("/").lower(),
        )


@dataclass(frozen=True)
class CleanupAction:
    """One thing ``cleanup`` did (or would do, in a dry run)."""

    action: str  # "terminate" or "unregister"
    target: str
    reason: str

    def __str__(self) -> str:
        return f"{self.action} {self.target}: {self.reason}"


def new_name() -> str:
    """A fresh runner name, ``cml-nb-`` and 8 hex digits."""
    return f"cml-nb-{secrets.token_hex(4)}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def runner_tags(
    name: str, forge: RunnerForge, request: LaunchRequest, now: datetime
) -> dict[str, str]:
    """Every tag of a runner instance: the user's, then cml-nb's (which win)."""
    expires = now + timedelta(seconds=request.max_lifetime_s)
    return {
        **request.tags,
        "Name": name,
        TAG_RUNNER: name,
        TAG_EXPIRES: expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        TAG_FORGE: forge.name,
        TAG_REPOSITORY: forge.repository,
        TAG_LABELS: ",".join(request.labels),
    }


def launch(
    request: LaunchRequest,
    cloud: Cloud,
    forge: RunnerForge,
    *,
    progress: Callable[[str], None] = log.info,
) -> LaunchResult:
    """Launch one runner; on any failure leave nothing behind.

    Args:
        request: what to launch.
        cloud: the cloud region to launch in.
        forge: the repository the runner serves.
        progress: receives one line per step (never secrets).

    Returns:
        The runner's name, its instance, and whether it was seen online.

    Raises:
        ConfigError: the instance type or options are invalid (nothing was created).
        CloudError: the cloud failed, or the runner did not come online in time (the
            instance was terminated).
        ForgeError: the forge refused the registration.
    """
    if not request.labels:
        raise ConfigError("no --labels: jobs pick runners by label, e.g. --labels cml-gpu")
    name = request.name or new_name()
    cloud.check_name(name)
    if cloud.instances(name=name):
        raise ConfigError(f"a runner named {name!r} already runs: pick another --name")
    # Everything that can be checked is checked before anything is created.
    info = cloud.describe_instance_type(request.instance_type)
    cloud.zones_offering(request.instance_type)
    ami = request.ami or cloud.default_ami(info)
    cloud.check_image(ami, info)
    registration: Registration | None = None
    instance: Instance | None = None
    # One clock reading for the tag and the script, so the on-instance deadline and the
    # cml-nb:expires tag that cleanup reads name the same second.
    launched_at = _utcnow().replace(microsecond=0)
    tags = runner_tags(name, forge, request, launched_at)
    try:
        registration = forge.register(name, list(request.labels), single=request.single)
        cloud.scrubber.add(registration.secret)
        progress(
            f"{name}: registration from {forge.name} for {forge.repository} ({registration.kind})"
        )
        settings = StartupSettings(
            name=name,
            forge=forge.name,
            forge_url=registration.url,
            registration=registration.secret,
            registration_kind=registration.kind,
            labels=",".join(request.labels),
            idle_timeout_s=request.idle_timeout_s,
            max_lifetime_s=request.max_lifetime_s,
            single=request.single,
            expect_gpu=info.gpus > 0,
            arch="arm64" if info.architecture == "arm64" else "x64",
            cml_nb_spec=request.cml_nb_spec,
            user_script=request.startup_script,
            # The metadata service jobs must not reach is the cloud's own (AWS's for plugins).
            metadata_addresses=METADATA_ADDRESSES.get(cloud.name, METADATA_ADDRESSES["aws"]),
            expires_at=int((launched_at + timedelta(seconds=request.max_lifetime_s)).timestamp()),
        )
        spec = LaunchSpec(
            name=name,
            instance_type=request.instance_type,
            ami=ami,
            user_data=render(settings),
            tags=tags,
            disk_gb=request.disk_gb,
            subnet=request.subnet,
            security_groups=request.security_groups,
            spot=request.spot,
            spot_price=request.spot_price,
            spot_fallback=request.spot_fallback,
            max_lifetime_s=request.max_lifetime_s,
        )
        instance = cloud.launch(spec)
        progress(f"{name}: {instance.id} ({instance.instance_type}, {instance.zone}) launched")
        cloud.wait_running(instance.id, request.wait_running_s)
        registered = False
        if request.wait_registered_s > 0:
            _wait_online(cloud, forge, name, request.wait_registered_s, request.poll_s)
            registered = True
            progress(f"{name}: online on {forge.name}")
        return LaunchResult(name, instance, registered)
    except BaseException as failure:
        if registration is not None or not isinstance(failure, CmlNbError):
            _undo(cloud, forge, name, registration, instance, failure)
        raise


def _wait_online(
    cloud: Cloud, forge: RunnerForge, name: str, timeout_s: float, poll_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        runner = next((r for r in forge.runners() if r.name == name), None)
        if runner is not None and runner.online:
            return
        if time.monotonic() >= deadline:
            raise CloudError(
                f"runner {name} did not come online on {forge.name} within {timeout_s:.0f} s, "
                f"so its instance was terminated: read its boot log ({cloud.boot_log_hint}), "
                "check the image has NVIDIA drivers, or raise --register-timeout"
            )
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def _undo(
    cloud: Cloud,
    forge: RunnerForge,
    name: str,
    registration: Registration | None,
    instance: Instance | None,
    failure: BaseException,
) -> None:
    """Terminate what a failed launch created; raise loudly only if that fails too."""
    problems: list[str] = []
    ids = [instance.id] if instance else []
    # The launch call may have created the machine and then failed: look for its tags.
    attempts = 1 if isinstance(failure, CmlNbError) and instance is None else 3
    for attempt in range(attempts):
        try:
            ids += [i.id for i in cloud.instances(name=name)]
        except CmlNbError as exc:
            problems.append(str(exc))
        if ids or attempt == attempts - 1:
            break
        time.sleep(2)  # list calls are eventually consistent (EC2's describe calls are)
    try:
        for terminated in cloud.terminate(ids):
            log.warning("%s: terminated %s after the launch failed", name, terminated)
    except CmlNbError as exc:
        problems.append(str(exc))
    runner_ids = {registration.runner_id} if registration and registration.runner_id else set()
    try:
        runner_ids |= {r.id for r in forge.runners() if r.name == name}
        for runner_id in runner_ids:
            forge.remove(runner_id)
    except CmlNbError as exc:
        problems.append(f"could not remove runner {name} from {forge.name}: {exc}")
    if problems:
        raise CloudError(
            f"the launch of {name} failed ({failure}) and cleaning up failed too: "
            f"{'; '.join(problems)}; run 'cml-nb runner cleanup' or terminate "
            f"{', '.join(sorted(set(ids))) or 'instances tagged ' + TAG_RUNNER + '=' + name} by hand"
        ) from failure


class _Forges:
    """Forge clients and their runner lists, one per (forge, repository), fetched once."""

    def __init__(self, resolve: ForgeResolver) -> None:
        self.resolve = resolve
        self.clients: dict[tuple[str, str], RunnerForge | None] = {}
        self.lists: dict[tuple[str, str], list[ForgeRunner] | None] = {}

    def client(self, key: tuple[str, str]) -> RunnerForge | None:
        if key not in self.clients:
            self.clients[key] = self.resolve(*key) if all(key) else None
        return self.clients[key]

    def runners(self, key: tuple[str, str]) -> list[ForgeRunner] | None:
        """The forge's runners, or None when the forge cannot be asked (then only expiry counts)."""
        if key not in self.lists:
            forge = self.client(key)
            try:
                self.lists[key] = None if forge is None else forge.runners()
            except CmlNbError as exc:
                log.warning("cannot list the runners of %s: %s", "/".join(key), exc)
                self.lists[key] = None
        return self.lists[key]


def _key(instance: Instance) -> tuple[str, str]:
    return instance.tags.get(TAG_FORGE, ""), instance.tags.get(TAG_REPOSITORY, "")


def list_runners(cloud: Cloud, resolve: ForgeResolver) -> list[RunnerView]:
    """Live runner instances joined with their forge runners by name."""
    now = _utcnow()
    forges = _Forges(resolve)
    views = []
    for instance in cloud.instances():
        runners = forges.runners(_key(instance))
        views.append(
            RunnerView(
                name=instance.name,
                instance_id=instance.id,
                state=instance.state,
                instance_type=instance.instance_type,
                age_s=(now - instance.launch_time).total_seconds(),
                expires_in_s=(instance.expires - now).total_seconds() if instance.expires else None,
                forge_status=_status(runners, instance.name),
                repository="/".join(filter(None, _key(instance))),
            )
        )
    return views


def _status(runners: list[ForgeRunner] | None, name: str) -> str:
    if runners is None:
        return "unknown"
    runner = next((r for r in runners if r.name == name), None)
    if runner is None:
        return "missing"
    if runner.busy_unknown:
        return "unknown"  # online, and the forge would not say whether a job runs
    if runner.busy:
        return "busy"
    return "online" if runner.online else "offline"


def stop(
    cloud: Cloud, resolve: ForgeResolver, name: str, *, force: bool = False
) -> list[CleanupAction]:
    """Unregister runner ``name`` from its forge, then terminate its instance.

    Raises:
        CloudError: no such runner, or it is running a job and ``force`` is off.
    """
    instances = cloud.instances(name=name)
    if not instances:
        raise CloudError(f"no running instance for runner {name!r}: see 'cml-nb runner list'")
    actions: list[CleanupAction] = []
    forge = resolve(*_key(instances[0]))
    if forge is not None:
        mine = [r for r in forge.runners() if r.name == name]
        if any(r.busy_unknown for r in mine) and not force:
            raise CloudError(
                f"runner {name} may be running a job: {forge.name} would not show its jobs to "
                "this token (use one that can read the runner's jobs), or pass --force to "
                "stop it anyway"
            )
        if any(r.busy for r in mine) and not force:
            raise CloudError(
                f"runner {name} is running a job: wait for it to finish (it stops when idle), "
                "or pass --force to kill the job"
            )
        for runner in mine:
            forge.remove(runner.id)
            actions.append(CleanupAction("unregister", f"{forge.name} runner {runner.id}", name))
    for instance_id in cloud.terminate(i.id for i in instances):
        actions.append(CleanupAction("terminate", instance_id, f"runner {name} stopped"))
    return actions


def cleanup(
    cloud: Cloud,
    resolve: ForgeResolver,
    *,
    scope: Scope | None,
    grace_s: float = 900,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[CleanupAction]:
    """Terminate expired and orphaned runner instances; unregister their forge runners.

    An instance goes when its ``cml-nb:expires`` time has passed, or, once it is older
    than ``grace_s``, when its forge runner is missing or offline. Forge runners of
    cml-nb instances that no longer run are unregistered.

    Args:
        cloud: the region to clean up.
        resolve: forge clients for the instances' (forge, repository) tags.
        scope: only instances launched for this forge and repository are looked at
            (another repository's runners, or instances without the tags, are left
            alone); ``None`` sweeps every repository's (an administrator's choice:
            ``--all-repositories``). Required, so no caller sweeps by default.
        grace_s: spare instances younger than this whose runner is not online yet.
        dry_run: report, change nothing.
        now: the current time (for expiry).
    """
    now = now or _utcnow()
    forges = _Forges(resolve)
    actions: list[CleanupAction] = []
    doomed: list[str] = []
    terminated: list[Instance] = []

    def _in_scope(found: list[Instance]) -> list[Instance]:
        return [i for i in found if scope is None or scope.covers(i)]

    for instance in _in_scope(cloud.instances()):
        reason = _why_terminate(instance, forges.runners(_key(instance)), now, grace_s)
        if reason:
            doomed.append(instance.id)
            terminated.append(instance)
            actions.append(CleanupAction("terminate", f"{instance.id} ({instance.name})", reason))
    if doomed and not dry_run:
        cloud.terminate(doomed)
    # Forge runners whose machine is gone: cml-nb instances in any state, by name.
    live = {i.name for i in _in_scope(cloud.instances()) if i.id not in doomed}
    # GCP and Azure forget a deleted machine at once: count this run's terminations too.
    listed = _in_scope(cloud.instances(gone=True))
    known = listed + [i for i in terminated if i.id not in {k.id for k in listed}]
    for key in sorted({_key(i) for i in known}):
        runners, forge = forges.runners(key), forges.client(key)
        names = {i.name for i in known if _key(i) == key} - live
        for runner in runners or []:
            if runner.name in names and not runner.online and forge is not None:
                if not dry_run:
                    forge.remove(runner.id)
                actions.append(
                    CleanupAction(
                        "unregister",
                        f"{key[0]} runner {runner.id} ({runner.name})",
                        "its instance is gone",
                    )
                )
    return actions


def _why_terminate(
    instance: Instance, runners: list[ForgeRunner] | None, now: datetime, grace_s: float
) -> str | None:
    expires = instance.expires
    if expires is None:
        return "it has no valid cml-nb:expires tag"
    if now >= expires:
        return f"its max lifetime ended at {expires:%Y-%m-%d %H:%M} UTC"
    if runners is None or (now - instance.launch_time).total_seconds() < grace_s:
        return None
    runner = next((r for r in runners if r.name == instance.name), None)
    if runner is None:
        return (
            f"its runner is not registered on {instance.tags.get(TAG_FORGE)} after the grace period"
        )
    if not runner.online and not runner.busy:
        return "its runner is offline (the agent stopped)"
    return None
