"""The in-notebook report panel: ``from cml_nb.widgets import ReportPanel``.

A thin alias of :mod:`cml_nb.jupyter.widgets`, kept short for notebook users.
"""

from __future__ import annotations

from cml_nb.jupyter.widgets import ReportPanel

__all__ = ["ReportPanel"]
