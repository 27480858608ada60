"""The runner's guards fail closed, survive reboots, and keep the secret out of reach.

Each test runs the real startup script on the fake machine of tests/runner_machine.py
(stand-ins for ``shutdown``, ``systemctl``, ``iptables``, the agents) and checks what
a user would: that the machine went down instead of running jobs unguarded, that a
second boot re-arms every guard, that a job arriving as the idle timer fires is
served, and that the registration secret is in no argv and no file once used.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from runner_machine import (
    PGREP,
    RUNNER_USER,
    TOKEN,
    FakeGitLab,
    Machine,
    free_port,
    install_gitlab_runner,
    machine_fixture,  # noqa: F401 (a fixture)
    wait_for,
    write_exe,
)


def _never_registered(machine: Machine) -> None:
    assert not machine.lines("config-calls") and not machine.lines("run-calls"), "agent ran"


@pytest.mark.parametrize("missing", ["iptables", "ip6tables"])
def test_no_metadata_block_means_no_runner(machine: Machine, missing: str) -> None:
    (machine.control / f"no-{missing}").touch()
    machine.start(machine.local())
    code, out, _ = machine.finish()
    assert code != 0
    last = machine.shutdown_calls()[-1]
    assert last.startswith("-h now") and "could not block the instance metadata" in last
    assert missing in last
    _never_registered(machine)


def test_jobs_as_root_means_no_runner(machine: Machine) -> None:
    machine.start(machine.local(runner_user="root"))
    code, _, _ = machine.finish()
    assert code != 0
    assert "jobs would run as root" in machine.shutdown_calls()[-1]
    _never_registered(machine)


def test_unscheduled_lifetime_shutdown_means_no_runner(machine: Machine) -> None:
    (machine.control / "no-scheduled-shutdown").touch()
    machine.start(machine.local())
    code, _, _ = machine.finish()
    assert code != 0
    assert "could not schedule the max-lifetime shutdown" in machine.shutdown_calls()[-1]
    _never_registered(machine)


def test_no_systemd_units_means_no_runner(machine: Machine) -> None:
    (machine.control / "no-systemctl").touch()
    machine.start(machine.local())
    code, _, _ = machine.finish()
    assert code != 0
    assert "first boot failed" in machine.shutdown_calls()[-1]
    _never_registered(machine)


def _unit(machine: Machine, name: str) -> dict[str, str]:
    lines = (machine.systemd / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_guards_are_systemd_units_and_a_reboot_rearms_them(machine: Machine) -> None:
    expires = int(time.time()) + 2 * 3600
    machine.start(machine.local(idle_timeout_s=1, expires_at=expires))
    code, out, _ = machine.finish()
    assert code == 0, out
    service = _unit(machine, "cml-nb-runner.service")
    assert service["ExecStart"] == f"/bin/bash {machine.state}/startup.sh --service"
    assert service["FailureAction"] == "poweroff" and service["WantedBy"] == "multi-user.target"
    timer = _unit(machine, "cml-nb-runner-lifetime.timer")
    when = datetime.fromtimestamp(expires).strftime("%Y-%m-%d %H:%M:%S")  # local, as systemd
    assert timer["OnCalendar"] == when and timer["Persistent"] == "true"
    lifetime = _unit(machine, "cml-nb-runner-lifetime.service")
    assert lifetime["ExecStart"] == f"/bin/bash {machine.state}/startup.sh --lifetime-ended"
    assert machine.lines("systemctl-calls")[:3] == [
        "daemon-reload",
        "enable --now cml-nb-runner-lifetime.timer",
        "enable cml-nb-runner.service",
    ]
    assert (machine.state.stat().st_mode & 0o777) == 0o700
    first_rules = machine.lines("firewall")
    assert len(first_rules) == 2

    machine.reboot()
    code, out, _ = machine.finish()
    assert code == 0, out
    calls = machine.shutdown_calls()
    lifetimes = [c for c in calls if c.startswith("-h +")]
    assert len(lifetimes) == 2, calls  # armed again at the second boot
    assert 119 <= int(lifetimes[1].split()[1][1:]) <= 120  # from the saved deadline
    assert machine.lines("firewall") == first_rules * 2  # the block, again
    assert machine.lines("config-calls") == ["configured"]  # registered once only
    assert machine.lines("run-calls") == [RUNNER_USER, RUNNER_USER]  # served again
    assert "idle for 1s" in calls[-1]

    machine.systemd_start("cml-nb-runner-lifetime.service")  # as the timer does at expiry
    machine.finish()
    assert "max lifetime reached" in machine.shutdown_calls()[-1]


def test_a_boot_after_the_deadline_powers_off_at_once(machine: Machine) -> None:
    machine.start(machine.local(idle_timeout_s=1))
    assert machine.finish()[0] == 0
    (machine.state / "deadline").write_text(f"{int(time.time()) - 60}\n")
    machine.reboot()
    code, _, _ = machine.finish()
    assert code != 0
    assert "max lifetime reached" in machine.shutdown_calls()[-1]
    assert machine.lines("run-calls") == [RUNNER_USER]  # not started again


def test_a_single_job_runner_that_reboots_powers_off(machine: Machine) -> None:
    machine.start(machine.local(registration_kind="jit", single=True, idle_timeout_s=1))
    assert machine.finish()[0] == 0
    machine.reboot()
    code, _, _ = machine.finish()
    assert code != 0
    assert "single-job runner restarted" in machine.shutdown_calls()[-1]
    assert machine.lines("run-calls") == [RUNNER_USER]


def test_registration_secret_is_used_once_then_gone(machine: Machine) -> None:
    machine.start(machine.local(idle_timeout_s=1))
    code, out, _ = machine.finish()
    assert code == 0, out
    assert (machine.control / "config-token").read_text() == TOKEN  # it did register
    # Nothing on the machine holds it: not cloud-init's copies, the state, the units, logs.
    assert machine.files_with(TOKEN) == []
    assert not machine.user_data.exists()
    assert not (machine.user_data.parents[1] / "user-data.txt").exists()
    assert "REGISTRATION=''" in (machine.state / "startup.sh").read_text()


class _ArgvWatch:
    """Samples every process's argv (as ``ps`` shows it to any user) in a thread."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.seen: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    argv = cmdline.read_bytes()
                except OSError:
                    continue
                if self.secret in argv:
                    self.seen.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen


