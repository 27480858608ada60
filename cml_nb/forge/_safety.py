"""Keep tokens out of logs and messages.

``protect(token)`` registers a secret for this process: every log record created
afterwards (urllib3, PyGithub, python-gitlab, http.client debug output routed to
logging, cml-nb's own) has it masked before any handler sees it, whatever the
handler. ``scrub(text)`` masks registered secrets and known token formats.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cml_nb.secrets import Scrubber

_lock = threading.Lock()
_scrubber = Scrubber(include_env=False)
_installed = False


def scrub(text: str) -> str:
    """``text`` with every protected secret and token pattern masked."""
    return _scrubber.scrub(text)


def protect(*secrets: str | None) -> None:
    """Mask these values in every later log record and in ``scrub``."""
    global _installed
    values = [s for s in secrets if s]
    with _lock:
        _scrubber.add(*values)
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it to logging's own error path
                return record
            cleaned = _scrubber.scrub(message)
            if cleaned != message or record.args:
                record.msg, record.args = cleaned, None
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
