"""Reading a report bundle that may come from an untrusted job (a fork's artifact).

A bundle's ``report.json`` names its images; in the ``workflow_run`` pattern that file was
written by a pull request's code. Before any byte is read or hosted:

- every asset name is ``<sha256>.<ext>``: no path separators, no ``..``; the file is a
  regular file directly inside ``assets/`` (no symlink is followed) whose bytes hash to
  its name, or the bundle is refused;
- the MIME type comes from the bytes (their magic), never from ``report.json``, and must
  be one of :data:`cml_nb.storage.base.IMAGE_TYPES`; anything else refuses the bundle;
- SVG, which can carry script, is rebuilt from an allow-list of elements and attributes
  (no ``<script>``, ``<foreignObject>``, event handlers, or references outside the file),
  then renamed by the hash of the clean bytes.

A bundle that fails raises :class:`~cml_nb.errors.NotebookReadError` (exit 3) naming the
first bad asset, so nothing of it is published.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from cml_nb.errors import NotebookReadError
from cml_nb.storage.base import IMAGE_TYPES

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from cml_nb.report.model import Report

_NAME = re.compile(r"[0-9a-f]{64}\.(?P<ext>png|jpg|gif|webp|svg)")
_EXT = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "svg": "image/svg+xml"}  # fmt: skip
#: The longest asset read (a report image is kilobytes to a few megabytes).
MAX_ASSET_BYTES = 32 * 1024 * 1024

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
#: Elements kept (with their allowed attributes); everything else goes with its subtree.
#: What matplotlib, plotly's static export, graphviz and seaborn write; no script, no
#: foreignObject, no animation (``set``/``animate`` can rewrite ``href``).
SVG_ELEMENTS = frozenset(
    [
        "svg",
        "g",
        "defs",
        "title",
        "desc",
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "tspan",
        "textPath",
        "clipPath",
        "mask",
        "pattern",
        "linearGradient",
        "radialGradient",
        "stop",
        "symbol",
        "use",
        "marker",
        "image",
        "style",
        "filter",
        "feGaussianBlur",
        "feOffset",
        "feBlend",
        "feFlood",
        "feComposite",
        "feMerge",
        "feMergeNode",
        "feColorMatrix",
        "switch",
    ]
)
_URL = re.compile(r"url\(\s*['\"]?\s*(?P<ref>[^)'\"\s]*)", re.I)
_BAD_CSS = re.compile(r"@import|expression\s*\(|javascript:|behavior\s*:|-moz-binding", re.I)
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*", re.I)


def _refuse(bundle: Path, name: str, why: str) -> NotebookReadError:
    return NotebookReadError(
        f"report bundle {bundle} is not safe to publish: asset {name!r} {why}; "
        "rebuild it with `cml-nb report` (a bundle from another job may have been tampered with)"
    )


def sniff(data: bytes) -> str | None:
    """The image type ``data`` is, from its magic bytes; None when it is no allowed image."""
    from cml_nb.report.images import looks_like

    for mime in ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"):
        if looks_like(data, mime):
            return mime
    return None


def _read_regular(folder: Path, name: str) -> bytes | None:
    """Bytes of ``folder/name`` if it is a regular file there; None when absent.

    Raises:
        OSError: it is a symlink (``ELOOP`` from ``O_NOFOLLOW``), not a regular file, or too big.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(folder / name, flags)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > MAX_ASSET_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_ASSET_BYTES // 2**20} MiB")
        return handle.read(MAX_ASSET_BYTES + 1)


def _safe_ref(value: str, *, image: bool = False) -> bool:
    value = value.strip()
    return value.startswith("#") or (image and _DATA_IMAGE.fullmatch(value) is not None)


