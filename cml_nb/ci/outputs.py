"""Step outputs in GitHub Actions: ``name=value`` lines appended to ``$GITHUB_OUTPUT``.

Written in the multiline form ``name<<DELIMITER`` with a random delimiter
(docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands#multiline-strings),
so no value (a URL, a status) can end the block early and set another output.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Mapping
from pathlib import Path

from cml_nb.errors import StorageError


def set_output(name: str, value: str, env: Mapping[str, str] | None = None) -> bool:
    """Append output ``name`` for this step; False outside GitHub Actions (nothing written).

    Raises:
        StorageError: ``$GITHUB_OUTPUT`` names a file that cannot be written.
    """
    env = os.environ if env is None else env
    target = env.get("GITHUB_OUTPUT")
    if not target:
        return False
    delimiter = f"ghadelimiter_{_random.token_hex(16)}"
    try:
        with Path(target).open("a", encoding="utf-8") as handle:
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    except OSError as exc:
        raise StorageError(f"cannot write GITHUB_OUTPUT {target}: {exc.strerror or exc}") from exc
    return True
