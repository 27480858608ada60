"""Keep the CLI's start-up free of work it does not need.

nbformat imports jsonschema, whose format checkers import ``rfc3987_syntax`` when it is
installed (it comes with the Jupyter server stack): that import compiles a grammar and
costs about 0.8 s, for the ``iri`` formats that no notebook schema uses. The CLI marks the
module absent before anything imports jsonschema; jsonschema then simply skips those two
format checks. Library users' processes are left as they are.
"""

from __future__ import annotations

import sys

_UNUSED = ("rfc3987_syntax",)


def skip_unused_format_checkers() -> None:
    """Make ``import rfc3987_syntax`` fail fast in this process (if not imported yet)."""
    for name in _UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
