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
from typing import Any

#: Settings the Lab settings editor, the panel and request bodies may override;
#: the same keys as in ``[tool.cml-nb]``.
SETTING_KEYS = ("forge", "target", "storage", "marker")


def scrub(text: str) -> str:
    """``text`` with tokens and secret values masked (for messages sent to a browser)."""
    from cml_nb.secrets import Scrubber

    return Scrubber().scrub(text)


def settings_for(notebook: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """cml-nb settings for ``notebook``: its project's ``[tool.cml-nb]``, env, then overrides."""
    from cml_nb import config

    flags = {
        k: v for k, v in (overrides or {}).items() if k in SETTING_KEYS and v not in ("", None)
    }
    return config.load(notebook.parent, flags=flags)


def preview(notebook: Path) -> dict[str, str]:
    """The report of the saved ``notebook`` as ``{"markdown", "html"}`` (HTML sanitized).

    Raises:
        NotebookReadError: the notebook is missing or not a notebook.
    """
    from cml_nb.report import build_report, to_html, to_markdown

    report = build_report([notebook])
    return {"markdown": to_markdown(report), "html": to_html(report)}


def describe_target(notebook: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where :func:`post` would publish: forge, repository, PR or commit, and a sentence.

    Raises:
        ForgeError: the forge or target cannot be determined (the message says how to set it).
    """
    from cml_nb.publish import resolve_target

    settings = settings_for(notebook, overrides)
    target = resolve_target(
        forge=settings.get("forge"), target=settings.get("target"), cwd=notebook.parent
    )
    return target_json(target)


def target_json(target: Any) -> dict[str, Any]:
    """A publish target as the JSON the frontend shows before posting."""
    return {
        "forge": target.forge,
        "repository": target.repository,
        "kind": target.kind,
        "number": target.number,
        "sha": target.sha,
        "description": target.describe(),
    }


def post(notebook: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Publish the saved ``notebook``'s report like ``cml-nb publish``; return the comment URL.

    Raises:
        ForgeAuthError: no token, or the token may not comment.
        TargetNotFoundError: no pull request for the current branch, or no such commit.
        StorageError: the report's images could not be stored.
    """
    from cml_nb.publish import publish
    from cml_nb.report.build import build_report
    from cml_nb.report.bundle import write_bundle

    settings = settings_for(notebook, overrides)
    with tempfile.TemporaryDirectory(prefix="cml-nb-post-") as tmp:
        bundle = write_bundle(build_report([notebook]), Path(tmp) / "report")
        result = publish(
            bundle,
            forge=settings.get("forge"),
            target=settings.get("target"),
            storage=settings.get("storage"),
            marker=settings.get("marker") or notebook.stem,
            cwd=notebook.parent,
        )
    return {"url": result.url, "target": target_json(result.target)}
