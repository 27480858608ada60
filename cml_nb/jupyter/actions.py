"""What "Preview report" and "Post report" do, for both Jupyter faces.

The server extension's handlers and the ipywidgets panel call these functions;
they in turn call the same library functions as ``cml-nb report`` and
``cml-nb publish``, so a report looks the same whichever face made it. All of
them read the notebook as saved on disk (no re-execution) and are blocking:
the server runs them in a thread.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cml_nb.forge.base import Target
    from cml_nb.report import Report

#: Settings the Lab settings editor, the panel and request bodies may override;
#: the same keys as in ``[tool.cml-nb]``.
SETTING_KEYS = ("forge", "target", "storage", "marker")


def scrub(text: str) -> str:
    """``text`` with tokens and secret values masked (for messages sent to a browser)."""
    from cml_nb.secrets import Scrubber

    return Scrubber().scrub(text)


def settings_for(notebook: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings ``cml-nb publish`` would use in the notebook's project, then ``overrides``.

    That is ``[tool.cml-nb]`` (and its ``publish`` table) of the pyproject.toml at or
    above the notebook, then ``CML_NB_*`` variables, then the non-empty overrides
    (the Lab settings or the panel's arguments).
    """
    from cml_nb import config

    settings: dict[str, Any] = config.command_defaults(["publish"], notebook.parent)["publish"]
    settings.update({k: v for k, v in (overrides or {}).items() if k in SETTING_KEYS and v})
    return settings


def _forge_args(notebook: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    # The keyword arguments that resolve_target() and publish() share.
    return {
        "forge": settings.get("forge") or None,
        "repo": settings.get("repo") or None,
        "api_url": settings.get("api_url") or None,
        "target": settings.get("target") or "auto",
        "cwd": notebook.parent,
    }


def build(notebook: Path, label: str | None = None) -> Report:
    """The report of the saved ``notebook``, naming it ``label`` (default: its file name).

    The report would otherwise show the server's absolute path, which means nothing
    to readers of the pull request and tells them about the developer's machine.
    """
    from cml_nb.report import build_report

    report = build_report([notebook])
    report.notebook = label or notebook.name
    return report


def preview(notebook: Path, label: str | None = None) -> dict[str, str]:
    """The report of the saved ``notebook`` as ``{"markdown", "html"}`` (HTML sanitized).

    Raises:
        NotebookReadError: the notebook is missing or not a notebook.
    """
    from cml_nb.report import to_html, to_markdown

    report = build(notebook, label)
    return {"markdown": to_markdown(report), "html": to_html(report)}


def describe_target(notebook: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where :func:`post` would publish, and the host that receives the token.

    The answer holds the target (forge, repository, kind, number, sha, a phrase) and
    :func:`token_host`'s ``api_url``, ``host``, ``api_source`` and ``token_name``.

    Raises:
        ConfigError: the forge or repository cannot be told, or the target is malformed.
        ForgeAuthError: no usable token.
        TargetNotFoundError: no such pull request, and no commit to fall back on.
    """
    from cml_nb.publish import resolve_target

    settings = settings_for(notebook, overrides)
    args = _forge_args(notebook, settings)
    # Where the token goes is settled first, without sending it anywhere, so the answer
    # (and the dialog showing it) names the host the lookup and the post will reach.
    host = token_host(notebook, settings)
    return {**target_json(resolve_target(**args)), **host}


def token_host(notebook: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The API root that would receive the token, where that choice came from, and the token.

    Nothing is sent: this is what the post dialog names before anything is posted.

    Raises:
        ConfigError: the forge, repository or host cannot be told, or the repository's
            own config tries to choose the host.
    """
    from urllib.parse import urlsplit

    from cml_nb.forge.connect import context_for

    args = {k: v for k, v in _forge_args(notebook, settings).items() if k != "target"}
    ctx = context_for(**args)
    api_url = ctx.api_url or ""
    return {
        "api_url": api_url,
        "host": urlsplit(api_url).netloc or api_url,
        "api_source": ctx.api_source or "",
        "token_name": ctx.token_name or "",
    }


def target_json(target: Target) -> dict[str, Any]:
    """A publish target as the JSON the frontend shows before posting."""
    return {
        "forge": target.forge,
        "repository": target.repository,
        "kind": target.kind,
        "number": target.number,
        "sha": target.sha,
        "description": target.describe(),
    }


def post(
    notebook: Path, overrides: Mapping[str, Any] | None = None, label: str | None = None
) -> dict[str, Any]:
    """Publish the saved ``notebook``'s report as ``cml-nb publish`` does; the comment's URL.

    Raises:
        NotebookReadError: the notebook is unreadable.
        ConfigError: the forge, repository or target cannot be told.
        ForgeAuthError: no token, or the token may not comment.
        TargetNotFoundError: no such pull request, and no commit to fall back on.
        StorageError: the report's images could not be stored.
    """
    from cml_nb.publish import publish
    from cml_nb.report import write_bundle

    settings = settings_for(notebook, overrides)
    with tempfile.TemporaryDirectory(prefix="cml-nb-post-") as tmp:
        bundle = write_bundle(build(notebook, label), Path(tmp) / notebook.stem)
        result = publish(
            bundle,
            storage=settings.get("storage") or None,
            marker=settings.get("marker") or None,
            **_forge_args(notebook, settings),
        )
    return {"url": result.url, "action": result.action, "target": target_json(result.target)}
