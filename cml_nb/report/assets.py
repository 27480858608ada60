"""Images of a report on disk, named by content hash: ``assets/<sha256>.<ext>``.

Hash names make bundles stable: inserting a cell renames nothing, an unchanged
image keeps its name (so a publisher can skip re-uploading it), and two cells
that plot the same picture share one file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from cml_nb.errors import StorageError
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
                _write_new(path, asset.data)
            written.append(path)
        for stale in folder.iterdir():
            if _HASH_NAME.match(stale.name) and stale.name not in assets:
                stale.unlink()
    except OSError as exc:
        raise StorageError(
            f"cannot write report images to {folder}: {exc.strerror or exc}"
        ) from exc
    return written


def _write_new(path: Path, data: bytes) -> None:
    # mkstemp opens with O_EXCL under a random name: a symlink planted in a shared output
    # folder (a fixed "NAME.tmp") is never followed; os.replace then swaps in the file.
    from cml_nb.records import _umask

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; keep what open() would make
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_assets(assets: dict[str, Asset], folder: Path) -> None:
    """Fill each asset's bytes from ``folder`` (missing files leave them empty)."""
    for asset in assets.values():
        path = folder / asset.name
        if path.is_file():
            asset.data = path.read_bytes()
