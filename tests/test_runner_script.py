"""The runner startup script: shellcheck, and its idle shutdown run locally.

The script runs for real under bash on a fake machine (tests/runner_machine.py):
only what is outside this machine's control is a stand-in on PATH. The guards
(fail closed, reboots, races, secrets) are in test_runner_guards.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from runner_machine import (
    RUNNER_USER,
    TOKEN,
    FakeGitLab,
    Machine,
    free_port,
    install_gitlab_runner,
    machine_fixture,  # noqa: F401 (a fixture)
    write_exe,
)
from runner_machine import settings as _settings

from cml_nb.runner.script import METADATA_ADDRESSES, render


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


def test_idle_runner_shuts_down_after_the_timeout(machine: Machine) -> None:
    machine.start(machine.local(idle_timeout_s=2, max_lifetime_s=6 * 3600))
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert 2 <= elapsed < 15
    calls = machine.shutdown_calls()
    assert calls[0].startswith("-h +360 ")  # the max-lifetime guard, scheduled at boot
    assert calls[-1].startswith("-h now") and "idle for 2s" in calls[-1]
    args = machine.lines("config-args")
    assert (machine.control / "config-token").read_text() == TOKEN  # from its environment
    assert args[args.index("--labels") + 1] == "cml-gpu,linux"
    assert machine.lines("run-calls") == [RUNNER_USER]
    assert "--ephemeral" not in args
    assert TOKEN not in out and TOKEN not in machine.log.read_text()


def test_busy_runner_stays_up_until_the_job_ends_then_idles_out(machine: Machine) -> None:
    (machine.control / "job").touch()
    machine.start(machine.local(idle_timeout_s=2))
    time.sleep(3)
    assert machine.shutdown_calls() == [machine.shutdown_calls()[0]], "shut down while busy"
    (machine.control / "job").unlink()
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert elapsed >= 4.5  # 3 s busy, then at least 2 s idle
    assert "idle for 2s" in machine.shutdown_calls()[-1]


def test_single_runner_shuts_down_right_after_its_job(machine: Machine) -> None:
    (machine.control / "job").touch()
    machine.start(machine.local(idle_timeout_s=600, single=True))
    time.sleep(1.5)
    (machine.control / "job").unlink()
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert elapsed < 10
    assert "single job finished" in machine.shutdown_calls()[-1]
    assert "--ephemeral" in (machine.control / "config-args").read_text().splitlines()


def test_jit_config_starts_the_agent_without_config_sh(machine: Machine) -> None:
    machine.start(machine.local(registration_kind="jit", idle_timeout_s=1))
    code, out, _ = machine.finish()
    assert code == 0, out
    assert (machine.control / "run-jitconfig").read_text() == TOKEN
    assert not (machine.control / "config-args").exists()


def test_agent_exit_shuts_the_machine_down(machine: Machine) -> None:
    (machine.control / "agent-exit").touch()
    machine.start(machine.local(idle_timeout_s=600))
    code, out, elapsed = machine.finish()
    assert code == 0, out
    assert elapsed < 10
    assert "agent exited" in machine.shutdown_calls()[-1]


def test_missing_gpu_driver_fails_the_boot_and_shuts_down(machine: Machine) -> None:
    (machine.control / "gpu-ok").unlink()
    machine.start(machine.local(expect_gpu=True, gpu_wait_s=1))
    code, out, _ = machine.finish()
    assert code != 0
    assert "nvidia-smi fails" in machine.log.read_text()
    assert machine.shutdown_calls()[-1].startswith("-h now")
    assert not (machine.control / "config-args").exists(), "registered without a GPU"


def test_gitlab_runner_busy_from_its_metrics_then_idle(machine: Machine) -> None:
    gitlab = FakeGitLab(TOKEN)
    port = free_port()
    install_gitlab_runner(machine, port)
    (machine.control / "job").touch()
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
        time.sleep(3)
        assert len(machine.shutdown_calls()) == 1, "shut down while a GitLab job ran"
        (machine.control / "job").unlink()
        code, out, _ = machine.finish()
    finally:
        gitlab.close()
    assert code == 0, out
    assert "idle for 1s" in machine.shutdown_calls()[-1]
    calls = (machine.control / "gitlab-runner-calls").read_text()
    assert "unregister --config" in calls and "--all-runners" in calls
    assert machine.lines("jobs-done") == ["done"] and not machine.lines("jobs-killed")
    assert TOKEN not in out and TOKEN not in calls


@pytest.mark.parametrize(
    ("cloud", "v6"), [("aws", ["fd00:ec2::254"]), ("gcp", ["fd20:ce::254"]), ("azure", [])]
)
def test_jobs_cannot_reach_the_instance_metadata(tmp_path: Path, cloud: str, v6: list[str]) -> None:
    # The functions of the real script, with iptables as a stand-in that records calls.
    script = render(
        _settings(
            runner_user="nobody",
            log_file=str(tmp_path / "log"),
            metadata_addresses=METADATA_ADDRESSES[cloud],
        )
    )
    functions = tmp_path / "functions.sh"
    functions.write_text(script.replace('\nmain "$@"\n', "\n"))
    write_exe(
        tmp_path / "bin" / "iptables", f'#!/bin/bash\necho "iptables $*" >> {tmp_path}/calls\n'
    )
    write_exe(
        tmp_path / "bin" / "ip6tables", f'#!/bin/bash\necho "ip6tables $*" >> {tmp_path}/calls\n'
    )
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", f"source {functions} && protect_metadata"], env=env, check=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        "iptables -I OUTPUT -d 169.254.169.254 -m owner --uid-owner nobody -j REJECT",
        *(f"ip6tables -I OUTPUT -d {a} -m owner --uid-owner nobody -j REJECT" for a in v6),
    ]
