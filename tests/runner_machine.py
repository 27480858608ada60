"""A fake runner machine for the startup script: the real script under bash, stand-ins outside.

Only what is outside this machine's control is a stand-in on PATH: ``shutdown``
(records its arguments, and whether a job was still running), ``systemctl`` (records
its arguments; ``start`` runs the unit's ``ExecStart`` in the foreground, as systemd
would in the background), ``iptables``/``ip6tables`` (record the rules; fail on
demand), ``nvidia-smi``, ``cml-nb``, and the GitHub runner agent in RUNNER_DIR
(``run.sh`` execs a ``bin/Runner.Listener`` that starts a ``bin/Runner.Worker`` "job"
while the test's ``job`` file exists). The agent runs as ``nobody`` through the real
``runuser``, so the machine lives in a folder that user can enter.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cml_nb.runner.script import StartupSettings, render

TOKEN = "AAGH7REGISTRATIONxTOKENx" + "q" * 8
RUNNER_USER = "nobody"
PGREP = shutil.which("pgrep") or "/usr/bin/pgrep"


def settings(**overrides: object) -> StartupSettings:
    """Test settings: short timeouts, a fake GitHub repository."""
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


def write_exe(path: Path, text: str) -> None:
    """An executable file (its folder made as needed)."""
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
        self.state = root / "state"
        self.systemd = root / "systemd"
        self.cloud = root / "cloud"
        self.user_data = self.cloud / "instances" / "i-test" / "scripts" / "part-001"
        self.log = root / "runner.log"
        self.control.mkdir()
        self.control.chmod(0o777)  # the agent, as nobody, records here
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.boots = 0
        write_exe(
            self.bin / "shutdown",
            "#!/bin/bash\n"
            'echo "$*" >> "$CONTROL/shutdown-calls"\n'
            'if [ "$2" = now ] && ' + PGREP + " -f 'Runner\\.Worker' >/dev/null; then\n"
            '  echo "$*" >> "$CONTROL/jobs-killed"\n'
            "fi\n"
            'if [ "$2" = now ] && [ -e "$CONTROL/gitlab-job" ]; then\n'
            '  echo "$*" >> "$CONTROL/jobs-killed"\n'
            "fi\n"
            'if [ "${2:0:1}" = + ] && [ -e "$CONTROL/no-scheduled-shutdown" ]; then\n'
            '  echo "Failed to call ScheduleShutdown" >&2; exit 1\n'
            "fi\n",
        )
        write_exe(
            self.bin / "systemctl",
            "#!/bin/bash\n"
            'echo "$*" >> "$CONTROL/systemctl-calls"\n'
            '[ -e "$CONTROL/no-systemctl" ] && exit 1\n'
            'if [ "$1" = start ]; then\n'
            '  unit="$FAKE_SYSTEMD_DIR/${*: -1}"\n'
            "  exec $(sed -n 's/^ExecStart=//p' \"$unit\")\n"
            "fi\n",
        )
        for tool in ("iptables", "ip6tables"):
            write_exe(
                self.bin / tool,
                "#!/bin/bash\n"
                f'if [ -e "$CONTROL/no-{tool}" ]; then\n'
                f'  echo "{tool}: command not found" >&2; exit 127\n'
                "fi\n"
                f'echo "{tool} $*" >> "$CONTROL/firewall"\n',
            )
        write_exe(
            self.bin / "nvidia-smi", '#!/bin/bash\n[ -e "$CONTROL/gpu-ok" ] && echo "T4, 535"\n'
        )
        write_exe(self.bin / "cml-nb", "#!/bin/bash\nexit 0\n")
        write_exe(
            self.runner_dir / "config.sh",
            "#!/bin/bash\n"
            'printf "%s\\n" "$@" > "$CONTROL/config-args"\n'
            'printf "%s" "${ACTIONS_RUNNER_INPUT_TOKEN:-}" > "$CONTROL/config-token"\n'
            'echo configured >> "$CONTROL/config-calls"\n',
        )
        write_exe(
            self.runner_dir / "run.sh",
            "#!/bin/bash\n"
            'printf "%s\\n" "$@" > "$CONTROL/run-args"\n'
            'printf "%s" "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" > "$CONTROL/run-jitconfig"\n'
            'echo "$(id -un)" >> "$CONTROL/run-calls"\n'
            'exec "$RUNNER_DIR/bin/Runner.Listener" run\n',
        )
        write_exe(
            self.runner_dir / "bin" / "Runner.Listener",
            "#!/bin/bash\n"
            'while [ ! -e "$CONTROL/agent-exit" ]; do\n'
            '  if [ -e "$CONTROL/job" ]; then "$RUNNER_DIR/bin/Runner.Worker"; fi\n'
            "  sleep 0.05\n"
            "done\n",
        )
        write_exe(
            self.runner_dir / "bin" / "Runner.Worker",
            "#!/bin/bash\n"
            'while [ -e "$CONTROL/job" ]; do sleep 0.05; done\n'
            'echo done >> "$CONTROL/jobs-done"\n',
        )

    def env(self) -> dict[str, str]:
        """The environment of the script and its stand-ins."""
        return {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "CONTROL": str(self.control),
            "RUNNER_DIR": str(self.runner_dir),
            "FAKE_SYSTEMD_DIR": str(self.systemd),
        }

    def local(self, **overrides: object) -> StartupSettings:
        """Settings whose paths all lie inside this machine."""
        values: dict[str, object] = {
            "runner_dir": str(self.runner_dir),
            "runner_user": RUNNER_USER,
            "log_file": str(self.log),
            "state_dir": str(self.state),
            "systemd_dir": str(self.systemd),
            "cloud_dir": str(self.cloud),
            "gitlab_config": str(self.root / "gitlab-runner" / "config.toml"),
        }
        values.update(overrides)
        return settings(**values)

    def _run(self, command: list[str]) -> None:
        self.started = time.monotonic()
        # Output goes to a file: a stray stand-in must not hold a pipe open.
        with (self.root / "console.txt").open("a") as console:
            self.process = subprocess.Popen(
                command,
                env=self.env(),
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, startup: StartupSettings) -> None:
        """The first boot: cloud-init runs the user-data from its own folder."""
        self.user_data.parent.mkdir(parents=True)
        self.user_data.write_text(render(startup))
        self.user_data.chmod(0o700)
        (self.user_data.parents[1] / "user-data.txt").write_text(render(startup))
        self.boots = 1
        self._run(["bash", str(self.user_data)])

    def systemd_start(self, unit: str) -> None:
        """Start a unit the first boot wrote, as systemd would (its ExecStart)."""
        assert self.process is not None and self.process.poll() is not None, "still running"
        (self.control / "agent-exit").unlink(missing_ok=True)
        self._run([str(self.bin / "systemctl"), "start", unit])

    def reboot(self) -> None:
        """A later boot: systemd starts the enabled runner unit."""
        self.boots += 1
        self.systemd_start("cml-nb-runner.service")

    def finish(self, timeout: float = 30) -> tuple[int, str, float]:
        """Wait for the script; its exit code, console output and run time."""
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        elapsed = time.monotonic() - self.started
        return code, (self.root / "console.txt").read_text(), elapsed

    def lines(self, name: str) -> list[str]:
        """The lines of a control file (empty when the file does not exist)."""
        path = self.control / name
        return path.read_text().splitlines() if path.exists() else []

    def shutdown_calls(self) -> list[str]:
        return self.lines("shutdown-calls")

    def files_with(self, secret: str) -> list[Path]:
        """Files of the machine (outside the test's control folder) that hold ``secret``."""
        found = []
        for path in self.root.rglob("*"):
            outside = path.is_file() and self.control not in path.parents
            if outside and secret.encode() in path.read_bytes():
                found.append(path)
        return found

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        (self.control / "agent-exit").touch()  # stray stand-in agents end themselves
        (self.control / "job").unlink(missing_ok=True)


@pytest.fixture(name="machine")
def machine_fixture() -> Iterator[Machine]:
    """A fake machine with a working GPU driver, in a folder ``nobody`` can enter."""
    root = Path(tempfile.mkdtemp(prefix="cml-nb-machine-"))
    root.chmod(0o755)
    fake = Machine(root)
    (fake.control / "gpu-ok").touch()
    try:
        yield fake
    finally:
        fake.stop()
        time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)


