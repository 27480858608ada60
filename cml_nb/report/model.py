"""The forge-neutral Report model: a header and a list of typed blocks.

A ``Report`` is what the report stage produces and every later stage consumes:
the Markdown and HTML renderers, the publisher (which swaps asset links for hosted
URLs), the sweep comparison (which builds its own blocks) and the history stage
(which fills ``baseline``). It round-trips through ``report.json`` with
``to_dict``/``from_dict``, so nothing downstream re-parses Markdown.

Blocks carry ``cell`` (the 1-based number of the source-notebook cell they came
from, not counting cells papermill added; None for blocks of no cell) and ``role``
(``markdown``, ``code`` or ``output``), which the size budget uses to decide
what to truncate or drop first.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

#: ``report.json``'s format version; bump it when a field changes meaning.
SCHEMA_VERSION = 1

_EXTENSIONS = {
    "image/webp": "webp",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/svg+xml": "svg",
}


@dataclass
class Asset:
    """An image stored once under its content hash, ``<sha256>.<ext>``.

    Attributes:
        name: the file name in ``assets/``, e.g. ``3f2a...c1.png``.
        mime: the image's MIME type.
        data: the raw bytes (not serialised into report.json; they live in assets/).
    """

    name: str
    mime: str
    data: bytes = field(default=b"", repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, mime: str) -> Asset:
        """An asset named by the SHA-256 of ``data``."""
        ext = _EXTENSIONS.get(mime, "bin")
        return cls(f"{hashlib.sha256(data).hexdigest()}.{ext}", mime, data)


@dataclass
class Block:
    """Base of every block; ``kind`` names the type in report.json."""

    kind: ClassVar[str] = "block"
    cell: int | None = field(default=None, kw_only=True)
    role: str = field(default="output", kw_only=True)


@dataclass
class MarkdownBlock(Block):
    """Markdown passed through as written (Markdown cells, ``display(Markdown(...))``).

    ``assets`` names images the text links as ``assets/<name>`` (cell attachments).
    """

    kind: ClassVar[str] = "markdown"
    text: str
    assets: list[str] = field(default_factory=list)


@dataclass
class CodeBlock(Block):
    """Source code; ``collapsed`` puts it in a closed ``<details>``."""

    kind: ClassVar[str] = "code"
    source: str
    language: str = "python"
    collapsed: bool = False


@dataclass
class StreamBlock(Block):
    """Text a cell printed: ``name`` is ``stdout``, ``stderr`` or ``warning``.

    The text is final: colour codes stripped, carriage-return frames collapsed.
    """

    kind: ClassVar[str] = "stream"
    text: str
    name: str = "stdout"


@dataclass
class TextBlock(Block):
    """A plain-text result (an object's repr) shown as preformatted text.

    ``language`` names the fence's info string: ``json``, ``geojson`` (which GitHub
    draws as a map), or ``text``.
    """

    kind: ClassVar[str] = "text"
    text: str
    language: str = "text"


@dataclass
class ImageBlock(Block):
    """An image, by asset name; ``base`` names the base run's image of the same place.

    The history stage sets ``base`` when the base's bundle is reachable; renderers then
    show the two side by side (base | this run).
    """

    kind: ClassVar[str] = "image"
    asset: str
    alt: str = "figure"
    base: str | None = None


@dataclass
class TableBlock(Block):
    """A table of strings; ``total_rows`` > ``len(rows)`` means it was truncated."""

    kind: ClassVar[str] = "table"
    columns: list[str]
    rows: list[list[str]]
    total_rows: int | None = None
    caption: str = ""


@dataclass
class DiffBlock(TextBlock):
    """A unified diff (``+``/``-`` lines) of a cell's source or output against the base.

    A TextBlock, so the size budget shortens it like any text output; rendered as a
    ``diff`` fence by :mod:`cml_nb.report.markdown`. ``label`` says what
    was compared (``source`` or ``output``).
    """

    kind: ClassVar[str] = "diff"
    label: str = ""


@dataclass
class HtmlBlock(Block):
    """HTML, already sanitized to what GitHub itself keeps.

    ``assets`` names images the HTML links as ``assets/<name>`` (``data:`` images
    moved out of the HTML), so renderers can point them at hosted URLs.
    """

    kind: ClassVar[str] = "html"
    html: str
    assets: list[str] = field(default_factory=list)


@dataclass
class MathBlock(Block):
    """A LaTeX formula, without its ``$``/``$$`` delimiters."""

    kind: ClassVar[str] = "math"
    latex: str


@dataclass
class ErrorBlock(Block):
    """An exception raised by a cell; the traceback lines carry no ANSI codes."""

    kind: ClassVar[str] = "error"
    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)


@dataclass
class NoteBlock(Block):
    """A short remark from cml-nb (omitted output, truncation); ``level``: info or warning."""

    kind: ClassVar[str] = "note"
    text: str
    level: str = "info"


@dataclass
class DetailsBlock(Block):
    """Blocks folded in a ``<details>`` under ``summary`` (``hide-input``, ``hide-output``)."""

    kind: ClassVar[str] = "details"
    summary: str
    blocks: list[Block] = field(default_factory=list)


BLOCK_TYPES: dict[str, type[Block]] = {
    cls.kind: cls
    for cls in (
        MarkdownBlock,
        CodeBlock,
        StreamBlock,
        TextBlock,
        ImageBlock,
        TableBlock,
        HtmlBlock,
        MathBlock,
        ErrorBlock,
        NoteBlock,
        DetailsBlock,
        DiffBlock,
    )
}


@dataclass
class ErrorSummary:
    """Why a run failed, for the top of the report.

    ``cell_index`` is the 0-based index in the executed notebook (as in run.json);
    ``cell_number`` the 1-based number of that cell in the author's notebook.
    """

    cell_index: int | None
    execution_count: int | None
    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)
    cell_number: int | None = None


@dataclass
class Report:
    """A report: header facts, body blocks and the images they use.

    Attributes:
        title: the heading.
        notebook: the notebook(s) reported on, as given.
        status: ``succeeded``, ``failed``, ``timeout``, ``kernel_died``, ``interrupted``
            or ``unknown`` (no run record and no error output).
        parameters: parameters as injected (secrets masked).
        metrics: last value of each metric.
        duration: seconds the run took, when known.
        commit: the git commit the run used, when known.
        runner: where it ran, e.g. ``NVIDIA H100 80GB HBM3 · Linux-6.5-x86_64``.
        error: the first failure, for the summary at the top.
        blocks: the body.
        assets: images by name.
        baseline: filled by the history stage: ``{"metrics": {...}, "parameters": {...},
            "source": "main@abc1234"}``; the metrics table then shows base and delta.
        extra: free-form facts other stages attach (shown nowhere by default).
        error_outputs: for notebooks cml-nb did not run (no run record), how many
            error outputs they hold; the header says that instead of a run status.
    """

    title: str
    notebook: str = ""
    status: str = "unknown"
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None
    commit: str | None = None
    runner: str | None = None
    error: ErrorSummary | None = None
    blocks: list[Block] = field(default_factory=list)
    assets: dict[str, Asset] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error_outputs: int | None = None

    def add_asset(self, data: bytes, mime: str) -> Asset:
        """Store image bytes (once per content) and return the asset."""
        asset = Asset.from_bytes(data, mime)
        self.assets.setdefault(asset.name, asset)
        return self.assets[asset.name]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form written as report.json (asset bytes excluded)."""
        data: dict[str, Any] = {"schema": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "blocks":
                data["blocks"] = [block_to_dict(b) for b in value]
            elif f.name == "assets":
                data["assets"] = {n: {"name": a.name, "mime": a.mime} for n, a in value.items()}
            elif f.name == "error":
                data["error"] = asdict(value) if value is not None else None
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from ``to_dict`` output (asset bytes left empty)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["blocks"] = [block_from_dict(b) for b in data.get("blocks", [])]
        values["assets"] = {
            n: Asset(a["name"], a["mime"]) for n, a in (data.get("assets") or {}).items()
        }
        if data.get("error"):
            values["error"] = ErrorSummary(**data["error"])
        return cls(**values)


def block_to_dict(block: Block) -> dict[str, Any]:
    """One block as JSON, tagged with its ``type``."""
    data: dict[str, Any] = {"type": block.kind}
    for f in fields(block):
        value = getattr(block, f.name)
        if isinstance(block, DetailsBlock) and f.name == "blocks":
            value = [block_to_dict(b) for b in value]
        data[f.name] = value
    return data


def block_from_dict(data: dict[str, Any]) -> Block:
    """The block a ``block_to_dict`` dict describes (unknown types become notes)."""
    cls = BLOCK_TYPES.get(data.get("type", ""))
    if cls is None:
        return NoteBlock(f"unsupported block type {data.get('type')!r} omitted")
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    if cls is DetailsBlock:
        values["blocks"] = [block_from_dict(b) for b in values.get("blocks", [])]
    return cls(**values)


def walk(blocks: list[Block]) -> list[Block]:
    """Every block, nested ones included, depth first."""
    found: list[Block] = []
    for block in blocks:
        found.append(block)
        if isinstance(block, DetailsBlock):
            found.extend(walk(block.blocks))
    return found
