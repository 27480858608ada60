"""The terminal model, re-exported: it lives in :mod:`cml_nb.terminal`.

The run's live log (``--log-output``) applies it too, and the execute stage may not
import report, so the model sits in a stage-neutral module.
"""

from __future__ import annotations

from cml_nb.terminal import MAX_ROWS, Screen, render_terminal

__all__ = ["MAX_ROWS", "Screen", "render_terminal"]
