"""Base metrics from DVC's own metrics files, for the ``git`` source of :mod:`.base`.

A DVC repository (DVCLive's included) may commit no cml-nb ``metrics.json``; its
``dvc.yaml`` lists the metrics files DVC compares (``dvc metrics diff``), and those
are what the base's metrics are then read from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cml_nb.history.base import _flatten as flatten
from cml_nb.history.base import _git as git
from cml_nb.history.base import _git_path as git_path


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
    import yaml

    text = git(["show", "--end-of-options", f"{commit}:./dvc.yaml"], cwd)
    if text is None:
        return None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(spec, Mapping):
        return None
    paths: list[str] = list(_dvc_paths(spec.get("metrics")))
    for stage in (spec.get("stages") or {}).values():
        if isinstance(stage, Mapping):
            paths += _dvc_paths(stage.get("metrics"))
    metrics: dict[str, Any] = {}
    for path in dict.fromkeys(paths):
        text = git(["show", "--end-of-options", f"{commit}:{git_path(path)}"], cwd)
        try:
            data = yaml.safe_load(text) if text is not None else None  # YAML reads JSON too
        except yaml.YAMLError:
            continue
        if isinstance(data, Mapping):
            flat = {k.replace(".", "/"): v for k, v in flatten(data).items() if k != "step"}
            metrics.update(flat)
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
