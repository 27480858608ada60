"""The run cache: a finished run is reused when nothing that decides its result changed.

The key hashes the notebook's code (cell types, sources and tags; outputs,
execution counts, ids and other metadata ignored), the parameters, the kernel name
and the content of declared inputs (``--dep data.csv``, ``--dep data/``). An entry
is a copy of the run's folder (executed notebook, ``run.json``, ``metrics.json``).
Only succeeded runs are stored, so a failed run executes again next time.

The folder is plain files written atomically (a temporary folder renamed into
place), so CI caches (``actions/cache``, GitLab ``cache:``) can carry it between
jobs and two shards writing the same entry cannot corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError
from cml_nb.secrets import mask_parameters

log = logging.getLogger(__name__)

KEY_VERSION = 1
KEY_FILE = "cache-key.json"


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/cml-nb/runs``, i.e. ``~/.cache/cml-nb/runs`` by default."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cml-nb" / "runs"


def notebook_digest(nb: Mapping[str, Any]) -> str:
    """A hash of what the notebook runs: sources, cell types and tags, nothing else."""
    cells = [
        {
            "type": cell.get("cell_type"),
            "source": _text(cell.get("source", "")),
            "tags": sorted(cell.get("metadata", {}).get("tags", [])),
        }
        for cell in nb.get("cells", [])
    ]
    return _sha256(json.dumps(cells, sort_keys=True).encode())


def _text(source: str | list[str]) -> str:
    return "".join(source) if isinstance(source, list) else source


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deps_digest(deps: Iterable[str | Path]) -> dict[str, str]:
    """``{path: sha256}`` of each declared input; a folder hashes every file under it."""
    found: dict[str, str] = {}
    for dep in deps:
        path = Path(dep)
        if path.is_file():
            found[str(dep)] = _file_digest(path)
        elif path.is_dir():
            digest = hashlib.sha256()
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(child.relative_to(path).as_posix().encode() + b"\0")
                digest.update(_file_digest(child).encode())
            found[str(dep)] = digest.hexdigest()
        else:
            raise ConfigError(
                f"--dep {dep}: no such file or folder (check the path, relative to here)"
            )
    return found


def key_inputs(
    nb_digest: str, parameters: Mapping[str, Any], kernel: str, deps: Mapping[str, str]
) -> dict[str, Any]:
    """What a cache key is made of (hash it with ``cache_key``; store ``describe_key``)."""
    return {
        "version": KEY_VERSION,
        "notebook": nb_digest,
        "parameters": dict(parameters),
        "kernel": kernel,
        "deps": dict(deps),
    }


def cache_key(inputs: Mapping[str, Any]) -> str:
    """The hex key of ``key_inputs(...)``."""
    return _sha256(json.dumps(inputs, sort_keys=True, default=str).encode())


def describe_key(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``key_inputs`` safe to write to disk: secret-looking parameters masked."""
    return {**inputs, "parameters": mask_parameters(inputs.get("parameters") or {})}


class RunCache:
    """Finished runs stored by key under ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def entry(self, key: str) -> Path:
        """The folder of ``key``'s entry (it may not exist)."""
        return self.folder / key[:2] / key

    def get(self, key: str) -> Path | None:
        """The entry's folder when ``key`` is stored, complete and readable, else None.

        A corrupt entry (a CI cache restored half-written, a disk error, an edit) is
        ignored with a warning, so the run is computed again and the entry replaced,
        instead of failing this and every later sweep.
        """
        entry = self.entry(key)
        if not (entry / KEY_FILE).is_file():
            return None
        problem = _check_entry(entry, key)
        if problem:
            log.warning("ignoring corrupt run cache entry %s (%s): the run executes again",
                        entry, problem)  # fmt: skip
            return None
        return entry

    def put(self, key: str, inputs: Mapping[str, Any], files: Mapping[str, bytes]) -> Path:
        """Store a run's files (name -> content) under ``key``; returns the entry's folder."""
        entry = self.entry(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=entry.parent))
        try:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            # Written last: an entry without it is incomplete and ignored.
            described = {"key": key, **describe_key(inputs)}
            (tmp / KEY_FILE).write_text(json.dumps(described, indent=2, default=str))
            if entry.exists():
                shutil.rmtree(entry)
            tmp.rename(entry)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry

    def files(self, key: str) -> dict[str, bytes]:
        """The stored files of ``key`` (empty when absent or unreadable)."""
        entry = self.get(key)
        if entry is None:
            return {}
        try:
            return {
                p.name: p.read_bytes()
                for p in entry.iterdir()
                if p.is_file() and p.name != KEY_FILE
            }
        except OSError as exc:
            log.warning("ignoring unreadable run cache entry %s (%s)", entry, exc)
            return {}


def _check_entry(entry: Path, key: str) -> str:
    """Why the entry cannot be reused ("" when it can): its key file and run record."""
    from cml_nb.records import RUN_RECORD_NAME, RunRecord

    try:
        described = json.loads((entry / KEY_FILE).read_text())
        if not isinstance(described, dict) or described.get("key") != key:
            return f"{KEY_FILE} names another key"
        record = RunRecord.read(entry / RUN_RECORD_NAME)
    except FileNotFoundError as exc:
        return f"{Path(str(exc.filename)).name} is missing"
    except (OSError, UnicodeDecodeError) as exc:
        return str(getattr(exc, "strerror", None) or exc)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        return f"unreadable record: {type(exc).__name__}"
    if not record.succeeded:
        return "the stored run did not succeed"
    return ""
