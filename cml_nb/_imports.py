"""Keep the CLI's start-up free of work it does not need.

nbformat imports jsonschema, whose format checkers import ``rfc3987_syntax`` when it is
installed (it comes with the Jupyter server stack): that import compiles a grammar and
costs about 0.8 s, for the ``iri`` formats that no notebook schema uses. The CLI marks the
module absent before anything imports jsonschema; jsonschema then simply skips those two
format checks. The same holds for its other optional format checkers (``uri-template``,
``duration`` with arrow underneath, ``date-time``, ``hostname``, colours: about 0.1 s):
nbformat's schemas use no ``format`` keyword at all.

``papermill.iorw`` imports a client for every remote store it can read notebooks from
(boto3 for ``s3://``, azure for ``abs://`` and ``adl://``, gcsfs, pyarrow for HDFS and
PyGithub for ``github://``) whenever they are installed: about 1 s on a loaded 2-core
machine, for paths cml-nb never gives papermill (it hands papermill the notebook object
and writes the output itself). In CLI processes ``import_papermill`` imports papermill with
those handlers absent (papermill then treats them as not installed) and puts the modules
back, so cml-nb's own later ``import boto3`` or ``import github`` works as usual.
Library users' processes are left as they are.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

#: jsonschema's optional format checkers (jsonschema/_format.py), each imported when
#: installed. No notebook schema of nbformat has a ``format`` keyword, so in a CLI process
#: none of them ever checks anything. ``idna`` and ``jsonpointer`` stay: requests and
#: others use them for real work.
_UNUSED = (
    "rfc3987_syntax",
    "rfc3987",
    "rfc3986_validator",
    "rfc3339_validator",
    "fqdn",
    "webcolors",
    "uri_template",
    "isoduration",
)

#: What papermill/iorw.py imports inside ``try: ... except ImportError`` for remote paths.
_PAPERMILL_REMOTE_IO = (
    "papermill.s3",
    "papermill.abs",
    "papermill.adl",
    "gcsfs",
    "pyarrow.fs",
    "github",
)

_cli_process = False


def skip_unused_format_checkers() -> None:
    """Make ``import rfc3987_syntax`` (and the other format checkers) fail fast here.

    Also marks this process as a CLI one, where ``import_papermill`` trims papermill's
    remote-store imports.
    """
    global _cli_process
    _cli_process = True
    for name in _UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def import_papermill() -> ModuleType:
    """``import papermill``, without its remote-store clients in a CLI process."""
    if not _cli_process or "papermill.iorw" in sys.modules:
        return importlib.import_module("papermill")
    blocked = [name for name in _PAPERMILL_REMOTE_IO if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("papermill")
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
