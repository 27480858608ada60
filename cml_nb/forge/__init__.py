"""Forges: a registry of drivers keyed by name, behind one ``Forge`` interface.

Built-ins (``github``, ``gitlab``) are registered here; third-party drivers are
read lazily from the ``cml_nb.forges`` entry point group. Drivers import their
client library (PyGithub, python-gitlab) only when constructed.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from cml_nb.errors import ConfigError
from cml_nb.forge.base import COMMIT, ISSUE, PR, Comment, Forge, PullRequestInfo, Target

ENTRY_POINT_GROUP = "cml_nb.forges"

_BUILTIN = {
    "github": "cml_nb.forge.github:GitHubForge",
    "gitlab": "cml_nb.forge.gitlab:GitLabForge",
}


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names of every known forge driver."""
    return sorted({*_BUILTIN, *_plugins()})


def forge_class(name: str) -> Any:
    """The driver class registered as ``name``.

    Raises:
        ConfigError: no driver has that name (the message lists the known ones).
    """
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    plugin = _plugins().get(name)
    if plugin is None:
        raise ConfigError(f"unknown forge {name!r}: use one of {', '.join(available())} (--forge)")
    return plugin.load()


def get_forge(
    name: str,
    repository: str,
    *,
    token: str | None,
    api_url: str | None = None,
    token_name: str | None = None,
    **options: Any,
) -> Forge:
    """A connected driver for ``repository`` on forge ``name``.

    ``options`` go to the driver as they are (GitLab's ``pipeline``).

    Raises:
        ConfigError: unknown forge name.
        ForgeAuthError: no token.
    """
    cls = forge_class(name)
    forge: Forge = cls(repository, token=token, api_url=api_url, token_name=token_name, **options)
    return forge


__all__ = [
    "COMMIT",
    "ISSUE",
    "PR",
    "Comment",
    "Forge",
    "PullRequestInfo",
    "Target",
    "available",
    "forge_class",
    "get_forge",
]