class FakeGitLab:
    """GitLab's runner-token reset endpoint on 127.0.0.1, with the tokens it holds.

    ``POST /api/v4/runners/reset_authentication_token`` with form field ``token``
    answers 201 ``{"token": NEW, "token_expires_at": null}`` and revokes the old token
    (docs.gitlab.com/ee/api/runners.html#reset-runners-authentication-token-by-using-the-current-token);
    an unknown token is refused with 403, as GitLab refuses it.
    """

    def __init__(self, *tokens: str) -> None:
        import http.server
        import json
        import secrets
        import threading
        from urllib.parse import parse_qs

        self.valid = set(tokens)
        self.bodies: list[bytes] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.bodies.append(body)
                old = parse_qs(body.decode()).get("token", [""])[0]
                if self.path != "/api/v4/runners/reset_authentication_token":
                    self._answer(404, {"message": "404 Not Found"})
                elif old not in fake.valid:
                    self._answer(403, {"message": "403 Forbidden"})
                else:
                    fake.valid.discard(old)
                    new = "glrt-" + secrets.token_hex(10)
                    fake.valid.add(new)
                    self._answer(201, {"token": new, "token_expires_at": None})

            def _answer(self, status: int, data: object) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_gitlab_runner(machine: Machine, port: int) -> None:
    """A stand-in gitlab-runner: ``run`` serves its job count as metrics on ``port``.

    It takes a job while the test's ``job`` file exists (marking it ``gitlab-job``);
    SIGQUIT makes it take no new job and exit once its job is done, SIGTERM makes it
    exit at once, recording a job it killed (as gitlab-runner's signals do:
    docs.gitlab.com/runner/commands/#signals). ``metrics-down`` keeps the endpoint down.
    """
    metrics = machine.root / "metrics-root"
    metrics.mkdir(exist_ok=True)
    metrics.chmod(0o755)
    write_exe(
        machine.bin / "gitlab-runner",
        "#!/bin/bash\n"
        'echo "$*" >> "$CONTROL/gitlab-runner-calls"\n'
        '[ "$1" = run ] || exit 0\n'
        f"metrics={metrics}/metrics\n"
        'echo "gitlab_runner_version_info{version=\\"17.0.0\\"} 1" > "$metrics"\n'
        'server=""\n'
        'if [ ! -e "$CONTROL/metrics-down" ]; then\n'
        f"  python3 -m http.server --bind 127.0.0.1 {port} --directory {metrics} >/dev/null 2>&1 &\n"
        "  server=$!\n"
        "fi\n"
        "quit=0\n"
        "trap 'quit=1' QUIT\n"
        'trap \'[ -e "$CONTROL/gitlab-job" ] && echo killed >> "$CONTROL/jobs-killed"; '
        '[ -n "$server" ] && kill "$server"; exit 143\' TERM\n'
        "while :; do\n"
        '  if [ -e "$CONTROL/job" ] && [ "$quit" = 0 ]; then touch "$CONTROL/gitlab-job"; fi\n'
        '  if [ ! -e "$CONTROL/job" ] && [ -e "$CONTROL/gitlab-job" ]; then\n'
        '    rm -f "$CONTROL/gitlab-job"; echo done >> "$CONTROL/jobs-done"\n'
        "  fi\n"
        '  jobs=0; [ -e "$CONTROL/gitlab-job" ] && jobs=1\n'
        '  { echo "gitlab_runner_version_info{version=\\"17.0.0\\"} 1"\n'
        '    echo "gitlab_runner_jobs{executor_stage=\\"build\\",state=\\"running\\"} $jobs"; '
        '} > "$metrics.new"\n'
        '  mv "$metrics.new" "$metrics"\n'
        '  if [ "$quit" = 1 ] && [ ! -e "$CONTROL/gitlab-job" ]; then\n'
        '    [ -n "$server" ] && kill "$server"; exit 0\n'
        "  fi\n"
        "  sleep 0.05\n"
        "done\n",
    )


def wait_for(condition: object, timeout: float = 10) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)
