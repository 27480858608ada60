"""Inline Markdown that block builders need too: text as a code span.

It lives apart from :mod:`cml_nb.report.markdown` (the renderer) so that building
blocks does not import the renderer.
"""

from __future__ import annotations

import re

_BACKTICKS = re.compile(r"`+")


def code_span(text: str) -> str:
    """``text`` as inline code, whatever backticks it holds."""
    text = text.replace("\n", " ")
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"
