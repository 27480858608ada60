"""``.ci/run``: every check fails CI when it fails (``a && b`` under ``set -e`` did not).

The checks run against stand-in ``ruff``, ``mypy`` and ``python`` commands put first on
PATH, each logging its call and failing when told: the script under test is real bash.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "run"
CHECKS = ["ruff check .", "ruff format --check .", "mypy", "python -m pytest"]


def _run(tmp_path: Path, failing: str | None) -> tuple[int, list[str]]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("ruff", "mypy", "python"):
        stub = bin_dir / tool
        stub.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $*" >> "{log}"\n'
            f'[ "$(echo {tool} $*)" = "$CML_NB_FAIL" ] && exit 3\n'
            "exit 0\n"
        )
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp_path),
           "CML_NB_FAIL": failing or ""}  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT), "--checks-only"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    calls = [c.strip() for c in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, calls


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_all_checks_run_when_all_pass(tmp_path: Path) -> None:
    assert _run(tmp_path, None) == (0, CHECKS)


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
@pytest.mark.parametrize("failing", CHECKS)
def test_a_failing_check_fails_ci_and_stops_it(tmp_path: Path, failing: str) -> None:
    rc, calls = _run(tmp_path, failing)
    assert rc != 0
    assert calls == CHECKS[: CHECKS.index(failing) + 1]


def test_linters_are_pinned_to_the_installed_versions() -> None:
    from importlib.metadata import version

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = {d.split("==")[0]: d.split("==")[1] for d in dev["dev"] if "==" in d}
    assert pins["ruff"] == version("ruff") and pins["mypy"] == version("mypy")
