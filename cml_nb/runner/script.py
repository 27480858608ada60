"""The runner's startup script: cloud-init user-data that is one bash script.

The script (``startup.sh`` beside this module) installs the forge's runner agent
and cml-nb, checks the GPU driver, registers the runner, and shuts the machine
down when it has been idle for the timeout; a ``shutdown -h +N`` scheduled at boot
is the independent max-lifetime guard. Settings are rendered as shell-quoted
assignments in its header, so no value can break out of its quotes.

The rendered text holds a registration secret: never log or print it.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from importlib import resources

#: GitHub Actions runner release installed when the image has none.
GITHUB_RUNNER_VERSION = "2.321.0"
_MARKER = "# @CONFIG@"


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
        # shutdown takes minutes; round up so the guard never fires early.
        "MAX_LIFETIME_MINUTES": str(max(1, -(-int(settings.max_lifetime_s) // 60))),
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
    }
    header = "\n".join(f"{key}={shlex.quote(value)}" for key, value in values.items())
    text = template()
    if _MARKER not in text:  # pragma: no cover - guards edits to startup.sh
        raise RuntimeError("startup.sh lost its settings marker")
    return text.replace(_MARKER, header, 1)
