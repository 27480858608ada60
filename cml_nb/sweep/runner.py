"""``run_sweep()``: a space of parameters -> many runs -> ``sweep.json`` and a comparison report.

The stage reads as a pipeline: load the notebook, build and validate every
configuration (before anything runs), name the runs, keep this shard's share,
reuse cached runs, execute the rest on an executor, write each run's folder as it
finishes, then ``sweep.json``, then the comparison report. It raises nothing for
failed runs: the caller decides (``SweepFailedError`` unless failures are allowed).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cml_nb import parameters as params_mod
from cml_nb.errors import CmlNbError, ConfigError, NotebookReadError, SweepFailedError
from cml_nb.records import FAILED, RUN_RECORD_NAME, SUCCEEDED, RunRecord
from cml_nb.sweep import cache as cache_mod

# Re-exported: callers found the sweep's data model here before it moved to result.py.
from cml_nb.sweep.result import REPORT_DIR as REPORT_DIR
from cml_nb.sweep.result import SWEEP_FILE as SWEEP_FILE
from cml_nb.sweep.result import RunEntry as RunEntry
from cml_nb.sweep.result import SweepResult as SweepResult
from cml_nb.sweep.space import SweepSpace, config_hash, run_names, shard
from cml_nb.sweep.worker import RunTask, TaskResult

log = logging.getLogger(__name__)


def _read_notebook(path: Path) -> dict[str, Any]:
    # Plain JSON is enough to validate parameters and hash cells; workers use nbformat.
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotebookReadError(f"notebook not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotebookReadError(f"cannot read {path} as a notebook: {exc}") from exc
    if not isinstance(data, dict) or "cells" not in data:
        raise NotebookReadError(f"{path} is not a Jupyter notebook: it has no 'cells'")
    return data


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from cml_nb.errors import KernelNotFoundError

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise KernelNotFoundError(
            f"kernel {name!r} is not installed: install it "
            f"(python -m ipykernel install --user --name {name}) or pass --kernel"
        ) from None


def _space_id(nb_digest: str, configs: Sequence[Mapping[str, Any]]) -> str:
    return config_hash({"notebook": nb_digest, "configs": list(configs)})


Progress = Callable[[RunEntry, int, int], None]


def run_sweep(
    notebook: str | Path,
    space: SweepSpace,
    output: str | Path | None = None,
    *,
    executor: str = "local",
    jobs: int | None = None,
    executor_options: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    start_timeout: float = 60,
    allow_unknown: bool = False,
    keep_going: bool = False,
    deps: Iterable[str | Path] = (),
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    force: bool = False,
    shard_spec: tuple[int, int] | None = None,
    metric: str | None = None,
    goal: str = "max",
    report: bool = True,
    progress: Progress | None = None,
) -> SweepResult:
    """Run every configuration of ``space`` on ``notebook`` and compare the runs.

    Args:
        notebook: the input ``.ipynb``.
        space: the configurations, and parameters fixed for all.
        output: the sweep folder (default ``sweeps/<stem>``): ``runs/<name>/``,
            ``sweep.json`` and ``report/`` go there.
        executor: a registered executor name (``local``, ``dask``, ...).
        jobs: parallel runs (local processes, or Dask local-cluster workers).
        executor_options: extra options for the executor (``scheduler`` for dask).
        kernel: kernel name (default: the notebook's own).
        cwd: working directory of each run's kernel (default: the notebook's folder).
        timeout: seconds one cell may run.
        start_timeout: seconds a kernel may take to start.
        allow_unknown: inject parameters the notebook does not declare.
        keep_going: run every cell even after an error (the run still fails).
        deps: input files or folders whose content is part of the cache key.
        cache_dir: the run cache folder (default ``~/.cache/cml-nb/runs``).
        use_cache: reuse and store runs in the cache.
        force: execute every run even when a cached result exists (and refresh it).
        shard_spec: ``(K, N)``: run only the K-th of N deterministic shares.
        metric: the metric that ranks runs.
        goal: ``max`` or ``min``.
        report: write the comparison report bundle into ``report/``.
        progress: called with each finished run, how many are done, and how many in all.

    Returns:
        The sweep's result, also written as ``sweep.json``.
    """
    from cml_nb.sweep.executors import get_executor

    if goal not in ("max", "min"):
        raise ConfigError(f"--goal {goal!r}: use max or min")
    source = Path(notebook)
    nb = _read_notebook(source)
    folder = Path(output) if output else Path("sweeps") / source.stem
    kernel_name = kernel or nb.get("metadata", {}).get("kernelspec", {}).get("name") or "python3"
    run_cwd = str(Path(cwd).resolve() if cwd else source.parent.resolve())

    configs = space.configurations()
    if not configs:
        raise ConfigError(
            "the sweep space is empty: give -g NAME=V1,V2, or a -f file with grid/random/list"
        )
    validated = [params_mod.validate(nb, c, allow_unknown=allow_unknown) for c in configs]
    names = run_names(validated, space.swept())
    nb_digest = cache_mod.notebook_digest(nb)
    dep_digests = cache_mod.deps_digest(deps)
    indexed = list(enumerate(zip(names, validated, strict=True)))
    if shard_spec:
        indexed = shard(indexed, *shard_spec)

    from cml_nb.secrets import mask_parameters

    result = SweepResult(
        folder=str(folder),
        notebook=str(source),
        kernel=kernel_name,
        swept=space.swept(),
        total=len(configs),
        space_id=_space_id(nb_digest, validated),
        metric=metric,
        goal=goal,
        shards=[list(shard_spec)] if shard_spec else [],
    )
    run_cache = cache_mod.RunCache(cache_dir or cache_mod.default_folder()) if use_cache else None
    text = source.read_text(encoding="utf-8")
    tasks: list[RunTask] = []
    inputs: dict[str, dict[str, Any]] = {}
    for index, (name, params) in indexed:
        key_in = cache_mod.key_inputs(nb_digest, params, kernel_name, dep_digests)
        key = cache_mod.cache_key(key_in)
        entry = RunEntry(name, index, mask_parameters(params), key=key)
        result.runs.append(entry)
        inputs[name] = key_in
        if not force and _reuse(result, entry, run_cache):
            continue
        tasks.append(
            RunTask(
                name, source.name, text, params, kernel_name, run_cwd,
                timeout, start_timeout, allow_unknown, keep_going,
            )
        )  # fmt: skip
    by_name = {r.name: r for r in result.runs}
    done = 0
    for entry in result.runs:
        if entry.cached:
            done += 1
            if progress:
                progress(entry, done, len(result.runs))
    if tasks:
        if executor == "local":
            _check_kernel(kernel_name)
        engine = get_executor(executor, jobs=jobs, **dict(executor_options or {}))
        outcomes = engine.run(tasks)
        try:
            for task, outcome in outcomes:
                entry = by_name[task.name]
                _record(result, entry, outcome, run_cache, inputs[task.name])
                done += 1
                if progress:
                    progress(entry, done, len(result.runs))
        finally:
            # Stop the executor now (not at garbage collection) when interrupted.
            close = getattr(outcomes, "close", None)
            if close is not None:
                close()
            # Written even when interrupted, so a rerun shows (and resumes) what was left.
            result.write()
    result.write()
    if report:
        from cml_nb.sweep.compare import write_report

        write_report(result)
    return result


def _reuse(result: SweepResult, entry: RunEntry, run_cache: cache_mod.RunCache | None) -> bool:
    """Fill ``entry`` from its own folder or the cache when the same run already finished."""
    folder = result.run_folder(entry)
    marker = folder / cache_mod.KEY_FILE
    try:
        if marker.is_file() and json.loads(marker.read_text()).get("key") == entry.key:
            record = RunRecord.read(folder)
            if record.succeeded:
                _fill(entry, record, cached=True)
                return True
    except (OSError, ValueError, TypeError) as exc:
        log.debug("run folder %s unusable for resume: %s", folder, exc)
    if run_cache is None or run_cache.get(entry.key) is None:
        return False
    files = run_cache.files(entry.key)
    _write_run(result, entry, files, {"key": entry.key})
    _fill(entry, RunRecord.read(folder), cached=True)
    return True


def _fill(entry: RunEntry, record: RunRecord, cached: bool) -> None:
    entry.status, entry.metrics, entry.message = record.status, record.metrics, record.message
    entry.duration, entry.cached = record.duration, cached


def _write_run(
    result: SweepResult, entry: RunEntry, files: Mapping[str, bytes], key_in: Mapping[str, Any]
) -> None:
    folder = result.run_folder(entry)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.is_file() and stale.name not in files:
            stale.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    # Paths in run.json point at this folder, wherever the run actually executed.
    record_path = folder / RUN_RECORD_NAME
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        record["notebook"] = result.notebook
        record["output"] = str(folder / Path(record.get("output", "")).name)
        record_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    described = {"key": entry.key, **cache_mod.describe_key(key_in)}
    (folder / cache_mod.KEY_FILE).write_text(json.dumps(described, default=str))


def _record(
    result: SweepResult,
    entry: RunEntry,
    outcome: TaskResult | BaseException,
    run_cache: cache_mod.RunCache | None,
    key_in: Mapping[str, Any],
) -> None:
    if isinstance(outcome, BaseException):
        entry.status = FAILED
        entry.message = str(outcome) if isinstance(outcome, CmlNbError) else repr(outcome)
        log.warning("run %s could not execute: %s", entry.name, entry.message)
        return
    succeeded = outcome.record.get("status") == SUCCEEDED
    # Only succeeded runs count as done: a failed one must execute again on resume.
    _write_run(result, entry, outcome.files, key_in if succeeded else {"key": ""})
    _fill(entry, RunRecord.from_dict(outcome.record), cached=False)
    if succeeded and run_cache is not None:
        try:
            run_cache.put(entry.key, key_in, outcome.files)
        except OSError as exc:  # a full or read-only cache must not fail the sweep
            log.warning(
                "could not store run %s in the cache %s: %s", entry.name, run_cache.folder, exc
            )


def failure_error(result: SweepResult) -> SweepFailedError:
    """The error for a sweep with failed runs: how many, the first message, where to look."""
    failed = result.failed
    first = failed[0]
    return SweepFailedError(
        f"{len(failed)} of {len(result.runs)} runs failed (first: {first.name}: "
        f"{first.message or first.status}); see {Path(result.folder) / SWEEP_FILE}, "
        "fix the notebook and rerun (finished runs are reused), or pass --allow-failures"
    )


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
