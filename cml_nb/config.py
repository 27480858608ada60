"""Settings: ``[tool.cml-nb]`` in pyproject.toml, then ``CML_NB_*`` variables, then flags.

Keys are normalised to ``snake_case``. A table nested under ``[tool.cml-nb]`` is
flattened with ``_`` (``[tool.cml-nb.report] max-chars`` is ``report_max_chars``)
and, when its name is a command, also applies to that command's options only
(``[tool.cml-nb.run] timeout = 600``). In the CLI these values become click's
``default_map``, so a flag always wins; ``CML_NB_<KEY>`` overrides the file, and
``CML_NB_<COMMAND>_<OPTION>`` overrides both for one command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError

ENV_PREFIX = "CML_NB_"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def normalise(key: str) -> str:
    """``max-chars`` and ``Max_Chars`` both become ``max_chars``."""
    return key.strip().replace("-", "_").lower()


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` (default: the working directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_file_table(start: Path | None = None) -> dict[str, Any]:
    """The raw ``[tool.cml-nb]`` table, ``{}`` when there is none."""
    path = find_pyproject(start)
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{path} is not valid TOML ({exc}): fix it or remove [tool.cml-nb]"
        ) from exc
    table = data.get("tool", {}).get("cml-nb", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.cml-nb] must be a table")
    return table


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = prefix + normalise(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "_"))
        else:
            flat[name] = value
    return flat


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    ours = {name: raw for name, raw in env.items() if name.startswith(ENV_PREFIX) and raw != ""}
    if not ours:
        return {}
    import yaml  # env values are typed like YAML scalars: 30, true, 0.5

    values: dict[str, Any] = {}
    for name, raw in ours.items():
        key = normalise(name[len(ENV_PREFIX) :])
        try:
            values[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            values[key] = raw
    return values


def load(
    start: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """All settings, flattened: file, then environment, then ``flags`` (``None`` flags ignored)."""
    settings = _flatten(read_file_table(start))
    settings.update(_env_values(os.environ if env is None else env))
    settings.update({normalise(k): v for k, v in (flags or {}).items() if v is not None})
    return settings


def command_defaults(
    command_names: list[str] | tuple[str, ...],
    start: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A click ``default_map``: shared keys, each command's own table, then ``CML_NB_<KEY>``."""
    table = read_file_table(start)
    shared = {normalise(k): v for k, v in table.items() if not isinstance(v, dict)}
    from_env = _env_values(os.environ if env is None else env)
    default_map: dict[str, Any] = {}
    for name in command_names:
        own = table.get(name, {})
        own_table = _command_table(own) if isinstance(own, dict) else {}
        default_map[name] = {**shared, **own_table, **from_env}
    return default_map


def _command_table(table: Mapping[str, Any]) -> dict[str, Any]:
    # Sub-commands (``[tool.cml-nb.runner.launch]``) stay nested; options are normalised.
    return {
        normalise(k): (_command_table(v) if isinstance(v, dict) else v) for k, v in table.items()
    }
