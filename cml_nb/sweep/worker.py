"""One run of a sweep, as executors ship it to a worker: ``execute_task(task) -> TaskResult``.

A task carries the notebook's text (so a remote Dask worker needs no copy of it),
and the result carries the run's files back, so executors on other machines need
no shared filesystem for outputs. Each run gets a fresh kernel; to hide kernel
start-up, a worker of the local pool starts the next run's kernel while the
current one executes (``KernelPool``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class RunTask:
    """Everything a worker needs to execute one configuration.

    Attributes:
        name: the run's folder name (``lr=0.1,depth=3``).
        notebook_name: the notebook's file name (``train.ipynb``).
        notebook_text: the notebook's JSON text.
        parameters: validated parameters to inject.
        kernel: kernel name.
        cwd: working directory of the kernel (the notebook's folder by default).
        timeout: seconds one cell may run; None for no limit.
        start_timeout: seconds a kernel may take to start.
        allow_unknown: inject parameters the notebook does not declare.
        keep_going: run every cell even after an error.
        prefetch: start a spare kernel for this worker's next run.
        env: the environment the kernel gets (the sweep process's, for local
            workers that fork from a long-lived forkserver); None keeps the worker's.
        pruning: a search trial's ``prune.PruneSpec``: report stepped values to a pruner
            as they stream and interrupt the kernel when it prunes; None for no pruning.
    """

    name: str
    notebook_name: str
    notebook_text: str
    parameters: dict[str, Any]
    kernel: str
    cwd: str
    timeout: float | None = None
    start_timeout: float = 60
    allow_unknown: bool = False
    keep_going: bool = False
    prefetch: bool = False
    env: dict[str, str] | None = field(default=None, repr=False)
    pruning: Any = field(default=None, repr=False)


@dataclass
class TaskResult:
    """What comes back: the run record (as a dict) and the run folder's files."""

    name: str
    record: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


class KernelPool:
    """Kernels started ahead of use, one kernel per run (never reused between runs)."""

    def __init__(self, fork: bool = True) -> None:
        from cml_nb import kernel_pool

        self._spares: dict[tuple[str, str], Any] = {}
        self._retired: list[Any] = []
        # fork: plain ipykernel kernels are forked from a template process that imported
        # ipykernel once (kernel_pool.KernelTemplate), each a new process as before.
        self._templates = kernel_pool.KernelTemplates() if fork else None

    def _start(self, kernel: str, cwd: str) -> Any:
        from cml_nb import kernel_pool

        # Only launches the process; nbclient waits for it to be ready when the run starts.
        # As nbclient's own kernels: IPC, and IPython history in memory (no run reads
        # another's code through %history).
        return kernel_pool.start(kernel, cwd, self._templates)

    def prefetch(self, kernel: str, cwd: str) -> None:
        """Start a kernel for a later ``take`` with the same kernel name and folder."""
        if (kernel, cwd) not in self._spares:
            try:
                self._spares[(kernel, cwd)] = self._start(kernel, cwd)
            except Exception as exc:  # the run itself will report a kernel that cannot start
                log.debug("could not start a spare kernel: %s", exc)

    def take(self, kernel: str, cwd: str) -> Any:
        """A started kernel manager (the spare when there is one), or None to let nbclient start one."""
        km = self._spares.pop((kernel, cwd), None)
        if km is not None:
            from jupyter_core.utils import run_sync

            if run_sync(km.is_alive)():
                return km
            self._retired.append(km)
        return None

    def retire(self, km: Any) -> None:
        """Ask a used kernel to shut down without waiting; it is reaped later."""
        from jupyter_core.utils import run_sync

        for client in getattr(km, "clients", ()):
            # nbclient leaves the channels of a kernel it does not own open.
            with contextlib.suppress(Exception):
                client.stop_channels()
        with contextlib.suppress(Exception):  # already dead: reaped below
            run_sync(km.request_shutdown)()
        self._retired.append(km)
        self._reap(wait=False)

    def _reap(self, wait: bool) -> None:
        from jupyter_core.utils import run_sync

        alive = []
        for km in self._retired:
            try:
                if wait:
                    run_sync(km.finish_shutdown)(waittime=2)
                if run_sync(km.is_alive)():
                    alive.append(km)
                    continue
                run_sync(km.cleanup_resources)()
            except Exception as exc:  # cleanup must never fail a sweep
                log.debug("kernel cleanup failed: %s", exc)
        self._retired = alive

    def close(self) -> None:
        """Shut down the spares and every retired kernel."""
        from jupyter_core.utils import run_sync

        for km in self._spares.values():
            try:
                run_sync(km.shutdown_kernel)(now=True)
            except Exception as exc:
                log.debug("spare kernel shutdown failed: %s", exc)
        self._spares.clear()
        self._reap(wait=True)
        if self._templates is not None:
            self._templates.close()


_POOL: KernelPool | None = None


def pool() -> KernelPool:
    """This process's kernel pool (created on first use, closed when the worker exits)."""
    global _POOL
    if _POOL is None:
        import atexit
        from multiprocessing import util

        _POOL = KernelPool()
        # Pool workers leave through multiprocessing's exit path, which skips atexit.
        util.Finalize(_POOL, _POOL.close, exitpriority=10)
        atexit.register(_POOL.close)
    return _POOL


def preload() -> None:
    """Import what a run needs, once per process, before the first task arrives."""
    import jupyter_client.manager  # noqa: F401
    import nbformat  # noqa: F401

    from cml_nb import _imports, execute

    _imports.import_papermill()

    execute._register_engine()


def _fresh_event_loop() -> None:
    """Drop an event loop inherited through fork: its selector is shared with the parent."""
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            inherited = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            inherited = None
    if inherited is not None and not inherited.is_running():
        inherited.close()  # closes this process's copies of its descriptors only
    asyncio.set_event_loop(asyncio.new_event_loop())


def adopt_environment(env: dict[str, str] | None) -> None:
    """Make ``env`` this process's environment (kernels started here inherit it)."""
    if env is not None and env != os.environ:
        os.environ.clear()
        os.environ.update(env)


def warm_up(kernel: str, cwd: str, env: dict[str, str] | None = None) -> None:
    """Pool initializer: import everything and start the first kernel ahead."""
    import signal

    # The sweep process decides about interruptions; it stops workers with SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _fresh_event_loop()
    adopt_environment(env)
    pool().prefetch(kernel, cwd)
    preload()


def execute_task(task: RunTask, use_pool: bool = True) -> TaskResult:
    """Execute one configuration in a scratch folder and return its record and files.

    Args:
        task: the run to execute.
        use_pool: take a kernel started ahead (and start the next one when
            ``task.prefetch``); False starts the kernel inside the run, as Dask
            workers running several tasks in threads must.
    """
    from cml_nb import execute

    adopt_environment(task.env)
    scratch = Path(tempfile.mkdtemp(prefix="cml-nb-run-"))
    try:
        source = scratch / "input" / task.notebook_name
        source.parent.mkdir()
        source.write_text(task.notebook_text, encoding="utf-8")
        output = scratch / "output" / task.notebook_name
        # A remote worker may lack the notebook's folder: run beside the copy instead.
        cwd = task.cwd if Path(task.cwd).is_dir() else str(source.parent)
        kernels = pool() if use_pool else None
        km = kernels.take(task.kernel, cwd) if kernels else None
        if kernels and task.prefetch:
            kernels.prefetch(task.kernel, cwd)
        own = None
        if task.pruning is not None and km is None:
            # The pruner interrupts the kernel, so this run needs a handle on it.
            own = KernelPool(fork=False)  # one kernel: a template would not pay off
            km = own._start(task.kernel, cwd)
        watch = _prune_watch(task, km)
        try:
            record = execute.run(
                source,
                output,
                task.parameters,
                kernel=task.kernel,
                cwd=cwd,
                timeout=task.timeout,
                start_timeout=task.start_timeout,
                allow_unknown=task.allow_unknown,
                keep_going=task.keep_going,
                raise_on_failure=False,
                km=km,
                hooks=[watch] if watch is not None else None,
            )
        finally:
            if own is not None:
                own.retire(km)
                own.close()
            elif kernels is not None and km is not None:
                kernels.retire(km)
        files = {p.name: p.read_bytes() for p in output.parent.iterdir() if p.is_file()}
        result = TaskResult(task.name, record.to_dict(), files)
        if watch is not None and watch.pruned_step is not None:
            from cml_nb.sweep.prune import mark_pruned

            mark_pruned(result.record, result.files, watch.pruned_step)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _prune_watch(task: RunTask, km: Any) -> Any:
    if task.pruning is None:
        return None
    from cml_nb.sweep.prune import PruneWatch

    return PruneWatch(task.pruning, km)