@pytest.mark.parametrize("kind", ["jit", "token"])
def test_github_secret_is_in_no_process_argv(machine: Machine, kind: str) -> None:
    watch = _ArgvWatch(TOKEN)
    machine.start(machine.local(registration_kind=kind, single=kind == "jit", idle_timeout_s=1))
    code, out, _ = machine.finish()
    seen = watch.stop()
    assert code == 0, out
    assert watch.samples > 10
    assert seen == []
    # The agent got it all the same, in its environment.
    if kind == "jit":
        assert (machine.control / "run-jitconfig").read_text() == TOKEN
    else:
        assert (machine.control / "config-token").read_text() == TOKEN
        assert TOKEN not in (machine.control / "config-args").read_text()
    assert TOKEN not in (machine.control / "run-args").read_text()


def test_gitlab_token_is_reset_once_registered(machine: Machine) -> None:
    gitlab = FakeGitLab(TOKEN)
    port = free_port()
    install_gitlab_runner(machine, port)
    watch = _ArgvWatch(TOKEN)
    try:
        machine.start(
            machine.local(
                forge="gitlab",
                forge_url=gitlab.url,
                registration_kind="gitlab",
                idle_timeout_s=1,
                metrics_port=port,
            )
        )
        code, out, _ = machine.finish()
    finally:
        gitlab.close()
    assert code == 0, out
    assert watch.stop() == []
    # The token in the user-data is worthless now; the runner holds the new one only.
    assert TOKEN not in gitlab.valid and len(gitlab.valid) == 1
    (new,) = gitlab.valid
    config = machine.root / "gitlab-runner" / "config.toml"
    assert f'token = "{new}"' in config.read_text()
    assert (config.stat().st_mode & 0o777) == 0o600
    assert machine.files_with(TOKEN) == []
    assert gitlab.bodies == [f"token={TOKEN}".encode()]


