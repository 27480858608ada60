"""Static PNGs of plotly figures through kaleido, drawn once per figure.

Validation is off: figures saved by an older plotly carry properties the installed
one no longer accepts (``titlefont``), and the saved JSON is drawn as it is. Each
rendering is cached by the figure's JSON. kaleido (1.x) starts Chrome for every
figure unless its sync server runs, so :func:`plotly_session` (entered by
``build_report``) starts the server on the first figure and stops it at the end.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from cml_nb.report.images import looks_like

_CACHE: dict[str, tuple[bytes | None, str]] = {}
_LOCK = threading.Lock()
_state = {"sessions": 0, "server": False}


@contextmanager
def plotly_session() -> Iterator[None]:
    """Within it, figures share one kaleido server (started lazily, stopped on exit)."""
    with _LOCK:
        _state["sessions"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _state["sessions"] -= 1
            if _state["sessions"] == 0 and _state["server"]:
                _state["server"] = False
                with suppress(Exception):  # already gone with its Chrome: nothing to stop
                    import kaleido

                    kaleido.stop_sync_server(silence_warnings=True)


def plotly_png(figure: Any) -> tuple[bytes | None, str]:
    """A PNG of ``figure`` (its plotly JSON), or None and why there is none."""
    key = hashlib.sha256(json.dumps(figure, sort_keys=True, default=str).encode()).hexdigest()
    if key not in _CACHE:
        _CACHE[key] = _render(figure)
    return _CACHE[key]


def _start_server() -> None:
    import kaleido

    with _LOCK:
        if _state["sessions"] and not _state["server"]:
            with suppress(Exception):  # no Chrome: to_image below says so
                kaleido.start_sync_server(silence_warnings=True)
                _state["server"] = True


def _render(figure: Any) -> tuple[bytes | None, str]:
    try:
        import kaleido  # noqa: F401  # only to tell "not installed" from "failed"
        import plotly.io as pio
    except ImportError:
        return None, "install plotly and kaleido for a static image"
    _start_server()
    try:
        with warnings.catch_warnings():  # "kopts is ignored if using a server": as intended
            warnings.simplefilter("ignore")
            png = pio.to_image(figure, format="png", validate=False)
    except Exception as exc:  # kaleido's errors are many (no Chrome, bad figure, timeout)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        return None, f"kaleido could not draw it: {first}"
    if not isinstance(png, bytes) or not looks_like(png, "image/png"):
        return None, "kaleido returned no PNG"
    return png, ""
