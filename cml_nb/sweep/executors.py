"""Executors: where the runs of a sweep execute, as a registry keyed by name.

An executor takes ``RunTask`` objects and yields a ``TaskResult`` (or the exception
a task raised) for each, in any order, as runs finish. Built in:

* ``local``: a pool of worker processes on this machine (``-j`` of them) that
  import papermill once and start each run's kernel while the previous run executes.
* ``dask``: a Dask distributed cluster (``--scheduler tcp://HOST:PORT``; without
  one, a ``LocalCluster`` on this machine).

Third-party executors register under the ``cml_nb.executors`` entry-point group;
the entry point names a factory ``(jobs: int, **options) -> Executor``.

A search sweep cannot list its tasks up front: Optuna proposes each trial once the
earlier ones are told. Executors that can take tasks one by one have ``open()``,
which returns a ``Session`` (``submit``, ``wait``, ``close``); the study falls back
to batches of ``jobs`` tasks through ``run`` for executors without it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from cml_nb.errors import ConfigError, MissingDependencyError
from cml_nb.sweep.worker import RunTask, TaskResult, execute_task, warm_up

ENTRY_POINT_GROUP = "cml_nb.executors"

Outcome = tuple[RunTask, TaskResult | BaseException]


class Executor(Protocol):
    """Runs tasks somewhere and reports each outcome as it finishes."""

    def run(self, tasks: Sequence[RunTask]) -> Iterator[Outcome]:
        """Execute ``tasks``; yield ``(task, result or exception)`` as each one finishes.

        Contract: every task is yielded exactly once, unless the consumer stops early
        (then pending tasks are cancelled); an exception raised by a task is yielded,
        not raised, so one broken run never stops the others.
        """
        ...


class Session(Protocol):
    """An open executor that takes tasks one at a time (a search's ask/tell loop)."""

    def submit(self, task: RunTask) -> None:
        """Start ``task`` (queued when every worker is busy)."""
        ...

    def wait(self) -> list[Outcome]:
        """Block until at least one submitted task finishes; return those finished."""
        ...

    def close(self, cancel: bool) -> None:
        """Stop: wait for nothing and stop tasks in flight when ``cancel``."""
        ...


ExecutorFactory = Callable[..., Executor]
_REGISTRY: dict[str, ExecutorFactory] = {}


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Make ``factory(jobs=..., **options)`` available as ``--executor NAME``."""
    _REGISTRY[name] = factory


def available() -> list[str]:
    """Names of the registered executors, entry points included."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = entry.load()


def get_executor(name: str, **options: Any) -> Executor:
    """An executor by name, or a ConfigError that lists the known names."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown executor {name!r}: use one of {', '.join(available())} "
            f"(or install a package that registers it under '{ENTRY_POINT_GROUP}')"
        )
    return _REGISTRY[name](**options)


def _context() -> Any:
    """A forkserver that imports papermill once; each worker forks from it, already warm.

    Forking the sweep's own process would copy whatever threads it runs (a Jupyter
    server, a Dask client); the forkserver is a fresh single-threaded process.
    Windows has no fork: its workers start with ``spawn`` and import on their own.
    """
    if sys.platform == "win32":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["cml_nb.sweep.worker_preload"])
    return context


class LocalExecutor:
    """A process pool on this machine; each worker keeps the next run's kernel starting."""

    def __init__(self, jobs: int | None = None, **options: Any) -> None:
        if options:
            raise ConfigError(f"the local executor takes no {', '.join(sorted(options))} option")
        self.jobs = max(1, jobs or os.cpu_count() or 1)

    def run(self, tasks: Sequence[RunTask]) -> Iterator[Outcome]:
        """Execute ``tasks`` on ``jobs`` worker processes (see ``Executor.run``)."""
        if not tasks:
            return
        workers = min(self.jobs, len(tasks))
        first = tasks[0]
        env = dict(os.environ)
        # The last run of each worker starts no spare kernel that nobody would use.
        for index, task in enumerate(tasks):
            task.prefetch = index < len(tasks) - workers
            task.env = env
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_context(),
            initializer=warm_up,
            initargs=(first.kernel, first.cwd, env),
        )
        finished = False
        try:
            futures = {pool.submit(execute_task, task): task for task in tasks}
            yield from _as_completed(futures)
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:  # interrupted, or the consumer stopped: do not wait for runs in flight
                _stop_workers(pool)

    def open(self, kernel: str, cwd: str) -> Session:
        """A session of ``jobs`` worker processes, warmed for ``kernel`` in ``cwd``."""
        env = dict(os.environ)
        pool = ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=_context(),
            initializer=warm_up,
            initargs=(kernel, cwd, env),
        )
        return _LocalSession(pool, env)


