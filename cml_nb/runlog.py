"""What a run logs: papermill's and nbclient's records, masked, with cell output per line.

One filter sits on the ``papermill`` logger for the whole run (nbclient logs through
it too), whatever the verbosity, so every handler behind it (``--log-output``'s
stream, ``-vv``'s root handler, a caller's own) sees masked text only:

- cell output (``--log-output``) is held until a line is complete: a kernel may
  flush a token in two writes, and neither half matches a token pattern alone;
  a line ends at ``\n`` only, and is logged as a terminal shows it
  (:mod:`cml_nb.terminal`), so a bar redrawn with ``\r`` logs its last frame,
  not one line per frame;
- nbclient's debug records of each cell's source and each raw message
  (``-vv``) are logged without their content: the injected parameters cell and
  outputs may hold secrets, and a raw chunk may be half a token;
- papermill's "Executing Cell N" lines number cells as the author does (the
  same numbers as the run's summary and error messages).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cml_nb.secrets import Scrubber
from cml_nb.terminal import render_terminal

PAPERMILL_LOGGER = "papermill"
_NOISE = ("Input Notebook", "Output Notebook", "Working directory")
_STREAM_FUNC = "log_output_message"  # papermill.clientwrap's per-output logging
#: A line longer than this is logged in pieces (a kernel printing without newlines).
MAX_PENDING = 1 << 20


class RunLogFilter(logging.Filter):
    """Masks every record of the run and re-cuts streamed cell output into lines."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self.scrubber = scrubber
        self._pending: dict[int, str] = {}  # by level: stdout is INFO, stderr WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` masked; False holds (or drops) it."""
        if getattr(record, "cml_nb_done", False):
            return True
        text = record.getMessage()
        if text.startswith(_NOISE):
            return False
        if record.funcName == _STREAM_FUNC and _is_stream(record):
            lines = self._complete_lines(record.levelno, text)
            if lines is None:
                return False
            text = lines
        elif record.levelno <= logging.DEBUG:
            text = _without_content(text)
        record.msg, record.args = self.scrubber.scrub(text), ()
        return True

    def _complete_lines(self, level: int, text: str) -> str | None:
        buffered = self._pending.pop(level, "") + text
        # Only \n completes a line: a \r redraws it, and the frames are not what a person saw.
        cut = buffered.rfind("\n") + 1 or (len(buffered) if len(buffered) > MAX_PENDING else 0)
        done, rest = buffered[:cut], buffered[cut:]
        if rest:
            self._pending[level] = rest
        shown = self._render(done).rstrip("\n")
        if not done or (not shown.strip() and "\n" not in done):
            return None  # nothing complete yet, or only cursor movement
        return shown

    def _render(self, text: str) -> str:
        # Masked before the model too: a cursor move overwriting a token's tail
        # would leave its head on screen, unmatched by the token's pattern.
        return render_terminal(self.scrubber.scrub(text))

    def flush(self, logger: logging.Logger) -> None:
        """Log what is still held (output that never ended its line)."""
        for level, text in sorted(self._pending.items()):
            shown = self._render(text)
            if shown.strip():
                logger.log(level, "%s", self.scrubber.scrub(shown), extra={"cml_nb_done": True})
        self._pending.clear()


def _is_stream(record: logging.LogRecord) -> bool:
    """Whether papermill logged a stream chunk (not a result's text/plain, which is whole).

    papermill logs both from ``log_output_message`` with the same call; only that
    frame's ``output`` tells them apart, and the filter runs inside that call.
    """
    frame = sys._getframe(1)
    for _ in range(16):  # filter <- Filterer.filter <- Logger.handle <- _log <- info <- caller
        if frame is None:
            break
        if frame.f_code.co_name == _STREAM_FUNC:
            output = frame.f_locals.get("output")
            return getattr(output, "get", lambda _key: "stream")("output_type") == "stream"
        frame = frame.f_back  # type: ignore[assignment]
    return True  # not found: buffering is the safe side (a split token stays masked)


def _without_content(text: str) -> str:
    # nbclient: "Executing cell:\n<source>" and "content: {<raw message>}".
    if text.startswith("Executing cell:"):
        source = text.partition("\n")[2]
        return f"Executing cell ({source.count(chr(10)) + 1} lines; source not logged)"
    if text.startswith("content: "):
        return "content: (not logged: cell output may hold secrets)"
    return text


def cell_start_line(number: int | None) -> str:
    """Papermill's "Executing Cell N" line, with the author's cell number."""
    if number is None:
        return "Executing the injected parameters cell"
    return f"Executing cell {number}"


@contextmanager
def guarded(scrubber: Scrubber, *, stream: bool) -> Iterator[RunLogFilter]:
    """Mask the ``papermill`` logger's records for the block; ``stream`` shows cell output."""
    logger = logging.getLogger(PAPERMILL_LOGGER)
    guard = RunLogFilter(scrubber)
    logger.addFilter(guard)
    saved: Mapping[str, Any] = {"level": logger.level, "propagate": logger.propagate}
    handler: logging.Handler | None = None
    if stream:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield guard
    finally:
        guard.flush(logger)
        logger.removeFilter(guard)
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(saved["level"])
            logger.propagate = saved["propagate"]
