"""Base images beside this run's: the same figure from the base's report bundle.

Images are stored under their content hash, so "the same figure" means the same place
in the notebook: the same alt text (``output of cell 7``) and the same position among
images with that alt text. The base's images are reachable when a report bundle of the
base commit (``report.json`` and ``assets/``, as ``cml-nb run`` writes beside each run)
lies in the ``--history`` folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cml_nb.report.model import Block, ImageBlock, Report


def _keyed(blocks: Iterable[Block]) -> dict[tuple[str, int], ImageBlock]:
    from cml_nb.report.model import ImageBlock, walk

    seen: dict[str, int] = {}
    keyed: dict[tuple[str, int], ImageBlock] = {}
    for block in walk(list(blocks)):
        if isinstance(block, ImageBlock):
            index = seen.get(block.alt, 0)
            seen[block.alt] = index + 1
            keyed[(block.alt, index)] = block
    return keyed


def find_bundle(folder: Path, commit: str | None) -> Path | None:
    """The newest report bundle under ``folder`` whose report was made at ``commit``."""
    if commit is None or not folder.is_dir():
        return None
    found = []
    for path in folder.rglob("report.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("commit") == commit:
            found.append((path.stat().st_mtime, path.parent))
    return max(found)[1] if found else None


def pair_images(report: Report, base: Report) -> int:
    """Link each image of ``report`` to the base's image of the same place, when it differs.

    The base image's bytes become an asset of ``report`` (so publishing uploads it);
    identical images are left single. Returns how many images were paired.
    """
    base_images = _keyed(base.blocks)
    paired = 0
    for key, block in _keyed(report.blocks).items():
        old = base_images.get(key)
        asset = base.assets.get(old.asset) if old is not None else None
        if asset is None or not asset.data or asset.name == block.asset:
            continue
        block.base = report.add_asset(asset.data, asset.mime).name
        paired += 1
    return paired


def pair_with_history(report: Report, folder: Path | None, commit: str | None) -> int:
    """Pair images with the base bundle found in ``folder`` for ``commit``; 0 when none."""
    from cml_nb.errors import CmlNbError
    from cml_nb.report.bundle import load_bundle

    bundle = find_bundle(folder, commit) if folder is not None else None
    if bundle is None:
        return 0
    try:
        return pair_images(report, load_bundle(bundle))
    except CmlNbError:  # an unreadable old bundle only costs the side-by-side view
        return 0
