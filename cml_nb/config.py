"""Settings: the user's config file, ``[tool.cml-nb]`` in pyproject.toml, ``CML_NB_*``, flags.

Keys are normalised to ``snake_case``. A table nested under ``[tool.cml-nb]`` is
flattened with ``_`` (``[tool.cml-nb.report] max-chars`` is ``report_max_chars``)
and, when its name is a command, also applies to that command's options only
(``[tool.cml-nb.run] timeout = 600``). In the CLI these values become click's
``default_map``, so a flag always wins; ``CML_NB_<KEY>`` overrides the file, and
``CML_NB_<COMMAND>_<OPTION>`` overrides both for one command.

The user's own file (``~/.config/cml-nb/config.toml``, or ``$XDG_CONFIG_HOME``, or the
path in ``CML_NB_USER_CONFIG``) holds the same keys at its top level, below the
repository's. Only it may describe a forge host (``[hosts."git.example.com"]`` with
``forge`` and ``api_url``): keys that decide where a token is sent (``api_url``) are
never taken from a repository's pyproject.toml, since anyone can open a pull request
that changes it (``repository_token_hosts`` finds them so the forge connection can
refuse them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError

ENV_PREFIX = "CML_NB_"
#: Names the user's config file; not itself a setting.
USER_CONFIG_VARIABLE = "CML_NB_USER_CONFIG"
#: The user config's table of forge hosts.
HOSTS_TABLE = "hosts"

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


def _read_toml(path: Path, fix: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}): {fix}") from exc


def read_file_table(start: Path | None = None) -> dict[str, Any]:
    """The raw ``[tool.cml-nb]`` table, ``{}`` when there is none."""
    path = find_pyproject(start)
    if path is None:
        return {}
    data = _read_toml(path, "fix it or remove [tool.cml-nb]")
    table = data.get("tool", {}).get("cml-nb", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.cml-nb] must be a table")
    return table


def is_token_host_key(key: str) -> bool:
    """Whether a (flattened) setting decides where a token is sent: ``api_url`` and its kin."""
    name = normalise(key)
    return name == "api_url" or name.endswith("_api_url")


def _without_token_hosts(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_without_token_hosts(v) if isinstance(v, dict) else v)
            for k, v in table.items() if not is_token_host_key(k)}  # fmt: skip


def repository_token_hosts(start: Path | None = None) -> dict[str, Any]:
    """Token-host keys in the repository's pyproject.toml: ``"<path> [tool.cml-nb] key"`` -> value.

    These are never used; the forge connection refuses them when they disagree with
    the host actually in use, so a hostile pull request cannot redirect a token.
    """
    path = find_pyproject(start)
    if path is None:
        return {}
    found: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], where: str) -> None:
        for key, value in table.items():
            name = f"{where}.{key}" if where else key
            if isinstance(value, dict):
                walk(value, name)
            elif is_token_host_key(key):
                found[f"{path} [tool.cml-nb] {name}"] = value

    walk(read_file_table(start), "")
    return found


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user's own config file (it need not exist)."""
    env = os.environ if env is None else env
    if env.get(USER_CONFIG_VARIABLE):
        return Path(env[USER_CONFIG_VARIABLE]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "cml-nb" / "config.toml"


def read_user_table(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The user's config file as a table, ``{}`` when there is none."""
    path = user_config_path(env)
    if not path.is_file():
        return {}
    return _read_toml(path, "fix it (docs/configuration.md, 'Your own config file')")


@dataclass(frozen=True)
class UserHost:
    """A forge host the user's config file describes."""

    forge: str
    api_url: str


def user_hosts(env: Mapping[str, str] | None = None) -> dict[str, UserHost]:
    """``[hosts."HOST"]`` of the user's config file, by lower-case host name.

    Raises:
        ConfigError: an entry lacks ``forge`` (github or gitlab) or an http(s) ``api_url``.
    """
    table = read_user_table(env).get(HOSTS_TABLE, {})
    where = user_config_path(env)
    if not isinstance(table, dict):
        raise ConfigError(f'{where}: [hosts] must hold tables like [hosts."git.example.com"]')
    found: dict[str, UserHost] = {}
    for host, entry in table.items():
        forge = entry.get("forge") if isinstance(entry, dict) else None
        api = entry.get("api_url") if isinstance(entry, dict) else None
        if forge not in ("github", "gitlab") or not (
            isinstance(api, str) and api.startswith(("https://", "http://"))
        ):
            raise ConfigError(
                f'{where}: [hosts."{host}"] needs forge = "github" or "gitlab" and '
                'api_url = "https://..." (the REST API root)'
            )
        found[str(host).lower()] = UserHost(forge, api.rstrip("/"))
    return found


def _user_settings(env: Mapping[str, str]) -> dict[str, Any]:
    table = read_user_table(env)
    return {k: v for k, v in table.items() if k != HOSTS_TABLE}


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
    ours = {name: raw for name, raw in env.items()
            if name.startswith(ENV_PREFIX) and raw != "" and name != USER_CONFIG_VARIABLE}  # fmt: skip
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
    """All settings, flattened: files, then environment, then ``flags`` (``None`` flags ignored).

    The user's config file comes first, the repository's ``[tool.cml-nb]`` (without
    token-host keys such as ``api_url``) second.
    """
    env = os.environ if env is None else env
    settings = _flatten(_user_settings(env))
    settings.update(_flatten(_without_token_hosts(read_file_table(start))))
    settings.update(_env_values(env))
    settings.update({normalise(k): v for k, v in (flags or {}).items() if v is not None})
    return settings


def command_defaults(
    command_names: list[str] | tuple[str, ...],
    start: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A click ``default_map``: shared keys, each command's own table, then ``CML_NB_<KEY>``.

    File values come from the user's config file, then the repository's pyproject.toml;
    token-host keys (``api_url``) are taken from neither: the forge connection reads the
    user's ``[hosts]`` itself and refuses a repository's.
    """
    env = os.environ if env is None else env
    tables = [_without_token_hosts(_user_settings(env)),
              _without_token_hosts(read_file_table(start))]  # fmt: skip
    from_env = _env_values(env)
    default_map: dict[str, Any] = {}
    for name in command_names:
        merged: dict[str, Any] = {}
        for table in tables:  # shared keys, then the command's own table, file by file
            merged.update({normalise(k): v for k, v in table.items() if not isinstance(v, dict)})
        for table in tables:
            own = table.get(name, {})
            merged.update(_command_table(own) if isinstance(own, dict) else {})
        default_map[name] = {**merged, **from_env}
    return default_map


def _command_table(table: Mapping[str, Any]) -> dict[str, Any]:
    # Sub-commands (``[tool.cml-nb.runner.launch]``) stay nested; options are normalised.
    return {
        normalise(k): (_command_table(v) if isinstance(v, dict) else v) for k, v in table.items()
    }
