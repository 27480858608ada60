"""``github-branch``: images committed to an orphan branch through the Git Data API.

Why a branch: GitHub has no public API for comment attachments, and an external
host would need its own credentials. A branch (default ``cml-nb-assets``) in the
same repository keeps images as private as the code: links of the form
``<repo>/blob/<branch>/<file>?raw=true`` render for every signed-in reader of a
private repository (GitHub redirects them to a short-lived raw URL) and for
everyone on a public one. Files are named by content hash, so publishing an
unchanged report commits nothing; all new images go in one commit.

The branch must be one of its own: the default branch is refused (images would land
on the code everyone builds), and so is a branch the driver reports as protected
(drivers may offer ``branch_protected(branch) -> bool``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cml_nb.errors import StorageError
from cml_nb.storage.base import AssetData, Stored, require_image

DEFAULT_BRANCH = "cml-nb-assets"


class GitHubBranch:
    """Images on an orphan branch of the repository."""

    name = "github-branch"

    def __init__(self, forge: Any, branch: str | None = None) -> None:
        if getattr(forge, "name", "") != "github":
            raise StorageError(
                f"storage github-branch needs a GitHub forge, not {getattr(forge, 'name', '?')}: "
                "use --storage gitlab-uploads or s3://BUCKET/PREFIX"
            )
        self.forge = forge
        self.branch = branch or DEFAULT_BRANCH

    def _refuse(self, what: str) -> None:
        raise StorageError(
            f"refusing to commit report images to {self.branch!r}, the repository's {what} "
            f"branch: use a branch of their own, e.g. --storage github-branch:{DEFAULT_BRANCH}"
        )

    def _refuse_protected_branch(self) -> None:
        protected = getattr(self.forge, "branch_protected", None)
        if protected is not None and protected(self.branch):
            self._refuse("protected")

    def store(self, assets: Mapping[str, AssetData], *, known: Mapping[str, str]) -> Stored:
        """Commit the images the branch lacks (one commit), and link all of them."""
        stored = Stored()
        if not assets:
            return stored
        for asset in assets.values():
            require_image(asset)  # before anything is sent
        if self.branch == self.forge.default_branch():
            self._refuse("default")
        listed = self.forge.list_files(self.branch)
        present = listed or set()
        missing = {name: a.data for name, a in assets.items() if name not in present}
        if missing and listed is not None:
            # Asked only before committing to a branch that exists: a new branch has no
            # protection yet, and a publish that commits nothing spends no request on it.
            self._refuse_protected_branch()
        if missing:
            self.forge.commit_files(
                self.branch,
                missing,
                f"cml-nb: {len(missing)} report image(s) [skip ci]",
                start=None,
            )
        for name in assets:
            stored.urls[name] = self.forge.raw_url(self.branch, name)
            (stored.uploaded if name in missing else stored.reused).append(name)
        return stored
