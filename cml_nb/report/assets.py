"""Images of a report on disk, named by content hash: ``assets/<sha256>.<ext>``.

Hash names make bundles stable: inserting a cell renames nothing, an unchanged
image keeps its name (so a publisher can skip re-uploading it), and two cells
that plot the same picture share one file.
"""

from __future__ import annotations

import re
from pathlib import Path

from cml_nb.errors import StorageError
from cml_nb.records import write_atomic
from cml_nb.report.model import Asset

ASSETS_DIR = "assets"
_HASH_NAME = re.compile(r"^[0-9a-f]{64}\.[a-z]+$")


def write_assets(assets: dict[str, Asset], folder: Path) -> list[Path]:
    """Write each asset into ``folder`` unless a file of that name (so content) exists.

    Files with hash names that the report no longer uses are removed, so the
    folder holds exactly the report's images.

    Raises:
        StorageError: the folder cannot be written.
    """
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for asset in assets.values():
            path = folder / asset.name
            if not path.exists():
                if not asset.data:
                    raise StorageError(
                        f"asset {asset.name} has no data: load the report with load_bundle() "
                        "from a bundle that still has its assets/ folder"
                    )
                # O_EXCL temporary under a random name: a symlink planted in a shared
                # output folder (a fixed "NAME.tmp") is never followed.
                write_atomic(path, asset.data)
            written.append(path)
        for stale in folder.iterdir():
            if _HASH_NAME.match(stale.name) and stale.name not in assets:
                stale.unlink()
    except OSError as exc:
        raise StorageError(
            f"cannot write report images to {folder}: {exc.strerror or exc}"
        ) from exc
    return written


def read_assets(assets: dict[str, Asset], folder: Path) -> None:
    """Fill each asset's bytes from ``folder`` (missing files leave them empty)."""
    for asset in assets.values():
        path = folder / asset.name
        if path.is_file():
            asset.data = path.read_bytes()
