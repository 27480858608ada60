"""Jupyter faces of cml-nb: the jupyter_server extension and the ipywidgets panel.

``cml_nb`` declares this module as its server extension point. Loading it only
registers the REST handlers (``handlers.py``); they and the panel (``widgets.py``)
call the same functions (``actions.py``) that the CLI's ``report`` and ``publish``
verbs call.
"""

from __future__ import annotations

from typing import Any


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register ``/cml-nb/preview``, ``/cml-nb/target`` and ``/cml-nb/post``."""
    from cml_nb.jupyter.handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("cml-nb: registered /cml-nb/{preview,target,post}")