def test_gitlab_token_that_cannot_be_reset_means_no_runner(machine: Machine) -> None:
    gitlab = FakeGitLab()  # knows no token: refuses the reset
    install_gitlab_runner(machine, free_port())
    try:
        machine.start(
            machine.local(forge="gitlab", forge_url=gitlab.url, registration_kind="gitlab")
        )
        code, _, _ = machine.finish()
    finally:
        gitlab.close()
    assert code != 0
    assert "refused to reset the runner token" in machine.shutdown_calls()[-1]
    assert "run " not in "\n".join(machine.lines("gitlab-runner-calls"))


def test_gitlab_unreadable_metrics_count_as_busy(machine: Machine) -> None:
    gitlab = FakeGitLab(TOKEN)
    port = free_port()
    install_gitlab_runner(machine, port)
    (machine.control / "metrics-down").touch()
    try:
        machine.start(
            machine.local(
                forge="gitlab",
                forge_url=gitlab.url,
                registration_kind="gitlab",
                idle_timeout_s=1,
                metrics_port=port,
                max_lifetime_s=60,
            )
        )
        time.sleep(4)
        assert len(machine.shutdown_calls()) == 1, "idled out without knowing it was idle"
        assert "counting the runner as busy" in machine.log.read_text()
    finally:
        gitlab.close()
        machine.stop()


def _race(machine: Machine, tool: str, real: str, condition: str, delay: float) -> None:
    """``tool`` answers its first busy check late, "idle", and a job starts right after."""
    write_exe(
        machine.bin / tool,
        "#!/bin/bash\n"
        f'if [[ "$*" == {condition} ]] && [ ! -e "$CONTROL/race-fired" ]; then\n'
        '  touch "$CONTROL/race-fired"\n'
        f"  sleep {delay}\n"
        f'  out=$({real} "$@"); code=$?\n'
        '  touch "$CONTROL/job"\n'
        "  for _ in $(seq 200); do\n"
        f"    {PGREP} -f 'Runner\\.Worker' >/dev/null && break\n"
        '    [ -e "$CONTROL/gitlab-job" ] && break\n'
        "    sleep 0.05\n"
        "  done\n"
        '  printf "%s" "$out"; exit "$code"\n'
        "fi\n"
        f'exec {real} "$@"\n',
    )


def test_github_job_taken_as_the_idle_timeout_fires_is_served(machine: Machine) -> None:
    _race(machine, "pgrep", PGREP, "*Runner*Worker*", delay=2.5)
    machine.start(machine.local(idle_timeout_s=1))
    wait_for(lambda: (machine.control / "job").exists())
    time.sleep(1.5)
    (machine.control / "job").unlink()
    code, out, _ = machine.finish()
    assert code == 0, out
    assert machine.lines("jobs-killed") == [], "the job was killed by the idle shutdown"
    assert machine.lines("jobs-done") == ["done"]
    assert "job started as the idle timeout fired" in machine.log.read_text()
    assert "idle for 1s" in machine.shutdown_calls()[-1]


def test_gitlab_job_taken_as_the_idle_timeout_fires_is_served(machine: Machine) -> None:
    import shutil

    curl = shutil.which("curl")
    assert curl
    gitlab = FakeGitLab(TOKEN)
    port = free_port()
    install_gitlab_runner(machine, port)
    _race(machine, "curl", curl, "*/metrics*", delay=2.5)
    try:
        machine.start(
            machine.local(
                forge="gitlab",
                forge_url=gitlab.url,
                registration_kind="gitlab",
                idle_timeout_s=1,
                metrics_port=port,
            )
        )
        wait_for(lambda: (machine.control / "gitlab-job").exists())
        time.sleep(1.5)
        (machine.control / "job").unlink()
        code, out, _ = machine.finish()
    finally:
        gitlab.close()
    assert code == 0, out
    assert machine.lines("jobs-killed") == [], "the job was killed by the idle shutdown"
    assert machine.lines("jobs-done") == ["done"]
    assert "idle for 1s" in machine.shutdown_calls()[-1]


def test_no_secret_in_the_log_or_console(machine: Machine) -> None:
    machine.start(machine.local(idle_timeout_s=1))
    code, out, _ = machine.finish()
    assert code == 0
    assert TOKEN not in out and TOKEN not in machine.log.read_text()
    assert not re.search(r"REGISTRATION=\S", out)
    assert os.stat(machine.log).st_size > 0
