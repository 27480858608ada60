"""Shared fixtures: the forge emulator (tests/forge_emulator)."""

from __future__ import annotations

import pytest
from forge_emulator.fixtures import forge_emulator

__all__ = ["forge_emulator"]


@pytest.fixture(autouse=True)
def _no_real_step_files(monkeypatch: pytest.MonkeyPatch) -> None:
    # When this suite itself runs in GitHub Actions, cml-nb would append every test's
    # report to the real job summary and outputs (cml_nb.ci); tests that want them set
    # their own files.
    for name in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
