"""The runner's startup script: cloud-init user-data that is one bash script.

The script (``startup.sh`` beside this module) installs the forge's runner agent
and cml-nb, checks the GPU driver, registers the runner, and shuts the machine
down when it has been idle for the timeout. Its guards fail closed and survive
reboots: systemd units it writes re-arm the max-lifetime shutdown and the metadata
block at every boot, and a guard that cannot be set up shuts the machine down.
Settings are rendered as shell-quoted assignments in its header, so no value can
break out of its quotes.

The rendered text holds a registration secret: ``render`` masks every form of it
(plain, base64 as the clouds' APIs carry user-data, URL-encoded) in this process's
log records from then on, so ``-vv`` debug logs of the cloud SDKs cannot show it.

What a cloud driver should do with it (see docs/runners.md, "Guards"): launch with
instance-initiated shutdown set to terminate (or delete), pass
``StartupSettings.expires_at`` equal to the instance's expiry tag, and set the
cloud's own maximum run duration, where it has one, to ``cloud_max_run_s``.
"""

from __future__ import annotations

import base64
import logging
import shlex
from dataclasses import dataclass
from importlib import resources
from urllib.parse import quote

from cml_nb.secrets import Scrubber

#: GitHub Actions runner release installed when the image has none.
GITHUB_RUNNER_VERSION = "2.321.0"
_MARKER = "# @CONFIG@"
#: Where jobs could read the user-data: each cloud's instance metadata service, for
#: ``StartupSettings.metadata_addresses``. Not Azure's 168.63.129.16: it is also its DNS.
METADATA_ADDRESSES: dict[str, tuple[str, ...]] = {
    # docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
    "aws": ("169.254.169.254", "fd00:ec2::254"),
    # cloud.google.com/compute/docs/metadata/querying-metadata (IPv6: fd20:ce::254)
    "gcp": ("169.254.169.254", "fd20:ce::254"),
    # learn.microsoft.com/azure/virtual-machines/instance-metadata-service
    "azure": ("169.254.169.254",),
}
AWS_METADATA_ADDRESSES = METADATA_ADDRESSES["aws"]
#: How much later than the script's own lifetime guard a cloud's hard limit should fire.
CLOUD_LIMIT_MARGIN_S = 600


@dataclass(frozen=True)
class StartupSettings:
    """Everything the startup script needs to know.

    Attributes:
        name: runner name, the same on the forge and in the instance's tags.
        forge: ``github`` or ``gitlab``.
        forge_url: where the agent registers (``https://github.com/owner/repo``,
            ``https://github.com/org``, or the GitLab instance ``https://gitlab.com``).
        registration: the secret the agent registers with (a GitHub JIT config or
            registration token, or a GitLab runner authentication token).
        registration_kind: ``jit``, ``token`` (GitHub) or ``gitlab``.
        labels: runner labels, comma-separated (GitLab tags are set at creation).
        idle_timeout_s: shut down after this many seconds without a job.
        max_lifetime_s: shut down after this many seconds, whatever happens.
        single: shut down after one job.
        expect_gpu: check ``nvidia-smi`` and fail the boot without a working driver.
        arch: ``x64`` or ``arm64`` (the GitHub runner build to download).
        cml_nb_spec: pip requirement for cml-nb on the runner.
        user_script: the user's own startup script, run as root before the agent.
        runner_dir: where the GitHub agent lives, or the GitLab working directory.
        runner_user: the user jobs run as.
        log_file: the script's log on the instance.
        poll_s: seconds between idle checks.
        gpu_wait_s: how long to wait for the GPU driver after boot.
        metrics_port: gitlab-runner's local metrics port (how busy is detected).
        expires_at: the lifetime deadline, UTC seconds since the epoch (pass the same
            time as the instance's expiry tag); default: first boot + ``max_lifetime_s``.
        metadata_addresses: addresses jobs must not reach (the cloud's metadata service).
        state_dir: root-only folder for the script's state and its secret-free copy.
        systemd_dir: where the guard units are written.
        cloud_dir: cloud-init's folder, whose copies of the user-data are deleted.
        gitlab_config: gitlab-runner's config file (holds the runner's reset token).
    """

    name: str
    forge: str
    forge_url: str
    registration: str
    registration_kind: str
    labels: str
    idle_timeout_s: int
    max_lifetime_s: int
    single: bool = False
    expect_gpu: bool = True
    arch: str = "x64"
    cml_nb_spec: str = "cml-nb"
    user_script: str = ""
    runner_dir: str = "/opt/cml-nb-runner"
    runner_user: str = "runner"
    log_file: str = "/var/log/cml-nb-runner.log"
    poll_s: float = 10
    gpu_wait_s: int = 300
    metrics_port: int = 9252
    expires_at: int | None = None
    metadata_addresses: tuple[str, ...] = AWS_METADATA_ADDRESSES
    state_dir: str = "/var/lib/cml-nb-runner"
    systemd_dir: str = "/etc/systemd/system"
    cloud_dir: str = "/var/lib/cloud"
    gitlab_config: str = "/etc/gitlab-runner/config.toml"


