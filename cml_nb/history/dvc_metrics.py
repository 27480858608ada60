"""Base metrics from DVC's own metrics files, for the ``git`` source of :mod:`.base`.

A DVC repository (DVCLive's included) may commit no cml-nb ``metrics.json``; its
``dvc.yaml`` lists the metrics files DVC compares (``dvc metrics diff``), and those
are what the base's metrics are then read from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cml_nb.history.gitfiles import _flatten, _git, _git_path


def _show(commit: str, path: str, cwd: Path | None) -> str | None:
    """``git show COMMIT:./PATH`` (relative to ``cwd``, as the metrics path is), or None."""
    return _git(["show", "--end-of-options", f"{commit}:{_git_path(path)}"], cwd)


def _parse(text: str, path: str) -> Any:
    import yaml

    try:  # JSON files as JSON; DVC also allows YAML (and TOML, not read here)
        if path.endswith((".yaml", ".yml")):
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, RecursionError, yaml.YAMLError):
        return None


def dvc_metrics(commit: str, cwd: Path | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The metrics files ``dvc.yaml`` lists at ``commit`` (DVC, DVCLive), merged.

    ``dvc.yaml`` names them under a top-level ``metrics:`` (DVCLive writes
    ``dvclive/metrics.json`` there) and under each stage's ``metrics:`` outputs
    (https://dvc.org/doc/user-guide/project-structure/dvcyaml-files#metrics). They are
    committed to git (``cache: false``) when a repository compares metrics across
    commits. Nested keys join with ``/`` (DVCLive's ``train/loss`` is stored as
    ``{"train": {"loss": ...}}``), the names its reader gives them; DVCLive's ``step``
    counter is dropped.
    """
    text = _show(commit, "dvc.yaml", cwd)
    spec = _parse(text, "dvc.yaml") if text is not None else None
    if not isinstance(spec, Mapping):
        return None
    paths: list[str] = list(_dvc_paths(spec.get("metrics")))
    for stage in (spec.get("stages") or {}).values():
        if isinstance(stage, Mapping):
            paths += _dvc_paths(stage.get("metrics"))
    metrics: dict[str, Any] = {}
    for path in dict.fromkeys(paths):
        text = _show(commit, path, cwd)
        data = _parse(text, path) if text is not None else None
        if isinstance(data, Mapping):
            metrics.update({k: v for k, v in _flatten(data, sep="/").items() if k != "step"})
    return (metrics, {}) if metrics else None


def _dvc_paths(entries: Any) -> list[str]:
    # Entries are paths, or one-key mappings {path: {cache: false}}.
    found: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, Mapping):
            found += [str(k) for k in entry]
    return found
