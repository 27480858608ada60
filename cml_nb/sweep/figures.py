"""Matplotlib figures for sweep reports, without pyplot: made, then saved as PNG bytes.

Shared by the comparison report (``compare``) and the search report (``search_report``),
which would otherwise import each other.
"""

from __future__ import annotations

import io
from typing import Any


def figure(width: float, height: float) -> Any:
    """A bare ``Figure`` (no pyplot, no global backend state: safe in any process)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png(fig: Any) -> bytes:
    """The figure as PNG bytes, without the matplotlib version in its metadata."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
