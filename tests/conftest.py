"""Shared fixtures: the forge emulator (tests/forge_emulator)."""

from __future__ import annotations

from forge_emulator.fixtures import forge_emulator

__all__ = ["forge_emulator"]
