"""Base metrics and deltas: where the base's metrics come from, and how each metric changed.

Base metrics come from the first source that has them, in this order:

1. ``git``: a metrics file committed at the base ref (``git show REF:metrics.json``);
2. ``comment``: the hidden metrics trailer of cml-nb's *own* report comment on the base
   commit, read through the forge API (:mod:`cml_nb.history.comments`: comments by other
   accounts, and metrics-like text outside the trailer, are ignored);
3. ``records``: a folder of earlier run records (``--history DIR``: a CI cache or artifact).

A source that has the base but cannot read it (a committed metrics file that is not JSON,
cml-nb's comment with a cut trailer) leaves ``Baseline.unreadable`` set; the regression
gate then fails closed instead of passing for want of a base.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml_nb.errors import CmlNbError, ConfigError
from cml_nb.history.comments import CommentReader, describe_untrusted, report_metrics
from cml_nb.history.gitfiles import _flatten, _git, _git_path

DEFAULT_METRICS_PATH = "metrics.json"
SOURCES = ("git", "comment", "records")
MAX, MIN = "max", "min"
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
BETTER, WORSE = "🟢", "🔴"


@dataclass
class Baseline:
    """Metrics of the base, and where they came from.

    Attributes:
        metrics: base value of each metric (empty when none was found).
        parameters: base parameters, when the source records them.
        source: ``git``, ``comment``, ``records`` or ``""`` (none found).
        description: one line for the report, e.g. ``metrics.json at main (abc1234)``.
        ref: the ref asked for; commit: the commit it resolved to.
        tried: why each source that was tried gave nothing.
        unreadable: why a source that has the base could not read it ("" when none);
            a gate that needs the base then fails instead of being skipped.
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    description: str = ""
    ref: str = ""
    commit: str | None = None
    tried: list[str] = field(default_factory=list)
    unreadable: str = ""
    #: The base run's stepped scalars, ``{tag: [{"step", "value"}]}``, when its run.json
    #: is at hand (git, records): the report overlays them on this run's curves.
    series: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """Whether any source had base metrics."""
        return bool(self.source)

    def summary(self) -> str:
        """One line saying which source was used, or that none was found and why."""
        if self.found:
            return self.description
        return f"no base found for {self.ref or 'the base'}: " + "; ".join(self.tried)


# --- git --------------------------------------------------------------------------------------


def check_ref(ref: str) -> str:
    """``ref`` unchanged, or ConfigError when git would read it as an option.

    ``--ref=--output=FILE`` would make ``git log`` write a file: a ref never starts with
    ``-`` (git check-ref-format refuses such names), so refuse it before any git call.
    """
    if not ref or ref.startswith("-") or any(c in ref for c in "\0\n\r"):
        raise ConfigError(
            f"{ref!r} is not a branch, tag or commit: name one, e.g. --compare-to main"
        )
    return ref


def auto_ref(env: Mapping[str, str] | None = None) -> str:
    """The ref ``auto`` means: the PR's base branch in CI, else the previous commit."""
    env = os.environ if env is None else env
    for name in ("GITHUB_BASE_REF", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME"):
        if env.get(name):
            return env[name]
    return "HEAD~1"


def resolve_commit(ref: str, cwd: Path | None = None, *, fetch: bool = True) -> str | None:
    """The full SHA ``ref`` names; tries ``origin/REF``, then one fetch from origin.

    CI checkouts are often shallow and single-branch, so the base branch may be absent
    until fetched; a failed fetch is not an error, the git source just finds nothing.
    """
    check_ref(ref)
    candidates = [ref] if "/" in ref or ref.startswith("HEAD") else [ref, f"origin/{ref}"]
    for name in candidates:
        sha = _git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"], cwd
        )
        if sha:
            return sha.strip()
    full_sha = _FULL_SHA.fullmatch(ref.lower()) is not None
    if fetch and not ref.startswith("HEAD") and _git(["remote", "get-url", "origin"], cwd):
        spec = ref if full_sha else f"+refs/heads/{ref}:refs/remotes/origin/{ref}"
        for attempt in range(2):  # one retry: a fetch can fail on a transient network fault
            args = ["fetch", "--quiet", "--no-tags", "--depth=50", "origin", spec]
            if _git(args, cwd, 120) is not None:
                return resolve_commit(ref, cwd, fetch=False)
            time.sleep(1 + attempt)
    # A full SHA absent from this clone may still be known to the forge (comment source).
    return ref.lower() if full_sha else None


