"""``gitlab-uploads``: the project's uploads API, as GitLab's own editor does it.

GitLab cannot list an upload's URL after the fact, so unchanged images are
recognised from the links the previous report comment already carries (the file
name is the content hash).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cml_nb.errors import StorageError
from cml_nb.storage.base import AssetData, Stored, require_image


class GitLabUploads:
    """Images as GitLab project uploads."""

    name = "gitlab-uploads"

    def __init__(self, forge: Any) -> None:
        if not hasattr(forge, "upload"):
            raise StorageError(
                f"storage gitlab-uploads needs a GitLab forge, not {forge.name}: "
                "use --storage github-branch or s3://BUCKET/PREFIX"
            )
        self.forge = forge

    def store(self, assets: Mapping[str, AssetData], *, known: Mapping[str, str]) -> Stored:
        """Upload images the previous comment does not already link."""
        stored = Stored()
        for asset in assets.values():
            require_image(asset)  # before anything is sent
        for name, asset in assets.items():
            if name in known:
                stored.urls[name] = known[name]
                stored.reused.append(name)
            else:
                stored.urls[name] = self.forge.upload(name, asset.data)
                stored.uploaded.append(name)
        return stored
