"""Metric sources a notebook already writes: TensorBoard, DVCLive, MLflow.

Each source is a :class:`~cml_nb.loggers.base.LoggerReader` in a registry keyed by name
(``--loggers tensorboard,dvclive,mlflow``); the built-ins are registered explicitly and
third-party readers come from the ``cml_nb.loggers`` entry-point group, read only when
``--loggers`` names one that is not built in (the default, all built-ins, scans no
installed package's metadata, and an installed plugin never reads a run's files unasked). After a run, :func:`collect` asks each chosen reader what the notebook wrote during
that run; :meth:`Collected.merged` puts the last values beside those logged with
``cml_nb.log_metric``, which win a clash.

A reader whose package is missing does not fail the run: the files it found are skipped
with a one-line hint naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cml_nb.errors import ConfigError
from cml_nb.loggers.base import Found, LoggerReader, Point, RunContext, Series

__all__ = [
    "BUILTIN",
    "CML_NB_SOURCE",
    "Collected",
    "Found",
    "LoggerReader",
    "Point",
    "RunContext",
    "Series",
    "collect",
    "get",
    "names",
    "parse",
    "register",
]

log = logging.getLogger(__name__)

#: The source name of metrics logged with ``cml_nb.log_metric``.
CML_NB_SOURCE = "cml_nb"
BUILTIN = ("tensorboard", "dvclive", "mlflow")
ENTRY_POINT_GROUP = "cml_nb.loggers"

_REGISTRY: dict[str, Callable[[], LoggerReader]] = {}
_loaded: set[str] = set()


def register(name: str, factory: Callable[[], LoggerReader]) -> None:
    """Add (or replace) the reader called ``name``."""
    _REGISTRY[name] = factory


def _load(plugins: bool = False) -> None:
    if "builtins" not in _loaded:
        _loaded.add("builtins")
        from cml_nb.loggers.dvclive import DvcLiveReader
        from cml_nb.loggers.mlflow import MlflowReader
        from cml_nb.loggers.tensorboard import TensorBoardReader

        register("tensorboard", TensorBoardReader)
        register("dvclive", DvcLiveReader)
        register("mlflow", MlflowReader)
    if plugins and "plugins" not in _loaded:
        _loaded.add("plugins")
        from importlib.metadata import entry_points  # ~0.1 s: only when a plugin is named

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name not in _REGISTRY:
                _REGISTRY[entry.name] = entry.load()


def names() -> list[str]:
    """Every reader's name, built-ins first, then installed plugins."""
    _load(plugins=True)
    return list(_REGISTRY)


def get(name: str) -> LoggerReader:
    """The reader called ``name``; ConfigError listing the known ones otherwise."""
    _load(plugins=name not in BUILTIN)
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown logger {name!r}: use {', '.join(_REGISTRY)} (comma-separated), or none"
        )
    return _REGISTRY[name]()


def parse(spec: str | Iterable[str] | None) -> list[str]:
    """``--loggers`` as names: None or ``all`` is the built-ins, ``none`` (or "") is none."""
    if spec is None:
        return list(BUILTIN)
    items = spec.split(",") if isinstance(spec, str) else [str(s) for s in spec]
    chosen = [s.strip().lower() for s in items if s.strip()]
    if chosen in ([], ["none"]):
        return []
    if chosen == ["all"]:
        return list(BUILTIN)
    if "none" in chosen or "all" in chosen:
        raise ConfigError(
            "--loggers takes names, or 'none' or 'all' alone: e.g. tensorboard,mlflow"
        )
    for name in chosen:
        get(name)
    return list(dict.fromkeys(chosen))


@dataclass
class Collected:
    """What the chosen readers found after one run.

    Attributes:
        series: every scalar's full series, ``{tag: [(step, value, wall_time)]}``.
        last: the last value of each scalar.
        sources: which reader each tag came from (the first in ``--loggers`` order wins
            a tag two readers share).
        read: the readers that found something this run.
        notes: one-line hints (skipped files, unreadable ones, clashes).
        seconds: how long reading took, all readers together.
        timings: seconds each reader that found something took (import included).
    """

    series: Series = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def merged(self, logged: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Metrics and their sources: ``logged`` (``cml_nb.log_metric``) wins a clash."""
        metrics = {k: v for k, v in self.last.items() if k not in logged}
        sources = {k: self.sources[k] for k in metrics}
        metrics.update(logged)
        sources.update({k: CML_NB_SOURCE for k in logged})
        return metrics, sources

    def series_json(self) -> dict[str, list[dict[str, Any]]]:
        """``series`` as run.json holds it: ``{tag: [{"step", "value", "wall_time"}]}``."""
        return {
            tag: [{"step": s, "value": v, "wall_time": w} for s, v, w in points]
            for tag, points in self.series.items()
        }

    def summary(self) -> dict[str, Any]:
        """The record's ``loggers`` entry: readers used, notes and seconds spent."""
        timings = {name: round(seconds, 4) for name, seconds in self.timings.items()}
        return {"read": self.read, "notes": self.notes, "seconds": round(self.seconds, 4),
                "timings": timings}  # fmt: skip


#: ``scheme://user:password@`` in a URL: a tracking server's address may carry credentials,
#: and a client's error message repeats the address it failed to reach.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def without_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", text)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken parent
        return False


def _missing_hint(reader: LoggerReader, what: str) -> str:
    return (
        f"{what} skipped: {reader.module} is not installed "
        f"(pip install 'cml-nb[{reader.extra}]', or --loggers to choose)"
    )


def collect(chosen: Sequence[str], ctx: RunContext) -> Collected:
    """Read every chosen logger's output from this run; never raises for a reader's fault.

    A reader that fails (a store that will not open) adds a note and the others go on:
    the run's own outcome matters more than one source's metrics.
    """
    clock = time.perf_counter()
    found = Collected()
    for name in chosen:
        started = time.perf_counter()
        what = name
        try:
            reader = get(name)
            what = reader.present(ctx) or ""
            if not what:
                continue
            if not _installed(reader.module):
                found.notes.append(_missing_hint(reader, what))
                continue
            result = reader.read(ctx)
        except Exception as exc:  # a third-party store's many errors: one note, run goes on
            found.notes.append(f"{name}: {what} could not be read ({type(exc).__name__}: {exc})")
            continue
        finally:
            if what:
                found.timings[name] = time.perf_counter() - started
        found.notes += result.notes
        if result.series or result.last:
            found.read.append(name)
        for tag, points in result.series.items():
            if tag in found.sources:
                found.notes.append(f"{name}: {tag} also logged to {found.sources[tag]}: kept that")
                continue
            found.series[tag], found.sources[tag] = points, name
        for tag, value in result.last.items():
            if found.sources.setdefault(tag, name) == name:
                found.last.setdefault(tag, value)
    found.seconds = time.perf_counter() - clock
    found.notes = [without_credentials(note) for note in found.notes]
    for note in found.notes:
        log.warning("%s", note)
    return found
