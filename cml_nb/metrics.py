"""Log metrics and parameters from inside a notebook, and read them back.

``log_metric("accuracy", 0.93)`` displays a one-line text output in Jupyter and
carries the value in an output of MIME type :data:`METRICS_MIME`, which ``cml-nb
run`` reads from the executed notebook. It works in any notebook, with or without
CI, and costs no dependency beyond IPython (already in every kernel).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

METRICS_MIME = "application/vnd.cml-nb.metrics+json"

Scalar = float | int | str | bool | None


def _clean(value: Any) -> Scalar:
    """Plain JSON scalars: numpy and torch scalars become numbers, NaN and inf None."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"metric values must be numbers or strings, not {type(value).__name__}"
        ) from exc
    return number if math.isfinite(number) else None


def _emit(payload: dict[str, Any], text: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python without IPython: still useful as a log line
        print(text)
        return
    if get_ipython() is None:
        print(text)
        return
    display({"text/plain": text, METRICS_MIME: payload}, raw=True)  # type: ignore[no-untyped-call]


def _format(values: Mapping[str, Scalar]) -> str:
    return ", ".join(
        f"{k} = {v:.6g}" if isinstance(v, float) else f"{k} = {v}" for k, v in values.items()
    )


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log several metrics at once, optionally at a training ``step``."""
    values = {str(name): _clean(value) for name, value in metrics.items()}
    payload: dict[str, Any] = {"metrics": values}
    prefix = "metrics"
    if step is not None:
        payload["step"] = int(step)
        prefix = f"metrics (step {int(step)})"
    _emit(payload, f"{prefix}: {_format(values)}")


def log_metric(name: str, value: Any, step: int | None = None) -> None:
    """Log one metric, e.g. ``log_metric("accuracy", 0.93)`` or per epoch with ``step``."""
    log_metrics({name: value}, step=step)


def log_param(name: str, value: Any) -> None:
    """Record a parameter chosen inside the notebook (shown beside the injected ones).

    A secret-looking name (``api_key``, ``db_password``...) is logged as ``***``.
    """
    cleaned = value if isinstance(value, list | dict) else _clean(value)
    from cml_nb.secrets import MASK, looks_secret

    if looks_secret(str(name)):  # shown and recorded like a secret injected parameter
        cleaned = MASK
    _emit({"params": {str(name): cleaned}}, f"param: {name} = {cleaned}")


def _payloads(cells: Iterable[Mapping[str, Any]]) -> Iterable[dict[str, Any]]:
    for cell in cells:
        for output in cell.get("outputs", ()):
            data = output.get("data") or {}
            if METRICS_MIME in data:
                payload = data[METRICS_MIME]
                if isinstance(payload, dict):
                    yield payload


def read_metrics(nb: Mapping[str, Any]) -> dict[str, Any]:
    """What a notebook logged: ``{"metrics", "history", "params"}``.

    ``metrics`` holds the last value of each metric; ``history`` each stepped
    metric's series as ``[{"step": s, "value": v}, ...]``; ``params`` the logged
    parameters.
    """
    metrics: dict[str, Scalar] = {}
    history: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, Any] = {}
    for payload in _payloads(nb.get("cells", ())):
        step = payload.get("step")
        for name, value in (payload.get("metrics") or {}).items():
            metrics[name] = value
            if step is not None:
                history.setdefault(name, []).append({"step": step, "value": value})
        params.update(payload.get("params") or {})
    return {"metrics": metrics, "history": history, "params": params}
