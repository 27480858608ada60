"""Connect to the forge the context names: detected CI/git context plus flags, then a driver."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from cml_nb.errors import ConfigError
from cml_nb.forge import Forge, get_forge
from cml_nb.forge.context import ForgeContext, detect, token_for

_API_VARIABLE = {"github": "GITHUB_API_URL", "gitlab": "CI_API_V4_URL"}


def context_for(
    *,
    forge: str | None = None,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ForgeContext:
    """The detected CI/git context with flags applied, checked for a forge and repository.

    Raises:
        ConfigError: the forge or repository cannot be determined.
    """
    env = os.environ if env is None else env
    ctx = detect(env, cwd)
    if forge is not None and forge != ctx.forge:
        # Another forge than detected: its own token and API variables apply.
        found, name = token_for(forge, env)
        api = env.get(_API_VARIABLE.get(forge, "")) or None
        ctx = replace(ctx, forge=forge, token=found, token_name=name, api_url=api)
    ctx = ctx.override(repository=repo, api_url=api_url, token=token)
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
    return ctx


def connect(ctx: ForgeContext) -> Forge:
    """The forge driver for a context."""
    assert ctx.forge is not None and ctx.repository is not None
    return get_forge(ctx.forge, ctx.repository, token=ctx.token, api_url=ctx.api_url,
                     token_name=ctx.token_name)  # fmt: skip
