"""A stateful GitHub + GitLab emulator for tests, served over HTTP on 127.0.0.1.

The real PyGithub and python-gitlab talk to it; GitHub traffic is validated
against GitHub's OpenAPI description. Structure: ``state`` (what the forges hold),
``router`` (route tables and pagination), ``faults`` (injected failures),
``server`` (the WSGI app and recorder), and one route module per area:
``github_issues``, ``github_git``, ``gitlab``, ``runners``.
"""

from __future__ import annotations

from .faults import Faults
from .server import Exchange, ForgeEmulator
from .state import ALL_PERMISSIONS, Repo, State

__all__ = ["ALL_PERMISSIONS", "Exchange", "Faults", "ForgeEmulator", "Repo", "State"]
