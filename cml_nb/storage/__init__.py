"""Where report images go: a registry of storage backends keyed by name.

``gitlab-uploads`` (GitLab's project uploads), ``github-branch[:BRANCH]`` (an
orphan branch via the Git Data API) and ``s3://BUCKET/PREFIX`` (boto3) are
built in; others come from the ``cml_nb.storage`` entry point group. The default
is the forge's own (``Forge.default_storage``).
"""

from __future__ import annotations

import importlib
from typing import Any

from cml_nb.errors import ConfigError
from cml_nb.storage.base import AssetData, Storage, Stored

ENTRY_POINT_GROUP = "cml_nb.storage"

_BUILTIN = {
    "gitlab-uploads": "cml_nb.storage.gitlab_uploads:GitLabUploads",
    "github-branch": "cml_nb.storage.github_branch:GitHubBranch",
    "s3": "cml_nb.storage.s3:S3Storage",
}


def available() -> list[str]:
    """Names of every storage backend."""
    from importlib.metadata import entry_points  # ~0.02 s: not on the report path's import

    return sorted({*_BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def _load(name: str) -> Any:
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    raise ConfigError(
        f"unknown storage {name!r}: use one of {', '.join(available())} "
        "(s3 as s3://BUCKET/PREFIX, github-branch as github-branch[:BRANCH])"
    )


def get_storage(spec: str, forge: Any) -> Storage:
    """The backend ``spec`` names, bound to ``forge``.

    Args:
        spec: ``gitlab-uploads``, ``github-branch``, ``github-branch:BRANCH``,
            ``s3://BUCKET/PREFIX[?presign=SECONDS]`` or a plugin's name.
        forge: the connected forge driver.

    Raises:
        ConfigError: unknown backend.
        StorageError: the backend does not fit this forge.
    """
    if spec.startswith("s3://"):
        storage: Storage = _load("s3")(spec)
        return storage
    name, _, option = spec.partition(":")
    cls = _load(name)
    storage = cls(forge, option) if option else cls(forge)
    return storage


__all__ = ["AssetData", "Storage", "Stored", "available", "get_storage"]
