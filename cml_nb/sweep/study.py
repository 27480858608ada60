"""``run_search()``: an Optuna study over a notebook, by ask/tell, as a sweep folder.

The stage reads like ``runner.run_sweep``: load the notebook, check a sample
configuration against its parameters cell (before anything runs), open the study,
then loop: ask a trial, reuse it from the run folder or the run cache (telling
Optuna the cached value) or submit it, keep ``jobs`` trials in flight, tell each
result as it finishes; then ``sweep.json`` and the comparison report.

The study is stored in ``<sweep>/study.journal``, Optuna's ``JournalStorage`` with
a file backend: an append-only log, each record written with one ``write`` and
``fsync``ed, under a lock file, so an interrupted sweep loses at most the trials
in flight and two processes on one folder do not corrupt it. A rerun loads the
study (same notebook code, method, seed, parameters and fixed values: same
study), fails the trials that were in flight when it stopped and asks their
parameters again first; raising ``trials`` continues the study.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cml_nb import parameters as params_mod
from cml_nb.errors import ConfigError
from cml_nb.records import RunRecord
from cml_nb.sweep import cache as cache_mod
from cml_nb.sweep import runner
from cml_nb.sweep.prune import PRUNED, PruneSpec
from cml_nb.sweep.result import RunEntry, SweepResult
from cml_nb.sweep.search import SearchSpec, optuna_module
from cml_nb.sweep.space import config_hash, run_names
from cml_nb.sweep.worker import RunTask, TaskResult

log = logging.getLogger(__name__)

STUDY_FILE = "study.journal"
#: User attributes cml-nb keeps on each trial.
RUN_ATTR, STALE_ATTR, OWNER_ATTR = "cml_nb_run", "cml_nb_interrupted", "cml_nb_owner"


def _owner() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: Any) -> bool:
    """Whether the sweep process that asked a trial still runs (on this host; else unknown)."""
    import socket

    host, _, pid = str(owner).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: no way to tell, so its trial counts as cut short
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def storage(folder: Path) -> Any:
    """The study storage of a sweep folder (see the module docstring)."""
    optuna = optuna_module()
    from optuna.storages.journal import JournalFileBackend

    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / STUDY_FILE)))


def run_search(
    notebook: str | Path,
    spec: SearchSpec,
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
    metric: str | None = None,
    goal: str | None = None,
    report: bool = True,
    progress: runner.Progress | None = None,
) -> SweepResult:
    """Search ``spec``'s space on ``notebook``; arguments as in ``runner.run_sweep``.

    ``metric`` and ``goal`` override the file's. Returns the sweep (every trial of
    the study, earlier invocations' included), also written as ``sweep.json``.
    """
    optuna = optuna_module()
    metric = metric or spec.metric
    goal = goal or spec.goal or "max"
    if not metric:
        raise ConfigError(
            "a search needs the metric to optimise: add metric: NAME to the sweep file, "
            "or pass --metric NAME"
        )
    if goal not in ("max", "min"):
        raise ConfigError(f"--goal {goal!r}: use max or min")
    source = Path(notebook)
    nb = runner._read_notebook(source)
    folder = Path(output) if output else Path("sweeps") / source.stem
    kernel_name = kernel or nb.get("metadata", {}).get("kernelspec", {}).get("name") or "python3"
    run_cwd = str(Path(cwd).resolve() if cwd else source.parent.resolve())
    example = {**spec.fixed, **{n: p.example() for n, p in spec.parameters.items()}}
    params_mod.validate(nb, example, allow_unknown=allow_unknown)  # before any run
    nb_digest = cache_mod.notebook_digest(nb)
    dep_digests = cache_mod.deps_digest(deps)
    identity = {**spec.identity(), "notebook": nb_digest, "kernel": kernel_name,
                "deps": dep_digests, "metric": metric, "goal": goal}  # fmt: skip
    study_name = "cml-nb-" + config_hash(identity)
    try:
        study = optuna.create_study(
            storage=storage(folder),
            study_name=study_name,
            direction="maximize" if goal == "max" else "minimize",
            sampler=spec.sampler(optuna),
            pruner=spec.make_pruner(optuna),
            load_if_exists=True,
        )
    # Replaying a torn or edited log raises whatever its first bad record trips over.
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError) as exc:
        raise ConfigError(
            f"the study journal {folder / STUDY_FILE} is unreadable ({type(exc).__name__}: "
            f"{exc}): move it away to start a new study, or restore it from a copy"
        ) from None
    _recover(study, spec, optuna)
    study.sampler = spec.sampler(optuna, offset=len(study.get_trials(deepcopy=False)))
    result = SweepResult(
        folder=str(folder),
        notebook=str(source),
        kernel=kernel_name,
        swept=spec.swept(),
        total=spec.trials,
        space_id=study_name,
        metric=metric,
        goal=goal,
    )
    result.runs = _earlier_runs(result, study, optuna)
    run_cache = cache_mod.RunCache(cache_dir or cache_mod.default_folder()) if use_cache else None
    loop = _Loop(result, study, spec, optuna, run_cache, progress)
    loop.base = dict(
        notebook_name=source.name, notebook_text=source.read_text(encoding="utf-8"),
        kernel=kernel_name, cwd=run_cwd, timeout=timeout, start_timeout=start_timeout,
        allow_unknown=allow_unknown, keep_going=keep_going,
    )  # fmt: skip
    loop.nb, loop.nb_digest, loop.deps, loop.force = nb, nb_digest, dep_digests, force
    if executor == "local" and loop.remaining() > 0:
        runner._check_kernel(kernel_name)
    try:
        loop.run(executor, jobs, executor_options or {})
    finally:
        result.runs.sort(key=lambda r: r.index)
        result.search = summary(result, study, spec, optuna)
        result.write()  # even when interrupted: a rerun resumes the study
    if report:
        from cml_nb.sweep.compare import write_report

        write_report(result)
    return result


def _recover(study: Any, spec: SearchSpec, optuna: Any) -> None:
    """Fail trials left running by an interrupted sweep; ask their parameters again first.

    A trial whose sweep process is alive on this machine (a second ``cml-nb sweep`` on
    the same folder) is left to it.
    """
    state = optuna.trial.TrialState
    if not study.get_trials(deepcopy=False):
        for config in spec.enqueue:
            study.enqueue_trial(config, skip_if_exists=True)
        return
    for frozen in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        if _owner_alive(frozen.user_attrs.get(OWNER_ATTR)):
            continue
        trial = optuna.Trial(study, frozen._trial_id)
        trial.set_user_attr(STALE_ATTR, True)
        study.tell(frozen.number, state=state.FAIL)
        params = {k: v for k, v in frozen.params.items() if k in spec.parameters}
        if params:
            study.enqueue_trial(params, skip_if_exists=False)


def _counted(study: Any, optuna: Any) -> list[Any]:
    """Finished trials, except those an interruption cut short."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not t.user_attrs.get(STALE_ATTR)
    ]


