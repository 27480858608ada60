"""What the CLI leaves out of its imports (``cml_nb/_imports.py``), and that nothing breaks.

papermill is imported without the remote-store clients it never uses in cml-nb, and those
packages still import normally afterwards (cml-nb's own GitHub forge and S3 storage need
them in the same process); library users' processes import papermill untouched.
"""

from __future__ import annotations

import subprocess
import sys

CLI_PROCESS = """
import sys
from cml_nb import _imports
_imports.skip_unused_format_checkers()
_imports.import_papermill()
import papermill.iorw as iorw
print("github" in sys.modules, "boto3" in sys.modules, "azure.storage.blob" in sys.modules)
import github, boto3  # the forge and storage still import them
print(github.Github.__name__, boto3.__name__)
import nbformat
nbformat.validate(nbformat.v4.new_notebook())
print(sys.modules.get("isoduration") is None, sys.modules.get("rfc3986_validator") is None)
"""

LIBRARY_PROCESS = """
import sys
from cml_nb import _imports
_imports.import_papermill()
import papermill.iorw as iorw
print(iorw.Github.__module__)
"""


def _python(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")


def test_the_cli_imports_papermill_without_remote_clients_which_still_import_later() -> None:
    first, second, third = _python(CLI_PROCESS)[:3]
    assert first == "False False False"
    assert second == "Github boto3"
    assert third == "True True"  # jsonschema's unused format checkers stay out


def test_a_library_process_imports_papermill_as_it_is() -> None:
    assert _python(LIBRARY_PROCESS)[0].startswith("github")
