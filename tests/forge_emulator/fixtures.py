"""Pytest fixtures around the emulator; ``tests/conftest.py`` re-exports them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import ForgeEmulator


@pytest.fixture
def forge_emulator() -> Iterator[ForgeEmulator]:
    """A fresh emulator on 127.0.0.1; fails the test if any GitHub traffic broke the spec."""
    emulator = ForgeEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
    assert not emulator.spec_errors, "GitHub OpenAPI mismatches:\n" + "\n".join(
        emulator.spec_errors[:20]
    )
