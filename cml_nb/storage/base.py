"""The storage interface: put content-addressed images somewhere a comment can link them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cml_nb.errors import StorageError

#: The only content types a backend may host: raster images and SVG (sanitised first,
#: by cml_nb.report.trust). Anything else served from a public bucket or a forge could
#: be a page (text/html) that runs script on that host.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})


@dataclass(frozen=True)
class AssetData:
    """One image: its content-addressed name (``<sha256>.<ext>``), bytes and MIME type."""

    name: str
    data: bytes
    mime: str


def require_image(asset: AssetData) -> str:
    """The asset's content type when it is an allowed image type; every backend checks.

    Raises:
        StorageError: any other type (``text/html`` served from a bucket runs script there).
    """
    mime = asset.mime.split(";")[0].strip().lower()
    if mime not in IMAGE_TYPES:
        raise StorageError(
            f"refusing to host {asset.name} as {asset.mime!r}: only images "
            f"({', '.join(sorted(IMAGE_TYPES))}) are uploaded"
        )
    return mime


@dataclass
class Stored:
    """Where each asset is now, and what had to be uploaded.

    Attributes:
        urls: asset name -> URL to put in the comment.
        uploaded: names uploaded by this call.
        reused: names already stored (nothing sent).
        notes: facts the user should know (e.g. when presigned URLs expire).
    """

    urls: dict[str, str] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Storage(Protocol):
    """A place for report images.

    Names are content hashes, so a stored name never changes meaning and an
    unchanged report uploads nothing again.
    """

    name: str

    def store(self, assets: Mapping[str, AssetData], *, known: Mapping[str, str]) -> Stored:
        """Store ``assets`` not stored yet and return every asset's URL.

        Args:
            assets: images by name.
            known: name -> URL of images the previous report comment already links;
                backends that cannot list what they hold reuse these.
        """