def _earlier_runs(result: SweepResult, study: Any, optuna: Any) -> list[RunEntry]:
    """Entries of trials finished by earlier invocations, read back from their run folders."""
    entries = []
    for trial in _counted(study, optuna):
        name = trial.user_attrs.get(RUN_ATTR)
        if not name:
            continue
        entry = RunEntry(name, trial.number, dict(trial.user_attrs.get("parameters") or {}))
        entry.key = str(trial.user_attrs.get("key", ""))
        folder = result.run_folder(entry)
        try:
            runner._fill(entry, RunRecord.read(folder), cached=True)
        except (OSError, ValueError, TypeError, KeyError):
            entry.status = "failed"
            entry.message = f"the run folder {folder} is missing or unreadable"
        if trial.state == optuna.trial.TrialState.PRUNED:
            entry.status = PRUNED
        entries.append(entry)
    return entries


class _Loop:
    """The ask/tell loop: ``jobs`` trials in flight, each told as it finishes."""

    def __init__(
        self,
        result: SweepResult,
        study: Any,
        spec: SearchSpec,
        optuna: Any,
        run_cache: cache_mod.RunCache | None,
        progress: runner.Progress | None,
    ) -> None:
        self.result, self.study, self.spec, self.optuna = result, study, spec, optuna
        self.run_cache, self.progress = run_cache, progress
        self.flight: dict[str, tuple[Any, RunEntry, dict[str, Any]]] = {}
        self.base: dict[str, Any] = {}
        self.nb: dict[str, Any] = {}
        self.nb_digest, self.force = "", False
        self.deps: dict[str, str] = {}
        self.distributions = spec.distributions(optuna)

    def remaining(self) -> int:
        return self.spec.trials - len(_counted(self.study, self.optuna)) - len(self.flight)

    def run(self, executor: str, jobs: int | None, options: Mapping[str, Any]) -> None:
        from cml_nb.sweep.executors import get_executor

        if self.remaining() <= 0:
            return
        slots = max(1, jobs or runner.cpu_count())
        engine = get_executor(executor, jobs=jobs, **dict(options))
        opener = getattr(engine, "open", None)
        session = (
            opener(self.base["kernel"], self.base["cwd"])
            if opener
            else _BatchSession(engine, slots)
        )
        finished = False
        try:
            while self.remaining() > 0 or self.flight:
                while self.remaining() > 0 and len(self.flight) < slots:
                    task = self._ask()
                    if task is not None:
                        task.prefetch = self.remaining() >= slots
                        session.submit(task)
                if self.flight:
                    for task, outcome in session.wait():
                        self._tell(task.name, outcome)
            finished = True
        finally:
            session.close(cancel=not finished)

    def _ask(self) -> RunTask | None:
        """Ask a trial; None when it was reused (and told) instead of submitted."""
        from cml_nb.secrets import mask_parameters

        trial = self.study.ask(self.distributions)
        params = params_mod.validate(
            self.nb, {**self.spec.fixed, **trial.params}, allow_unknown=self.base["allow_unknown"]
        )
        # Four significant digits keep folder names short; the trial number keeps them unique.
        shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in params.items()}
        name = f"{trial.number:04d}-" + run_names([shown], self.result.swept)[0]
        key_in = cache_mod.key_inputs(self.nb_digest, params, self.base["kernel"], self.deps)
        entry = RunEntry(
            name, trial.number, mask_parameters(params), key=cache_mod.cache_key(key_in)
        )
        trial.set_user_attr(RUN_ATTR, name)
        trial.set_user_attr(OWNER_ATTR, _owner())
        trial.set_user_attr("key", entry.key)
        trial.set_user_attr("parameters", entry.parameters)
        self.result.runs.append(entry)
        self.flight[name] = (trial, entry, key_in)
        if not self.force and runner._reuse(self.result, entry, self.run_cache):
            self._finish(name)
            return None
        return RunTask(name=name, parameters=params, pruning=self._prune_spec(), **self.base)

    def _prune_spec(self) -> PruneSpec | None:
        if self.spec.pruner == "none":
            return None
        state = self.optuna.trial.TrialState
        return PruneSpec(
            pruner=self.spec.pruner,
            options=self.spec.pruner_options,
            direction="maximize" if self.result.goal == "max" else "minimize",
            metric=str(self.result.metric),
            trials=self.study.get_trials(states=(state.COMPLETE, state.PRUNED)),
            study_name=self.study.study_name,
        )

    def _tell(self, name: str, outcome: TaskResult | BaseException) -> None:
        _, entry, key_in = self.flight[name]
        runner._record(self.result, entry, outcome, self.run_cache, key_in)
        self._finish(name)

    def _finish(self, name: str) -> None:
        trial, entry, _ = self.flight.pop(name)
        state = self.optuna.trial.TrialState
        metric = str(self.result.metric)
        history = self._history(entry)
        for step, value in history:
            trial.report(value, step)
            if self.spec.pruner != "none":
                # As the worker did at each step: successive halving (hyperband) keeps
                # each trial's value per rung in its attributes, which later snapshots carry.
                trial.should_prune()
        logged = entry.metrics.get(metric)
        numeric = isinstance(logged, int | float) and not isinstance(logged, bool)
        if entry.status == PRUNED:
            self.study.tell(trial, state=state.PRUNED)
        elif entry.succeeded and numeric:
            self.study.tell(trial, float(logged))  # type: ignore[arg-type]
        else:
            if entry.succeeded:
                entry.status = "failed"
                entry.message = f"the notebook logged no numeric {metric!r} (cml_nb.log_metric)"
            self.study.tell(trial, state=state.FAIL)
        if self.progress:
            done = len(_counted(self.study, self.optuna))
            self.progress(entry, done, self.spec.trials)

    def _history(self, entry: RunEntry) -> list[tuple[int, float]]:
        """The run's stepped values of the metric, first per step (what the pruner saw)."""
        try:
            record = RunRecord.read(self.result.run_folder(entry))
        except (OSError, ValueError, TypeError, KeyError):
            return []
        seen: dict[int, float] = {}
        for point in record.history.get(str(self.result.metric), []):
            step, value = point.get("step"), point.get("value")
            if isinstance(step, int) and isinstance(value, int | float) and step not in seen:
                seen[step] = float(value)
        return sorted(seen.items())


