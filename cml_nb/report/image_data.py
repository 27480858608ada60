"""Image data of an output decoded and checked before it becomes an asset.

Notebooks carry images as base64 text (PNG, JPEG, GIF) or SVG markup, and real
ones hold empty strings (a figure closed before drawing), truncated base64 and
bytes that are not the format they claim. A file written from those shows a
broken picture, so each image is checked against its format's magic bytes and
anything unreadable becomes a short note naming what was wrong. SVG is rebuilt
from the allow-list a bundle's reader applies, so assets keep their names.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cml_nb.report.images import format_name, looks_like
from cml_nb.report.trust import sanitize_svg


@dataclass
class Decoded:
    """An image's bytes, or why there are none (``problem``, for a note)."""

    data: bytes = b""
    problem: str = ""


def decode_image(payload: str, mime: str) -> Decoded:
    """Bytes of an output's image, checked; a problem instead when they are unusable.

    Args:
        payload: the output's value for ``mime`` (base64 text, or SVG markup).
        mime: the image's MIME type.
    """
    name = format_name(mime)
    if mime == "image/svg+xml":
        data = payload.encode("utf-8")
    else:
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            return Decoded(problem=f"a {name} image whose data is not valid base64")
    return checked(data, mime)


def checked(data: bytes, mime: str) -> Decoded:
    """Raw image bytes checked as :func:`decode_image` checks decoded ones."""
    name = format_name(mime)
    if not data.strip():
        return Decoded(problem=f"an empty {name} image")
    if not looks_like(data, mime):
        return Decoded(problem=f"a {name} image whose bytes are not {name} data")
    if mime == "image/svg+xml":
        # Rebuilt from the allow-list a bundle's reader applies (cml_nb.report.trust), so
        # the asset is safe to host and keeps its name when the bundle is loaded again.
        clean = sanitize_svg(data)
        if clean is None:
            return Decoded(problem="an SVG image that cannot be parsed")
        data = clean
    return Decoded(data)


def data_uri_image(uri: str) -> tuple[str, Decoded] | None:
    """The MIME type and checked bytes of a ``data:image/...`` URI; None if it is not one."""
    match = re.match(r"data:(image/[\w.+-]+)(?:;[\w=.+-]+)*?(;base64)?,(.*)", uri, re.S | re.I)
    if match is None:
        return None
    mime = match.group(1).lower()
    if match.group(2):
        return mime, decode_image(match.group(3), mime)
    from urllib.parse import unquote

    text = unquote(match.group(3))
    if mime == "image/svg+xml":
        return mime, decode_image(text, mime)
    return mime, Decoded(problem=f"a {format_name(mime)} image in a data: URI without base64")
