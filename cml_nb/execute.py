"""Execute a notebook with parameters (papermill underneath) and record the run.

``run()`` is the whole stage: resolve paths, load, validate and inject parameters,
execute, write the executed notebook (masked), write ``run.json`` and
``metrics.json``, and only then raise if the run failed. The executed notebook is
written whatever happens: a failing cell, a timeout, a dead kernel or Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cml_nb import _imports, environment, kernel_pool, kernels, masking, runlog
from cml_nb import parameters as params_mod
from cml_nb.errors import (
    CellTimeoutError,
    KernelDiedError,
    KernelNotFoundError,
    NotebookExecutionError,
    NotebookReadError,
    OutputWriteError,
    RunInterruptedError,
)
from cml_nb.metrics import read_metrics
from cml_nb.notebook import ERROR_MARKER_TAG as ERROR_MARKER_TAG  # re-export for old callers
from cml_nb.notebook import cell_numbers, first_error, structure_problem
from cml_nb.notebook import strip_ansi as strip_ansi  # re-export for old callers
from cml_nb.records import (
    FAILED,
    INTERRUPTED,
    KERNEL_DIED,
    SUCCEEDED,
    TIMEOUT,
    CellError,
    CellTiming,
    RunRecord,
    discard_stale,
)
from cml_nb.secrets import Scrubber, looks_secret, mask_parameters

log = logging.getLogger(__name__)

ENGINE_NAME = "cml-nb"


class CellEvent:
    """What hooks receive: the notebook as it stands and the cell concerned.

    ``nb`` is a copy masked exactly like the written notebook (made on first access,
    once per event): hooks show or send it elsewhere (``--live`` publishes it), and
    the first version a forge keeps must be as masked as the last. ``live_nb`` is the
    executing notebook itself, for hooks that only count cells.
    """

    def __init__(
        self, kind: str, index: int, live_nb: Any, mask: Callable[[Any], Any] | None = None
    ) -> None:
        self.kind = kind  # "cell_start", "output" (a kernel message arrived) or "cell_complete"
        self.index = index
        self.live_nb = live_nb
        self._mask = mask
        self._masked: Any = None

    @property
    def nb(self) -> Any:
        """The notebook so far, secrets masked (None before papermill loaded it)."""
        if self.live_nb is None or self._mask is None:
            return self.live_nb
        if self._masked is None:
            self._masked = self._mask(self.live_nb)
        return self._masked


Hook = Callable[[CellEvent], None]


@dataclass
class _Session:
    """State shared with the papermill engine, so partial results survive any exception."""

    hooks: list[Hook] = field(default_factory=list)
    nb: Any = None
    current_index: int | None = None
    mask: Callable[[Any], Any] | None = None
    #: What the kernel replied when a cell failed without an error output (a
    #: ``UsageError`` from an unknown ``%magic`` only prints to stderr).
    failure: tuple[str, str, list[str]] | None = None

    def emit(self, kind: str, index: int) -> None:
        for hook in self.hooks:
            hook(CellEvent(kind, index, self.nb, self.mask))


def default_output(notebook: Path) -> Path:
    """``train.ipynb`` -> ``runs/train/train.ipynb``."""
    return Path("runs") / notebook.stem / notebook.name


def load_notebook(path: Path) -> Any:
    """Read and check a notebook (nbformat 3 is upgraded), or fail with what is wrong."""
    import nbformat

    if not path.exists():
        raise NotebookReadError(f"notebook not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookReadError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except RecursionError:
        raise NotebookReadError(f"{path} is nested too deeply to be a notebook") from None
    except ValueError:
        raise NotebookReadError(f"{path} is not valid JSON: is it a notebook (.ipynb)?") from None
    version = data.get("nbformat") if isinstance(data, dict) else None
    if version not in (3, 4):
        found = f"nbformat {version}" if version is not None else "no nbformat version"
        raise NotebookReadError(
            f"{path} is not a Jupyter notebook cml-nb can run: it has {found} (3 and 4 work)"
        )
    problem = structure_problem(data) if version == 4 else None
    if problem:
        raise NotebookReadError(f"{path} is not a Jupyter notebook: {problem}")
    if version == 4:
        return nbformat.from_dict(data)  # type: ignore[no-untyped-call]
    try:
        # from_dict: an upgraded nbformat 3 notebook keeps v3's node class otherwise,
        # which papermill does not recognise as a notebook.
        nb = nbformat.from_dict(nbformat.convert(nbformat.from_dict(data), 4))  # type: ignore[no-untyped-call]
    except RecursionError:
        raise NotebookReadError(f"{path} is nested too deeply to be a notebook") from None
    except Exception as exc:  # nbformat's upgrade raises many types for odd v3 files
        raise NotebookReadError(f"{path} is not a Jupyter notebook: {exc}") from None
    problem = structure_problem(nb)
    if problem:
        raise NotebookReadError(f"{path} is not a Jupyter notebook: {problem}")
    return nb


def _engine_class() -> type:
    """The papermill engine that reports to a ``_Session`` (built on first use)."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager

    class Manager(NotebookExecutionManager):  # type: ignore[misc]
        log_output: bool

        def __init__(self, nb: Any, session: _Session, **kwargs: Any) -> None:
            super().__init__(nb, output_path=None, **kwargs)
            self.session = session
            session.nb = self.nb

        def cell_start(self, cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            logging_on: bool = bool(self.log_output)
            self.log_output = False
            try:  # papermill's "Executing Cell N" counts its own injected cell: say ours
                super().cell_start(cell, cell_index, **kw)
            finally:
                self.log_output = logging_on
            if logging_on:
                number = cell_numbers(self.nb).get(cell_index or 0)
                logging.getLogger(runlog.PAPERMILL_LOGGER).info(runlog.cell_start_line(number))
            self.session.current_index = cell_index
            self.session.emit("cell_start", cell_index or 0)

        def cell_exception(self, cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            super().cell_exception(cell, cell_index, **kw)
            exc = kw.get("exception")
            if exc is not None and getattr(exc, "ename", None):
                traceback = str(getattr(exc, "traceback", "") or "").splitlines()
                self.session.failure = (str(exc.ename), str(exc.evalue or ""), traceback)

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            logging_on: bool = bool(self.log_output)
            self.log_output = False
            try:  # "Ending Cell N" lines only repeat the (wrong) number
                super().cell_complete(cell, cell_index, **kw)
            finally:
                self.log_output = logging_on
            self.session.emit("cell_complete", cell_index or 0)

        def autosave_cell(self) -> None:
            # papermill calls this on every kernel message: "output" events let hooks
            # (a sweep's pruner) read values as they stream, mid-cell.
            super().autosave_cell()
            if self.session.current_index is not None:
                self.session.emit("output", self.session.current_index)

    class Engine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_notebook(
            cls,
            nb: Any,
            kernel_name: str,
            output_path: str | None = None,
            progress_bar: bool = True,
            log_output: bool = False,
            autosave_cell_every: int = 30,
            **kwargs: Any,
        ) -> Any:
            session: _Session = kwargs.pop("cml_nb_session")
            manager = Manager(nb, session, progress_bar=progress_bar, log_output=log_output)
            manager.notebook_start()
            try:
                cls.execute_managed_notebook(manager, kernel_name, log_output=log_output, **kwargs)
            finally:
                manager.cleanup_pbar()
                manager.notebook_complete()
            return manager.nb

    return Engine


def _register_engine() -> None:
    from papermill.engines import papermill_engines

    if ENGINE_NAME not in papermill_engines._engines:
        papermill_engines.register(ENGINE_NAME, _engine_class())


def _cell_timings(nb: Any) -> list[CellTiming]:
    timings = []
    numbers = cell_numbers(nb)
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("papermill", {})
        count, duration = cell.get("execution_count"), meta.get("duration")
        timings.append(
            CellTiming(index, count, duration, meta.get("status", ""), numbers.get(index))
        )
    return timings


def _write_notebook(nb: Any, path: Path, source: Path) -> None:
    """Write the executed notebook whole, or leave no notebook that looks like this run's."""
    import nbformat

    from cml_nb.records import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, nbformat.writes(nb))  # type: ignore[no-untyped-call]
    except OSError as exc:
        stale = path.is_file() and path.resolve() != source.resolve()
        if stale:  # an earlier run's output would pass for this one's
            path.unlink()
        raise OutputWriteError(
            f"cannot write the executed notebook {path}: {exc.strerror or exc}"
            + (" (the previous run's notebook there was removed)" if stale else "")
        ) from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(
    notebook: str | Path,
    output: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel: str | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    start_timeout: float = 60,
    keep_going: bool = False,
    allow_unknown: bool = False,
    progress_bar: bool = False,
    log_output: bool = False,
    hooks: list[Hook] | None = None,
    raise_on_failure: bool = True,
    km: Any = None,
    loggers: str | Sequence[str] | None = None,
    tensorboard_dirs: Sequence[str | Path] = (),
    mlflow_experiment: str | None = None,
) -> RunRecord:
    """Execute ``notebook`` with ``parameters``; write the executed notebook and run record.

    Args:
        notebook: the input ``.ipynb``.
        output: where to write the executed notebook (default ``runs/<stem>/<name>``);
            ``run.json`` and ``metrics.json`` go beside it.
        parameters: values for the ``parameters`` cell, checked against its defaults.
        kernel: kernel name (default: the notebook's own).
        cwd: working directory of the kernel (default: the notebook's folder).
        timeout: seconds one cell may run; None for no limit.
        start_timeout: seconds the kernel may take to start.
        keep_going: run every cell even after an error, then fail.
        allow_unknown: inject parameters the notebook does not declare.
        progress_bar: show a progress bar (for terminals).
        log_output: stream cell output to the log as it arrives (for CI logs).
        hooks: callables told of each cell's start and completion.
        raise_on_failure: raise a ``NotebookExecutionError`` subclass when the run fails.
        km: a kernel manager whose kernel is already starting (sweeps start kernels
            ahead); the caller shuts it down. None starts a fresh kernel here.
        loggers: the logger readers to ask for what the notebook wrote during the run
            (:mod:`cml_nb.loggers`); None for all, ``[]`` for none.
        tensorboard_dirs: more folders of TensorBoard event files (``--tensorboard``).
        mlflow_experiment: read only this MLflow experiment's runs.

    Returns:
        The run record (also written as ``run.json``).
    """
    started, clock, started_epoch = _now(), time.perf_counter(), time.time()
    source = Path(notebook)
    out_path = Path(output) if output else default_output(source)
    nb = load_notebook(source)

    injected = params_mod.validate(nb, parameters or {}, allow_unknown=allow_unknown)
    from cml_nb import loggers as loggers_mod  # TensorBoard, DVCLive, MLflow: docs/loggers.md

    chosen_loggers = loggers_mod.parse(loggers)  # an unknown name fails before the run
    if injected and params_mod.find_parameters_cell(nb) is None:
        log.warning("%s has no cell tagged 'parameters': injecting parameters at the top", source)
    scrubber = Scrubber(str(v) for k, v in injected.items() if looks_secret(k))
    # A notebook saved without kernelspec metadata runs on the default kernel.
    kernel_name = kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    language = kernels.notebook_language(nb)
    if km is None:
        kernels.check_kernel(kernel_name, language)
    # From here on the previous run's record would pass for this one's if we stopped.
    discard_stale(out_path.parent)
    # git and nvidia-smi take a while: probe them while the notebook runs.
    probe = ThreadPoolExecutor(max_workers=1)
    environment_future = probe.submit(environment.describe, source.parent)
    own_km = None
    if km is None:  # the kernel boots (a second process) while papermill and nbclient import
        km = own_km = kernel_pool.start_ahead(kernel_name, str(cwd or source.parent.resolve()))
    try:
        papermill = _imports.import_papermill()
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient.exceptions import CellTimeoutError as NbCellTimeout
        from nbclient.exceptions import DeadKernelError
        from papermill.exceptions import PapermillExecutionError

        _register_engine()
        session = _Session(
            hooks=list(hooks or []),
            mask=lambda live: masking.masked_copy(live, injected, scrubber),
        )
        manager_class = kernels.kernel_manager_class() if km is None else None
        status, message = SUCCEEDED, ""
        try:
            with runlog.guarded(scrubber, stream=log_output):
                papermill.execute_notebook(
                    nb,
                    None,
                    parameters=injected,
                    engine_name=ENGINE_NAME,
                    kernel_name=kernel_name,
                    language=language,
                    cwd=str(cwd or source.parent.resolve()),
                    progress_bar=progress_bar,
                    log_output=log_output,
                    start_timeout=start_timeout,
                    execution_timeout=timeout,
                    allow_errors=keep_going,
                    cml_nb_session=session,
                    km=km,
                    **({"kernel_manager_class": manager_class} if manager_class else {}),
                )
        except NoSuchKernel as exc:  # a spec removed between the check and the start
            raise KernelNotFoundError(kernels.missing_kernel_message(exc.name, language)) from None
        except PapermillExecutionError:
            status = FAILED
        except NbCellTimeout:
            status, message = TIMEOUT, f"a cell ran longer than the {timeout:g} s timeout"
        except DeadKernelError:
            status, message = KERNEL_DIED, "the kernel died while a cell ran"
        except RecursionError:  # nbformat cannot hold an output the kernel sent (JSON ~900 deep)
            status = FAILED
            session.failure = ("RecursionError", "it displayed an output nested too deeply", [])
        except RuntimeError as exc:
            if "Kernel died" not in str(exc):
                raise
            status, message = KERNEL_DIED, "the kernel died before it started"
        except KeyboardInterrupt:
            status, message = INTERRUPTED, "interrupted"
        finally:  # it exits while the notebook and record are written
            if own_km is not None:
                kernel_pool.request_shutdown(own_km)

        executed = session.nb if session.nb is not None else nb
        masking.mask_notebook(executed, injected, scrubber)  # before anything reads its errors
        error = _failing_cell(executed, session, status, message) if status != SUCCEEDED else None
        if error is not None:
            error = CellError(**scrubber.scrub_data(asdict(error)))
            message = _summary(executed, error, status, message)

        _write_notebook(executed, out_path, source)
        logged = read_metrics(executed)
        context = loggers_mod.RunContext(
            Path(cwd or source.parent).resolve(), started_epoch,
            [Path(d) for d in tensorboard_dirs], mlflow_experiment,
        )  # fmt: skip
        from_loggers = loggers_mod.collect(chosen_loggers, context)
        metrics, sources = from_loggers.merged(logged["metrics"])
        record = RunRecord(
            notebook=str(source),
            output=str(out_path),
            status=status,
            parameters=mask_parameters(injected),
            metrics=mask_parameters(metrics),
            history=logged["history"],
            logged_params=mask_parameters(logged["params"]),
            error=error,
            message=scrubber.scrub(message),
            cells=_cell_timings(executed),
            duration=round(time.perf_counter() - clock, 3),
            started_at=started,
            finished_at=_now(),
            kernel=kernel or executed.metadata.get("kernelspec", {}).get("name", ""),
            environment=environment_future.result(),
            series=from_loggers.series_json(),
            metric_sources=sources,
            loggers=from_loggers.summary(),
        )
        probe.shutdown()
        record.write(out_path.parent, scrubber)
        if raise_on_failure and not record.succeeded:
            raise failure_error(record)
        return record
    finally:  # every way out, an exception too: a library caller outlives its runs
        if own_km is not None:
            kernel_pool.release(own_km)


def _failing_cell(executed: Any, session: _Session, status: str, message: str) -> CellError | None:
    """The cell that stopped the run: its error output, else what the kernel replied."""
    error = first_error(executed)
    if error is not None:
        return error
    # papermill marks the failing cell; its index moved if papermill added a banner.
    index = next(
        (
            i
            for i, cell in enumerate(executed.cells)
            if (cell.get("metadata", {}).get("papermill", {}) or {}).get("exception") is True
        ),
        session.current_index,
    )
    if index is None or index >= len(executed.cells):
        return None
    count = executed.cells[index].get("execution_count")
    if status == FAILED and session.failure is not None:
        ename, evalue, traceback = session.failure
        return CellError(
            index, count, ename, strip_ansi(evalue), [strip_ansi(t) for t in traceback]
        )
    return CellError(index, count, status, message)


def _summary(executed: Any, error: CellError, status: str, message: str) -> str:
    """The one-line failure, e.g. `cell 3 (In [2]) raised ValueError: bad` (author numbering)."""
    number = cell_numbers(executed).get(error.cell_index, error.cell_index)
    if status != FAILED:
        return f"{message} (cell {number})"
    where = f"cell {number}" + (f" (In [{error.execution_count}])" if error.execution_count else "")
    if error.ename == "SystemExit":
        return f"{where} called sys.exit({error.evalue})"
    what = f"{error.ename}: {error.evalue}" if error.evalue else error.ename
    return f"{where} raised {what}"


_ERRORS: dict[str, type[NotebookExecutionError]] = {
    FAILED: NotebookExecutionError,
    TIMEOUT: CellTimeoutError,
    KERNEL_DIED: KernelDiedError,
    INTERRUPTED: RunInterruptedError,
}

_HINTS = {
    FAILED: "",
    TIMEOUT: ": raise --timeout or make the cell faster",
    KERNEL_DIED: ": it was probably out of memory (check dmesg, lower the batch size)",
    INTERRUPTED: "",
}


def failure_error(record: RunRecord) -> NotebookExecutionError:
    """The exception that describes a failed run (its outputs are already written)."""
    error_type = _ERRORS.get(record.status, NotebookExecutionError)
    err = record.error
    return error_type(
        f"{record.message}{_HINTS.get(record.status, '')}; executed notebook: {record.output}",
        cell_index=err.cell_index if err else None,
        ename=err.ename if err else "",
        evalue=err.evalue if err else "",
        traceback=err.traceback if err else [],
        output_path=record.output,
    )
