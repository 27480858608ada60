"""cml-nb: continuous machine learning for Jupyter notebooks.

The stable public surface is listed in ``__all__``. Heavy modules (papermill,
the forge clients, boto3) load only when the function that needs them runs.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access).
_EXPORTS = {
    "log_metric": "cml_nb.metrics",
    "log_metrics": "cml_nb.metrics",
    "log_param": "cml_nb.metrics",
    "read_metrics": "cml_nb.metrics",
    "run": "cml_nb.execute",
    "RunRecord": "cml_nb.records",
    "CmlNbError": "cml_nb.errors",
    "build_report": "cml_nb.report",
    "write_bundle": "cml_nb.report",
    "load_bundle": "cml_nb.report",
    "run_sweep": "cml_nb.sweep.runner",
    "compare": "cml_nb.history",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cml_nb' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


# Jupyter entry points: small functions, so that importing cml_nb stays cheap; the
# server extension's handlers load only when jupyter_server calls the loader.
def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "cml_nb.jupyter"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Used by ``jupyter-builder develop``; wheels ship the build under share/jupyter.
    return [{"src": "labextension", "dest": "cml-nb"}]