class _BatchSession:
    """A Session over an executor that only has ``run``: tasks go in batches of ``jobs``."""

    def __init__(self, engine: Any, jobs: int) -> None:
        self.engine, self.jobs = engine, jobs
        self.queued: list[RunTask] = []

    def submit(self, task: RunTask) -> None:
        self.queued.append(task)

    def wait(self) -> list[Any]:
        batch, self.queued = self.queued, []
        return list(self.engine.run(batch))

    def close(self, cancel: bool) -> None:
        self.queued = []


def summary(result: SweepResult, study: Any, spec: SearchSpec, optuna: Any) -> dict[str, Any]:
    """What ``sweep.json`` and the report say about the search."""
    state = optuna.trial.TrialState
    trials = _counted(study, optuna)
    complete = [t for t in trials if t.state == state.COMPLETE]
    found: dict[str, Any] = {
        "method": spec.method,
        "pruner": spec.pruner,
        "trials": spec.trials,
        "seed": spec.seed,
        "storage": STUDY_FILE,
        "study": study.study_name,
        "complete": len(complete),
        "pruned": sum(1 for t in trials if t.state == state.PRUNED),
        "failed": sum(1 for t in trials if t.state == state.FAIL),
        "history": [[t.number, t.value] for t in complete],
    }
    if complete:
        best = study.best_trial
        found["best"] = {
            "trial": best.number,
            "run": best.user_attrs.get(RUN_ATTR, ""),
            "value": best.value,
            "parameters": dict(best.user_attrs.get("parameters") or best.params),
        }
    found["importances"] = importances(study, optuna)
    return found


def importances(study: Any, optuna: Any) -> dict[str, float]:
    """Parameter importances by fANOVA (Optuna's default evaluator; needs scikit-learn).

    Without scikit-learn, PED-ANOVA (no extra dependency). Empty while fewer than
    two trials completed, or when every parameter has a single value.
    """
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    try:
        import sklearn  # noqa: F401

        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. no variation yet
        log.debug("no parameter importances: %s", exc)
        return {}
    return {str(k): round(float(v), 4) for k, v in found.items()}
