"""Connect to the forge the context names: detected CI/git context plus flags, then a driver.

Where the token goes is decided here, and only from what the user controls: the CI
environment (``GITHUB_API_URL``, ``CI_API_V4_URL``), the command line (``--api-url``,
which the CLI also fills from ``CML_NB_*`` variables and the user's own config file),
the user's config file itself, or the ``origin`` remote of a host cml-nb knows
(``cml_nb.forge.hosts``). An unknown self-hosted host is an error that asks for
``--api-url``; it never falls back to a public forge. A repository's ``pyproject.toml``
cannot choose the host: an ``api_url`` there that disagrees is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError
from cml_nb.forge import Forge, get_forge
from cml_nb.forge import hosts as known_hosts
from cml_nb.forge.context import ForgeContext, detect, token_for

_API_VARIABLE = {"github": "GITHUB_API_URL", "gitlab": "CI_API_V4_URL"}
_REMOTE = "git remote origin"
_API_EXAMPLE = {"github": "https://HOST/api/v3", "gitlab": "https://HOST/api/v4"}


def context_for(
    *,
    forge: str | None = None,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ForgeContext:
    """The detected CI/git context with flags applied, checked for a forge, repository and host.

    Raises:
        ConfigError: the forge, repository or API host cannot be determined, or the
            repository's own config names another API host than the one in use.
    """
    env = os.environ if env is None else env
    ctx = detect(env, cwd)
    if forge is not None and forge != ctx.forge:
        # Another forge than detected: its own token and API variables apply.
        found, name = token_for(forge, env)
        variable = _API_VARIABLE.get(forge, "")
        api = env.get(variable) or None
        ctx = replace(ctx, forge=forge, token=found, token_name=name, api_url=api,
                      api_source=variable if api else None)  # fmt: skip
    ctx = ctx.override(repository=repo, api_url=api_url, token=token)
    if ctx.remote_host and ctx.api_source in (None, _REMOTE):
        ctx = _user_host(ctx, env)  # the user's word on a host beats cml-nb's guess
    if ctx.forge is None and ctx.remote_host:
        raise ConfigError(
            f"cannot tell the forge: the git remote's host {ctx.remote_host} is not one cml-nb "
            "knows; pass --forge github|gitlab and --api-url URL, or name the host in your "
            "config file (docs/configuration.md)"
        )
    if ctx.forge is None:
        raise ConfigError(
            "cannot tell the forge: not in GitHub Actions or GitLab CI, and the git remote "
            "'origin' names neither; pass --forge github|gitlab and --repo OWNER/NAME"
        )
    if not ctx.repository:
        raise ConfigError(
            f"cannot tell the {ctx.forge} repository: pass --repo OWNER/NAME "
            "(or run inside a checkout whose 'origin' remote points at it)"
        )
    if ctx.api_url is None:
        ctx = _host_from_remote(ctx)
    _refuse_repository_host(ctx, cwd)
    return ctx


def _user_host(ctx: ForgeContext, env: Mapping[str, str]) -> ForgeContext:
    """The remote's host as the user's config file describes it (``[hosts."HOST"]``)."""
    from cml_nb import config

    assert ctx.remote_host is not None
    entry = config.user_hosts(env).get(ctx.remote_host.lower())
    if entry is None or (ctx.forge is not None and entry.forge != ctx.forge):
        return ctx
    return replace(ctx, forge=entry.forge, api_url=entry.api_url,
                   api_source=str(config.user_config_path(env)))  # fmt: skip


def _host_from_remote(ctx: ForgeContext) -> ForgeContext:
    """The API of the ``origin`` remote's host for an explicitly named forge, or an error."""
    assert ctx.forge is not None
    host = ctx.remote_host
    if host is None:
        # No checkout, no CI: --forge X --repo Y means the public instance.
        public = known_hosts.PUBLIC.get(ctx.forge)
        if public is None:
            raise ConfigError(f"no API URL for forge {ctx.forge!r}: pass --api-url")
        return replace(ctx, api_url=public.api_url, api_source=f"the public {public.rule}")
    found = known_hosts.lookup(host)
    if found is not None and found.forge == ctx.forge:
        return replace(ctx, api_url=found.api_url, api_source=_REMOTE)
    example = _API_EXAMPLE.get(ctx.forge, "https://HOST/api").replace("HOST", host)
    raise ConfigError(
        f"the git remote's host {host} is not one cml-nb knows as {ctx.forge}: pass --api-url "
        f"(e.g. --api-url {example}), or name the host in your config file (docs/configuration.md), "
        "so the token goes only where you say"
    )


def _same(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def _refuse_repository_host(ctx: ForgeContext, cwd: Path | None) -> None:
    """Refuse an ``api_url`` in the repository's pyproject.toml that is not the host in use."""
    from cml_nb import config

    assert ctx.api_url is not None
    for where, value in config.repository_token_hosts(cwd).items():
        if not _same(str(value), ctx.api_url):
            raise ConfigError(
                f"{where} = {value!r} is ignored: a repository's config cannot choose where "
                f"your token goes (it goes to {ctx.api_url}, from {ctx.api_source or 'the forge'}); "
                f"remove the key, or if you trust that host pass --api-url or describe it in "
                f"{config.user_config_path()}"
            )


def token_destination(**options: Any) -> str:
    """The API root a publish with these options would send the token to; nothing is sent.

    Takes :func:`context_for`'s keyword arguments (``forge``, ``repo``, ``api_url``,
    ``cwd``, ``env``; others, such as ``target``, are ignored), so a face (the Jupyter
    post dialog) can name the host first with the arguments it publishes with.

    Raises:
        ConfigError: as :func:`context_for`.
    """
    known = ("forge", "repo", "token", "api_url", "cwd", "env")
    ctx = context_for(**{k: v for k, v in options.items() if k in known})
    assert ctx.api_url is not None
    return ctx.api_url


def connect(ctx: ForgeContext) -> Forge:
    """The forge driver for a context."""
    assert ctx.forge is not None and ctx.repository is not None
    options: dict[str, Any] = {}
    if ctx.forge == "gitlab" and ctx.pipeline is not None:
        options["pipeline"] = ctx.pipeline  # commit statuses join this job's pipeline
    return get_forge(ctx.forge, ctx.repository, token=ctx.token, api_url=ctx.api_url,
                     token_name=ctx.token_name, **options)  # fmt: skip


__all__ = ["connect", "context_for", "token_destination"]