def parse_metrics_file(data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics and parameters from a ``metrics.json``, ``run.json``, ``report.json`` or comment.

    A top-level ``metrics`` mapping (run records, reports, the comment's hidden payload)
    holds the metrics, with ``parameters`` (or ``params``) beside it; any other mapping is
    a metrics file, nested tables flattened with dots as DVC does.
    """
    if not isinstance(data, Mapping):
        return {}, {}
    if isinstance(data.get("metrics"), Mapping):
        params = data.get("parameters", data.get("params"))
        return _flatten(data["metrics"]), dict(params) if isinstance(params, Mapping) else {}
    return _flatten(data), {}


class _Unreadable(Exception):
    """A metrics file exists at the commit but is not JSON."""


def _git_json(commit: str, path: str, cwd: Path | None) -> Any:
    text = _git(["show", "--end-of-options", f"{commit}:{path}"], cwd)
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Unreadable(f"{path.removeprefix('./')} at {commit[:7]} is not JSON") from exc


def from_git(
    commit: str, metrics_path: str = DEFAULT_METRICS_PATH, cwd: Path | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Metrics (and parameters) committed at ``commit``, or None when the file is absent."""
    try:
        return _from_git(commit, metrics_path, cwd)
    except _Unreadable:
        return None


def _from_git(
    commit: str, metrics_path: str, cwd: Path | None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """As :func:`from_git`, raising _Unreadable when the file is there but not JSON."""
    path = _git_path(metrics_path)
    metrics, params = parse_metrics_file(_git_json(commit, path, cwd))
    if not metrics:
        return None
    if not params:  # a run.json committed beside metrics.json knows the parameters
        beside = str(Path(path).parent / "run.json")
        try:
            params = parse_metrics_file(_git_json(commit, _git_path(beside), cwd))[1]
        except _Unreadable:
            params = {}
    return metrics, params


def _git_series(commit: str, metrics_path: str, cwd: Path | None) -> dict[str, Any]:
    """The stepped scalars of the run.json committed beside the metrics file at ``commit``."""
    try:
        data = _git_json(commit, _git_path(str(Path(metrics_path).parent / "run.json")), cwd)
    except _Unreadable:
        return {}
    return record_series(data)


def record_series(data: Any) -> dict[str, Any]:
    """A run record's series: the loggers' ``series``, then ``log_metric``'s ``history``."""
    if not isinstance(data, Mapping):
        return {}
    series: dict[str, Any] = {}
    for key in ("series", "history"):
        if isinstance(data.get(key), Mapping):
            series.update(data[key])
    return series


# --- run records ------------------------------------------------------------------------------


@dataclass
class _Record:
    path: Path
    commit: str | None
    finished: str
    metrics: dict[str, Any]
    parameters: dict[str, Any]
    series: dict[str, Any] = field(default_factory=dict)


def read_records(folder: Path) -> list[_Record]:
    """Every run record under ``folder`` (``run.json``, or a lone ``metrics.json``), newest first."""
    found: list[_Record] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*.json")):
        if path.name not in ("run.json", "metrics.json", "report.json"):
            continue
        if path.name != "run.json" and (path.parent / "run.json").is_file():
            continue  # the run.json beside it says more (commit, parameters)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        metrics, params = parse_metrics_file(data)
        if not metrics:
            continue
        env = data.get("environment") if isinstance(data, dict) else None
        git = env.get("git", {}) if isinstance(env, dict) else {}
        commit = git.get("commit") if isinstance(git, dict) else None
        commit = commit or (data.get("commit") if isinstance(data, dict) else None)
        finished = str(data.get("finished_at", "")) if isinstance(data, dict) else ""
        finished = finished or f"{path.stat().st_mtime:020.6f}"
        found.append(_Record(path, commit, finished, metrics, params, record_series(data)))
    return sorted(found, key=lambda r: r.finished, reverse=True)


def _record_for(records: list[_Record], commit: str | None) -> _Record | None:
    return next((r for r in records if commit and r.commit == commit), None)


# --- finding the base -------------------------------------------------------------------------


def find_baseline(
    ref: str = "auto",
    *,
    metrics_path: str = DEFAULT_METRICS_PATH,
    history_dir: Path | None = None,
    forge: CommentReader | None = None,
    head_commit: str | None = None,
    sources: Sequence[str] = SOURCES,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Baseline:
    """The base metrics for ``ref`` from the first source that has them.

    Args:
        ref: a branch, tag or commit; ``auto`` is the PR's base branch in CI, else ``HEAD~1``.
        metrics_path: the metrics file to read at the ref, relative to ``cwd``.
        history_dir: a folder of earlier run records (the ``records`` source).
        forge: the forge whose comments hold cml-nb's reports (``comment`` source); only
            comments by the account cml-nb posts as count.
        head_commit: this run's commit; a records-folder fallback never picks it.
        sources: which sources to try, in order.
        cwd: the directory inside the git repository (default: the working directory).
        env: environment for ``auto`` (default: ``os.environ``).

    Returns:
        A Baseline; ``found`` is False (and ``tried`` says why) when no source had metrics.
        Finding nothing is not an error: the report then says so.
    """
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ConfigError(f"unknown history source(s) {sorted(unknown)}: use {', '.join(SOURCES)}")
    name = check_ref(auto_ref(env) if ref == "auto" else ref)
    commit = resolve_commit(name, cwd)
    base = Baseline(ref=name, commit=commit)
    short = f" ({commit[:7]})" if commit and not name.startswith(commit[:7]) else ""
    for source in sources:
        if source == "git":
            if commit is None:
                base.tried.append(f"git: {name} is not in this clone (fetch it, or fetch-depth: 0)")
                continue
            what = metrics_path
            try:
                found = _from_git(commit, metrics_path, cwd)
                if not found and metrics_path == DEFAULT_METRICS_PATH:  # a DVC repository's
                    from cml_nb.history.dvc_metrics import dvc_metrics

                    found, what = dvc_metrics(commit, cwd), "DVC metrics (dvc.yaml)"
            except _Unreadable as error:
                base.unreadable = base.unreadable or f"git: {error}"
                base.tried.append(f"git: {error}")
                continue
            if found:
                base.metrics, base.parameters = found
                base.series = _git_series(commit, metrics_path, cwd)
                return _found(base, "git", f"{what} at {name}{short}")
            base.tried.append(f"git: no {metrics_path} committed at {name}{short}")
        elif source == "comment":
            if forge is None or commit is None:
                why = "no forge connection" if forge is None else "base commit unknown"
                base.tried.append(f"comment: {why}")
                continue
            try:
                comments = report_metrics(forge, commit)
            except CmlNbError as error:  # the forge is down or refuses: try the next source
                base.tried.append(f"comment: {error}")
                continue
            metrics, params = parse_metrics_file(comments.payload or {})
            if metrics:
                base.metrics, base.parameters = metrics, params
                return _found(base, "comment", f"cml-nb comment on {name}{short}")
            if comments.unreadable:
                base.unreadable = base.unreadable or f"comment: {comments.unreadable}"
                base.tried.append(f"comment: {comments.unreadable}")
            else:
                base.tried.append(describe_untrusted(comments, commit))
        elif source == "records":
            if history_dir is None:
                continue
            records = read_records(history_dir)
            record = _record_for(records, commit)
            how = f"{name}{short}"
            if record is None:  # a CI cache may hold the latest base run, not the exact tip
                record = next((r for r in records if r.commit != head_commit), None)
                how = f"latest record, commit {(record.commit or '?')[:7]}" if record else ""
            if record is not None:
                base.metrics, base.parameters = record.metrics, record.parameters
                base.series = record.series
                return _found(base, "records", f"run record {record.path} ({how})")
            base.tried.append(f"records: no run record in {history_dir}")
    return base


def _found(base: Baseline, source: str, description: str) -> Baseline:
    base.source, base.description = source, description
    return base


# --- deltas -----------------------------------------------------------------------------------


def parse_goals(specs: Iterable[str] | str | None) -> dict[str, str]:
    """``"accuracy=max,loss=min"`` (or several such strings) as ``{"accuracy": "max", ...}``."""
    if isinstance(specs, str):
        specs = [specs]
    goals: dict[str, str] = {}
    for spec in specs or ():
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, sep, goal = item.rpartition("=")
            goal = goal.strip().lower()
            if not sep or not name.strip() or goal not in (MAX, MIN):
                raise ConfigError(
                    f"goal {item!r} is not NAME=max or NAME=min: write e.g. --goal loss=min"
                )
            goals[name.strip()] = goal
    return goals


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class MetricDelta:
    """One metric against its base.

    Attributes:
        verdict: ``better``, ``worse``, ``same``, ``changed`` (not numeric), ``new``
            (no base value), ``removed`` (no value in this run) or ``""`` (not comparable).
    """

    name: str
    value: Any
    base: Any
    goal: str = MAX
    change: float | None = None
    relative: float | None = None
    verdict: str = ""

    def text(self) -> str:
        """The delta cell: ``+0.02 (+2.2%) 🟢``, marks following the metric's goal."""
        if self.change is None:
            return {"changed": "changed", "new": "new", "removed": "removed"}.get(self.verdict, "")
        relative = f" ({self.relative:+.1%})" if self.relative is not None else ""
        mark = {"better": f" {BETTER}", "worse": f" {WORSE}"}.get(self.verdict, "")
        return f"{self.change:+.4g}{relative}{mark}"


def compare_metrics(
    head: Mapping[str, Any], base: Mapping[str, Any], goals: Mapping[str, str] | None = None
) -> list[MetricDelta]:
    """Each metric of ``head`` (then those only in ``base``) with its change and verdict."""
    goals = goals or {}
    deltas = []
    for name in [*head, *(k for k in base if k not in head)]:
        delta = MetricDelta(name, head.get(name), base.get(name), goals.get(name, MAX))
        new, old = _number(delta.value), _number(delta.base)
        if name not in base:
            delta.verdict = "new"
        elif name not in head:
            delta.verdict = "removed"
        elif new is not None and old is not None:
            delta.change = new - old
            delta.relative = delta.change / abs(old) if old else None
            scale = max(abs(new), abs(old), 1e-300)
            if abs(delta.change) <= 1e-12 * scale:
                delta.verdict = "same"
            else:
                up_is_good = delta.goal == MAX
                delta.verdict = "better" if (delta.change > 0) == up_is_good else "worse"
        elif delta.value != delta.base:
            delta.verdict = "changed"
        deltas.append(delta)
    return deltas


def compare_parameters(
    head: Mapping[str, Any], base: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """Parameters whose value differs: ``(name, head value, base value)``; missing is None."""
    names = [*head, *(k for k in base if k not in head)]
    return [(n, head.get(n), base.get(n)) for n in names if head.get(n) != base.get(n)]


def report_baseline(
    baseline: Baseline, head_metrics: Mapping[str, Any], goals: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``Report.baseline`` dict: base metrics, parameters, source and delta cells."""
    if not baseline.found:
        return {"metrics": None, "source": baseline.summary(), "ref": baseline.ref}
    deltas = compare_metrics(head_metrics, baseline.metrics, goals)
    return {
        "metrics": dict(baseline.metrics),
        "parameters": dict(baseline.parameters),
        "source": baseline.summary(),
        "ref": baseline.ref,
        "commit": baseline.commit,
        "goals": {d.name: d.goal for d in deltas},
        "deltas": {d.name: d.text() for d in deltas},
        "verdicts": {d.name: d.verdict for d in deltas},
    }
