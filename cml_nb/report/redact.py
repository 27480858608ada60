"""Mask credentials in a whole Report: header facts, every block, and SVG images.

Built on :class:`cml_nb.secrets.Scrubber` (token formats plus the values of
secret-looking environment variables and parameters). Run on the model, so
report.md, report.html and report.json all come from already-masked data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from cml_nb.report.model import ErrorSummary, ImageBlock, Report, walk
from cml_nb.secrets import Scrubber, mask_parameters

_SKIP_FIELDS = frozenset({"cell", "role", "blocks", "asset"})


def make_scrubber(secrets: Iterable[str] = ()) -> Scrubber:
    """A scrubber for ``secrets`` plus the values of secret-looking environment variables."""
    return Scrubber(secrets, include_env=True)


def _scrub_object(obj: Any, scrubber: Scrubber) -> None:
    for f in fields(obj):
        if f.name in _SKIP_FIELDS:
            continue
        value = getattr(obj, f.name)
        if isinstance(value, str | list | dict):
            setattr(obj, f.name, scrubber.scrub_data(value))


def _scrub_svgs(report: Report, scrubber: Scrubber) -> None:
    """SVG is text and may spell a token: mask it, and relink blocks to the new hash."""
    renamed: dict[str, str] = {}
    for name, asset in list(report.assets.items()):
        if asset.mime != "image/svg+xml" or not asset.data:
            continue
        text = asset.data.decode("utf-8", errors="replace")
        masked = scrubber.scrub(text)
        if masked != text:
            del report.assets[name]
            renamed[name] = report.add_asset(masked.encode("utf-8"), asset.mime).name
    if renamed:
        for block in walk(report.blocks):
            if isinstance(block, ImageBlock) and block.asset in renamed:
                block.asset = renamed[block.asset]


def redact_report(report: Report, scrubber: Scrubber | None = None) -> Report:
    """Mask every credential in ``report`` (in place) and return it."""
    scrubber = scrubber or make_scrubber()
    report.title = scrubber.scrub(report.title)
    report.notebook = scrubber.scrub(report.notebook)
    report.runner = scrubber.scrub(report.runner) if report.runner else report.runner
    report.parameters = scrubber.scrub_data(mask_parameters(report.parameters))
    report.metrics = scrubber.scrub_data(report.metrics)
    report.baseline = scrubber.scrub_data(report.baseline) if report.baseline else report.baseline
    report.extra = scrubber.scrub_data(report.extra)
    if isinstance(report.error, ErrorSummary):
        _scrub_object(report.error, scrubber)
    for block in walk(report.blocks):
        _scrub_object(block, scrubber)  # nested blocks come through walk()
    _scrub_svgs(report, scrubber)
    return report