def _safe_css(text: str) -> bool:
    if _BAD_CSS.search(text):
        return False
    return all(m.group("ref").startswith("#") for m in _URL.finditer(text))


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _clean(element: Element) -> None:
    """Strip ``element``'s children and attributes down to the allow-list, in place."""
    for child in list(element):
        ns, local = _local(child.tag) if isinstance(child.tag, str) else ("?", "")
        if ns not in ("", SVG_NS) or local not in SVG_ELEMENTS:
            element.remove(child)  # script, foreignObject, a, animate, comments, ...
            continue
        if local == "style" and not _safe_css(child.text or ""):
            element.remove(child)
            continue
        _clean(child)
    image = _local(element.tag)[1] == "image"
    for attr, value in list(element.attrib.items()):
        ns, local = _local(attr)
        lowered = local.lower()
        keep = ns in ("", XLINK_NS, "http://www.w3.org/XML/1998/namespace")
        if lowered.startswith("on") or lowered == "base" or "javascript:" in value.lower():
            keep = False
        elif lowered == "href":
            keep = keep and _safe_ref(value, image=image)
        elif "url(" in value.lower() or lowered == "style":
            keep = keep and _safe_css(value)
        if not keep:
            del element.attrib[attr]


def sanitize_svg(data: bytes) -> bytes | None:
    """``data`` rebuilt from the SVG allow-list; None when it is not a parseable SVG.

    Documents declaring entities are refused outright (billion laughs, external entities).
    """
    import xml.etree.ElementTree as ET

    if b"<!ENTITY" in data.upper():
        return None
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError, RecursionError):
        return None
    ns, local = _local(root.tag)
    if local != "svg" or ns not in ("", SVG_NS):
        return None
    _clean(root)
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=False))


def read_trusted_assets(report: Report, folder: Path) -> None:
    """Fill the bytes of ``report``'s assets from ``folder`` after checking each (see module).

    An asset whose file is absent keeps empty bytes (nothing to host). SVGs are
    sanitised and renamed, and every block that links them is relinked.

    Raises:
        NotebookReadError: an asset's name, location, bytes or type is not trustworthy.
    """
    bundle = folder.parent
    if folder.is_symlink():
        raise _refuse(bundle, folder.name, "folder is a symbolic link")
    renamed: dict[str, str] = {}
    for key, asset in list(report.assets.items()):
        found = _NAME.fullmatch(asset.name)
        if key != asset.name or found is None:
            raise _refuse(bundle, key if key != asset.name else asset.name,
                          "is not a content-hash name (<sha256>.<ext>) inside assets/")  # fmt: skip
        try:
            data = _read_regular(folder, asset.name)
        except OSError as exc:
            raise _refuse(bundle, asset.name, f"is not a regular file ({exc.strerror})") from None
        if data is None:
            continue
        if hashlib.sha256(data).hexdigest() != asset.name.split(".")[0]:
            raise _refuse(bundle, asset.name, "has bytes that do not hash to its name")
        mime = sniff(data)
        if mime is None or mime not in IMAGE_TYPES or _EXT[found.group("ext")] != mime:
            what = mime or "not an image"
            raise _refuse(bundle, asset.name, f"is {what}, not one of the hosted image types")
        asset.mime, asset.data = mime, data
        if mime == "image/svg+xml":
            clean = sanitize_svg(data)
            if clean is None:
                raise _refuse(bundle, asset.name, "is not an SVG that can be sanitised")
            if clean != data:
                del report.assets[key]
                renamed[key] = report.add_asset(clean, mime).name
    if renamed:
        _relink(report, renamed)


def _relink(report: Report, renamed: dict[str, str]) -> None:
    from cml_nb.report.model import HtmlBlock, ImageBlock, MarkdownBlock, walk

    for block in walk(report.blocks):
        if isinstance(block, ImageBlock):
            block.asset = renamed.get(block.asset, block.asset)
            if block.base:
                block.base = renamed.get(block.base, block.base)
        elif isinstance(block, MarkdownBlock):
            for old, new in renamed.items():
                if old in block.assets:
                    block.assets = [new if n == old else n for n in block.assets]
                    block.text = block.text.replace(old, new)
        elif isinstance(block, HtmlBlock):
            for old, new in renamed.items():
                if old in block.assets:
                    block.assets = [new if n == old else n for n in block.assets]
                    block.html = block.html.replace(old, new)
