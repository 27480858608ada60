"""Image formats by their bytes: the magic each starts with, and their reader-facing names.

Used by :mod:`cml_nb.report.image_data` (outputs' images) and :mod:`cml_nb.report.trust`
(a bundle's assets), so both judge bytes the same way.
"""

from __future__ import annotations

import re

#: The first bytes each format starts with (PNG spec §5.2, JFIF/EXIF SOI, GIF87a/89a).
MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
_SVG = re.compile(rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<svg[\s>]", re.S)
_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF",
          "image/svg+xml": "SVG", "image/webp": "WebP"}  # fmt: skip


def format_name(mime: str) -> str:
    """``PNG`` for ``image/png``: the name a reader knows."""
    return _NAMES.get(mime, mime)


def looks_like(data: bytes, mime: str) -> bool:
    """Whether ``data`` starts as ``mime`` files do (unknown formats pass)."""
    if mime == "image/svg+xml":
        return bool(_SVG.match(data[:4096]))
    if mime == "image/webp":  # a RIFF container, of type WEBP (not WAVE, AVI, ...)
        return data.startswith(b"RIFF") and data[8:12] == b"WEBP"
    magic = MAGIC.get(mime)
    return magic is None or data.startswith(magic)
