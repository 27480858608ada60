"""Imported once by the local executor's forkserver, so that every worker starts warm."""

from __future__ import annotations

from cml_nb._imports import skip_unused_format_checkers

skip_unused_format_checkers()  # this process only validates notebooks it wrote itself

from cml_nb.sweep.worker import preload  # noqa: E402

preload()
