"""The runner startup script: shellcheck, and its idle shutdown run locally.

The script runs for real under bash; only the things outside this machine's
control are stand-ins on PATH: ``shutdown`` (records its arguments), ``nvidia-smi``
(succeeds or fails on demand), ``cml-nb`` (already installed), and the GitHub runner
agent in RUNNER_DIR (``run.sh`` starts a ``bin/Runner.Worker`` "job" while the test's
``job`` file exists). For GitLab, ``gitlab-runner`` serves a metrics file on a port.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cml_nb.runner.script import StartupSettings, render

TOKEN = "AAGH7REGISTRATIONxTOKENx" + "q" * 8


def test_rendered_script_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is required: apt-get install -y shellcheck"
    for forge, kind in (("github", "jit"), ("github", "token"), ("gitlab", "gitlab")):
        path = tmp_path / f"{forge}-{kind}.sh"
        path.write_text(
            render(_settings(forge=forge, registration_kind=kind, user_script="echo hi"))
        )
        result = subprocess.run(
            [shellcheck, "--severity=style", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


def test_values_cannot_break_out_of_their_quotes(tmp_path: Path) -> None:
    hostile = "x'; touch " + str(tmp_path / "pwned") + "; echo '"
    text = render(_settings(name=hostile, labels="$(touch pwned2)"))
    header = text.split("AGENT_PID=")[0]
    subprocess.run(["bash", "-c", header + '\nprintf %s "$RUNNER_NAME"'], check=True, cwd=tmp_path)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


def _settings(**overrides: object) -> StartupSettings:
    values: dict[str, object] = {
        "name": "cml-nb-test",
        "forge": "github",
        "forge_url": "https://github.com/octo/repo",
        "registration": TOKEN,
        "registration_kind": "token",
        "labels": "cml-gpu,linux",
        "idle_timeout_s": 2,
        "max_lifetime_s": 3600,
        "poll_s": 0.2,
        "gpu_wait_s": 1,
    }
    values.update(overrides)
    return StartupSettings(**values)  # type: ignore[arg-type]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


class Machine:
    """A fake machine: stand-in commands, a control folder, the running script."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.control = root / "control"
        self.bin = root / "bin"
        self.runner_dir = root / "runner"
        self.log = root / "runner.log"
        self.control.mkdir()
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        _write(self.bin / "shutdown", '#!/bin/bash\necho "$*" >> "$CONTROL/shutdown-calls"\n')
        _write(self.bin / "nvidia-smi", '#!/bin/bash\n[ -e "$CONTROL/gpu-ok" ] && echo "T4, 535"\n')
        _write(self.bin / "cml-nb", "#!/bin/bash\nexit 0\n")
        _write(
            self.runner_dir / "config.sh",
            '#!/bin/bash\nprintf "%s\\n" "$@" > "$CONTROL/config-args"\n',
        )
        _write(
            self.runner_dir / "run.sh",
            "#!/bin/bash\n"
            'printf "%s\\n" "$@" > "$CONTROL/run-args"\n'
            'while [ ! -e "$CONTROL/agent-exit" ]; do\n'
            '  if [ -e "$CONTROL/job" ]; then "$RUNNER_DIR/bin/Runner.Worker"; fi\n'
            "  sleep 0.05\n"
            "done\n",
        )
        _write(
            self.runner_dir / "bin" / "Runner.Worker",
            '#!/bin/bash\nwhile [ -e "$CONTROL/job" ]; do sleep 0.05; done\n',
        )

    def start(self, settings: StartupSettings) -> None:
        script = self.root / "user-data.sh"
        script.write_text(render(settings))
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "CONTROL": str(self.control),
            "CML_NB_FOREGROUND": "1",  # never hand the script to this machine's systemd
            "RUNNER_DIR": str(self.runner_dir),
        }
        self.started = time.monotonic()
        # Output goes to a file: a stray stand-in must not hold a pipe open.
        with (self.root / "console.txt").open("w") as console:
            self.process = subprocess.Popen(
                ["bash", str(script)],
                env=env,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def finish(self, timeout: float = 30) -> tuple[int, str, float]:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        elapsed = time.monotonic() - self.started
        return code, (self.root / "console.txt").read_text(), elapsed

    def shutdown_calls(self) -> list[str]:
        path = self.control / "shutdown-calls"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        (self.control / "agent-exit").touch()  # stray stand-in agents end themselves


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    fake = Machine(tmp_path)
    (fake.control / "gpu-ok").touch()
    yield fake
    fake.stop()


def _local(machine: Machine, **overrides: object) -> StartupSettings:
    return _settings(
        runner_dir=str(machine.runner_dir),
        runner_user=getpass.getuser(),
        log_file=str(machine.log),
        **overrides,
    )


def test_idle_runner_shuts_down_after_the_timeout(machine: Machine) -> None:
    machine.start(_local(machine, idle_timeout_s=2, max_lifetime_s=6 * 3600))
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert 2 <= elapsed < 15
    calls = machine.shutdown_calls()
    assert calls[0].startswith("-h +360 ")  # the max-lifetime guard, scheduled at boot
    assert calls[-1].startswith("-h now") and "idle for 2s" in calls[-1]
    args = (machine.control / "config-args").read_text().splitlines()
    assert args[args.index("--token") + 1] == TOKEN
    assert args[args.index("--labels") + 1] == "cml-gpu,linux"
    assert "--ephemeral" not in args
    assert TOKEN not in out and TOKEN not in machine.log.read_text()


def test_busy_runner_stays_up_until_the_job_ends_then_idles_out(machine: Machine) -> None:
    (machine.control / "job").touch()
    machine.start(_local(machine, idle_timeout_s=2))
    time.sleep(3)
    assert machine.shutdown_calls() == [machine.shutdown_calls()[0]], "shut down while busy"
    (machine.control / "job").unlink()
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert elapsed >= 4.5  # 3 s busy, then at least 2 s idle
    assert "idle for 2s" in machine.shutdown_calls()[-1]


def test_single_runner_shuts_down_right_after_its_job(machine: Machine) -> None:
    (machine.control / "job").touch()
    machine.start(_local(machine, idle_timeout_s=600, single=True))
    time.sleep(1.5)
    (machine.control / "job").unlink()
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert elapsed < 10
    assert "single job finished" in machine.shutdown_calls()[-1]
    assert "--ephemeral" in (machine.control / "config-args").read_text().splitlines()


def test_jit_config_starts_the_agent_without_config_sh(machine: Machine) -> None:
    machine.start(_local(machine, registration_kind="jit", idle_timeout_s=1))
    code, out, _ = machine.finish()
    assert code == 0, out
    assert (machine.control / "run-args").read_text().splitlines() == ["--jitconfig", TOKEN]
    assert not (machine.control / "config-args").exists()


def test_agent_exit_shuts_the_machine_down(machine: Machine) -> None:
    (machine.control / "agent-exit").touch()
    machine.start(_local(machine, idle_timeout_s=600))
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert elapsed < 10
    assert "agent exited" in machine.shutdown_calls()[-1]


def test_missing_gpu_driver_fails_the_boot_and_shuts_down(machine: Machine) -> None:
    (machine.control / "gpu-ok").unlink()
    machine.start(_local(machine, expect_gpu=True, gpu_wait_s=1))
    code, out, _ = machine.finish()
    assert code != 0
    assert "nvidia-smi fails" in machine.log.read_text()
    assert machine.shutdown_calls()[-1].startswith("-h now")
    assert not (machine.control / "config-args").exists(), "registered without a GPU"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gitlab_runner_busy_from_its_metrics_then_idle(machine: Machine) -> None:
    port = _free_port()
    metrics = machine.root / "metrics-root"
    metrics.mkdir()
    (metrics / "metrics").write_text(
        'gitlab_runner_jobs{executor_stage="build",runner="x",state="running"} 1\n'
    )
    # The stand-in agent serves the metrics folder where gitlab-runner would.
    _write(
        machine.bin / "gitlab-runner",
        "#!/bin/bash\n"
        'echo "$*" >> "$CONTROL/gitlab-runner-calls"\n'
        'if [ "$1" = run ]; then\n'
        f"  exec python3 -m http.server --bind 127.0.0.1 {port} --directory {metrics}\n"
        "fi\n",
    )
    machine.start(
        _local(
            machine,
            forge="gitlab",
            forge_url="https://gitlab.example",
            registration_kind="gitlab",
            idle_timeout_s=1,
            metrics_port=port,
        )
    )
    time.sleep(3)
    assert len(machine.shutdown_calls()) == 1, "shut down while a GitLab job ran"
    (metrics / "metrics").write_text(
        'gitlab_runner_jobs{executor_stage="build",runner="x",state="running"} 0\n'
    )
    code, out, _ = machine.finish()
    assert code == 0, out
    assert "idle for 1s" in machine.shutdown_calls()[-1]
    calls = (machine.control / "gitlab-runner-calls").read_text()
    assert f"--token {TOKEN}" in calls and "unregister --all-runners" in calls
    assert TOKEN not in out


def test_jobs_cannot_reach_the_instance_metadata(tmp_path: Path) -> None:
    # The functions of the real script, with iptables as a stand-in that records calls.
    script = render(_settings(runner_user="nobody", log_file=str(tmp_path / "log")))
    functions = tmp_path / "functions.sh"
    functions.write_text(script.replace('\nmain "$@"\n', "\n"))
    _write(tmp_path / "bin" / "iptables", f'#!/bin/bash\necho "iptables $*" >> {tmp_path}/calls\n')
    _write(
        tmp_path / "bin" / "ip6tables", f'#!/bin/bash\necho "ip6tables $*" >> {tmp_path}/calls\n'
    )
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", f"source {functions} && protect_metadata"], env=env, check=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        "iptables -I OUTPUT -d 169.254.169.254 -m owner --uid-owner nobody -j REJECT",
        "ip6tables -I OUTPUT -d fd00:ec2::254 -m owner --uid-owner nobody -j REJECT",
    ]
