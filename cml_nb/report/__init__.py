"""The report stage: executed notebooks to a forge-neutral Report, then to a bundle.

::

    build_report(notebooks) -> Report -> to_markdown() / to_html()
                                      -> write_bundle(out_dir): report.md, report.html,
                                         assets/<sha256>.<ext>, report.json
    load_bundle(out_dir) -> Report      (from report.json; no Markdown parsing)

Nothing here imports nbformat, nbconvert, Jinja or matplotlib: building a report
reads JSON and writes strings, which keeps ``cml-nb report`` fast.
"""

from __future__ import annotations

from cml_nb.report.budget import FORGE_LIMITS
from cml_nb.report.build import build_report, read_notebook
from cml_nb.report.bundle import load_bundle, write_bundle
from cml_nb.report.html import to_html
from cml_nb.report.markdown import metrics_table, to_markdown
from cml_nb.report.model import (
    Asset,
    Block,
    CodeBlock,
    DetailsBlock,
    ErrorBlock,
    ErrorSummary,
    HtmlBlock,
    ImageBlock,
    MarkdownBlock,
    MathBlock,
    NoteBlock,
    Report,
    StreamBlock,
    TableBlock,
    TextBlock,
)
from cml_nb.report.redact import redact_report

__all__ = [
    "FORGE_LIMITS",
    "Asset",
    "Block",
    "CodeBlock",
    "DetailsBlock",
    "ErrorBlock",
    "ErrorSummary",
    "HtmlBlock",
    "ImageBlock",
    "MarkdownBlock",
    "MathBlock",
    "NoteBlock",
    "Report",
    "StreamBlock",
    "TableBlock",
    "TextBlock",
    "build_report",
    "load_bundle",
    "metrics_table",
    "read_notebook",
    "redact_report",
    "to_html",
    "to_markdown",
    "write_bundle",
]