def template() -> str:
    """The startup script before its settings are filled in."""
    return resources.files("cml_nb.runner").joinpath("startup.sh").read_text(encoding="utf-8")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def render(settings: StartupSettings) -> str:
    """The user-data script for ``settings`` (contains the registration secret)."""
    values = {
        "RUNNER_NAME": settings.name,
        "FORGE": settings.forge,
        "FORGE_URL": settings.forge_url,
        "REGISTRATION": settings.registration,
        "REGISTRATION_KIND": settings.registration_kind,
        "LABELS": settings.labels,
        "IDLE_TIMEOUT_SECONDS": str(int(settings.idle_timeout_s)),
        "MAX_LIFETIME_SECONDS": str(max(60, int(settings.max_lifetime_s))),
        "EXPIRES_AT": "" if settings.expires_at is None else str(int(settings.expires_at)),
        "SINGLE": "1" if settings.single else "0",
        "EXPECT_GPU": "1" if settings.expect_gpu else "0",
        "RUNNER_ARCH": settings.arch,
        "RUNNER_VERSION": GITHUB_RUNNER_VERSION,
        "CML_NB_SPEC": settings.cml_nb_spec,
        "USER_SCRIPT_B64": base64.b64encode(settings.user_script.encode()).decode(),
        "RUNNER_DIR": settings.runner_dir,
        "RUNNER_USER": settings.runner_user,
        "LOG_FILE": settings.log_file,
        "POLL_SECONDS": _number(settings.poll_s),
        "GPU_WAIT_SECONDS": str(int(settings.gpu_wait_s)),
        "METRICS_PORT": str(int(settings.metrics_port)),
        "METADATA_ADDRESSES": " ".join(settings.metadata_addresses),
        "STATE_DIR": settings.state_dir,
        "SYSTEMD_DIR": settings.systemd_dir,
        "CLOUD_DIR": settings.cloud_dir,
        "GITLAB_CONFIG": settings.gitlab_config,
    }
    header = "\n".join(f"{key}={shlex.quote(value)}" for key, value in values.items())
    text = template()
    if _MARKER not in text:  # pragma: no cover - guards edits to startup.sh
        raise RuntimeError("startup.sh lost its settings marker")
    rendered = text.replace(_MARKER, header, 1)
    mask_in_logs(secret_forms(settings.registration))
    return rendered


def cloud_max_run_s(settings: StartupSettings) -> int:
    """The hard limit to give a cloud's own max-run-duration setting, where it has one.

    It is later than the script's guard by ``CLOUD_LIMIT_MARGIN_S``, so the script
    unregisters the runner first and the cloud's limit only catches a machine whose
    guards all failed.
    """
    return int(settings.max_lifetime_s) + CLOUD_LIMIT_MARGIN_S


def secret_forms(secret: str) -> list[str]:
    """Every form in which ``secret`` can appear in a cloud API call carrying user-data.

    The plain text; its base64 encoding at each of the three byte alignments it can
    have inside a larger base64 text (RunInstances' ``UserData``, Azure's
    ``customData``), less the characters it shares with its neighbours; and those
    URL-encoded, as in a form-encoded request body.
    """
    if not secret:
        return []
    raw = secret.encode()
    forms = [secret]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = 4 if offset else 0  # the first group mixes in the unknown neighbour
        end = 4 * ((offset + len(raw)) // 3)  # so does a last partial group
        inner = encoded[start:end]
        if len(inner) >= 8:
            forms += [inner, quote(inner, safe="")]
    return list(dict.fromkeys(forms))


class _MaskFilter(logging.Filter):
    """Masks known secrets in every record that reaches a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.scrubber = Scrubber(include_env=False)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call is the handler's to report
            return True
        masked = self.scrubber.scrub(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_MASK = _MaskFilter()


def mask_in_logs(values: list[str]) -> None:
    """Mask ``values`` in log records from now on, at every handler of the root logger.

    Records from any logger (botocore's debug dump of a request included) pass a
    root handler, or ``logging.lastResort`` when there is none.
    """
    _MASK.scrubber.add(*values)
    handlers = [*logging.getLogger().handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _MASK not in handler.filters:
            handler.addFilter(_MASK)