class _LocalSession:
    def __init__(self, pool: ProcessPoolExecutor, env: dict[str, str]) -> None:
        self.pool, self.env = pool, env
        self.futures: dict[Future[TaskResult], RunTask] = {}

    def submit(self, task: RunTask) -> None:
        task.env = self.env
        self.futures[self.pool.submit(execute_task, task)] = task

    def wait(self) -> list[Outcome]:
        done, _ = wait(self.futures, return_when=FIRST_COMPLETED)
        found: list[Outcome] = []
        for future in done:
            task = self.futures.pop(future)
            error = future.exception()
            found.append((task, error if error is not None else future.result()))
        return found

    def close(self, cancel: bool) -> None:
        if cancel:
            _stop_workers(self.pool)
        else:
            self.pool.shutdown(wait=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel queued runs and terminate the workers (their kernels exit with them)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    # Before 3.14 there is no public way; shutdown() forgets the processes, so look first.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _as_completed(futures: dict[Future[TaskResult], RunTask]) -> Iterator[Outcome]:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            error = future.exception()
            yield futures[future], (error if error is not None else future.result())


class DaskExecutor:
    """Runs each task on a Dask distributed cluster and brings back its record and files."""

    def __init__(
        self, jobs: int | None = None, scheduler: str | None = None, **options: Any
    ) -> None:
        if options:
            raise ConfigError(f"the dask executor takes no {', '.join(sorted(options))} option")
        self.jobs = jobs
        self.scheduler = scheduler

    def run(self, tasks: Sequence[RunTask]) -> Iterator[Outcome]:
        """Submit every task to the cluster (see ``Executor.run``)."""
        try:
            from distributed import as_completed
        except ImportError:
            raise MissingDependencyError("--executor dask", "dask", "distributed") from None
        if not tasks:
            return
        client, cluster = self._connect()
        try:
            # A Dask worker may run tasks in threads, so each run starts its own kernel.
            futures = {client.submit(execute_task, task, False, pure=False): task for task in tasks}
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                task = futures[future]
                try:
                    yield task, future.result()
                except Exception as error:  # the task's own failure, already a CmlNbError or not
                    yield task, error
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def open(self, kernel: str, cwd: str) -> Session:
        """A session on the cluster (``kernel`` and ``cwd`` travel with each task)."""
        return _DaskSession(*self._connect())

    def _connect(self) -> tuple[Any, Any]:
        """A client of ``--scheduler``, or of a new local cluster (returned too, else None)."""
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise MissingDependencyError("--executor dask", "dask", "distributed") from None
        if self.scheduler:
            return _connect(Client, self.scheduler), None
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=self.jobs or os.cpu_count() or 1,
            threads_per_worker=1,
            dashboard_address=None,
        )
        return Client(cluster), cluster  # type: ignore[no-untyped-call]


class _DaskSession:
    def __init__(self, client: Any, cluster: Any) -> None:
        self.client, self.cluster = client, cluster
        self.futures: dict[Any, RunTask] = {}

    def submit(self, task: RunTask) -> None:
        # As in DaskExecutor.run: each run starts its own kernel.
        self.futures[self.client.submit(execute_task, task, False, pure=False)] = task

    def wait(self) -> list[Outcome]:
        from distributed import wait as dask_wait

        done = dask_wait(list(self.futures), return_when="FIRST_COMPLETED").done  # type: ignore[no-untyped-call]
        found: list[Outcome] = []
        for future in done:
            task = self.futures.pop(future)
            try:
                found.append((task, future.result()))
            except Exception as error:  # the task's own failure
                found.append((task, error))
        return found

    def close(self, cancel: bool) -> None:
        if cancel:
            for future in self.futures:
                future.cancel()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _connect(client_class: Any, address: str) -> Any:
    from cml_nb.errors import CmlNbError

    try:
        # Dask retries the connection for distributed.comm.timeouts.connect (30 s by default).
        return client_class(address)
    except (OSError, TimeoutError) as exc:
        raise CmlNbError(
            f"cannot reach the Dask scheduler at {address} ({exc}): "
            "check the address and that the scheduler runs, or drop --scheduler to use a local cluster"
        ) from exc


register_executor("local", LocalExecutor)
register_executor("dask", DaskExecutor)
