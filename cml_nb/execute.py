"""Execute a notebook with parameters (papermill underneath) and record the run.

``run()`` is the whole stage: resolve paths, load, validate and inject parameters,
execute, write the executed notebook (masked), write ``run.json`` and
``metrics.json``, and only then raise if the run failed. The executed notebook is
written whatever happens: a failing cell, a timeout, a dead kernel or Ctrl-C.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cml_nb import environment
from cml_nb import parameters as params_mod
from cml_nb.errors import (
    CellTimeoutError,
    KernelDiedError,
    KernelNotFoundError,
    NotebookExecutionError,
    NotebookReadError,
    RunInterruptedError,
)
from cml_nb.metrics import read_metrics
from cml_nb.notebook import ERROR_MARKER_TAG as ERROR_MARKER_TAG  # re-export for old callers
from cml_nb.notebook import INJECTED_TAG, cell_numbers, first_error
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
)
from cml_nb.secrets import Scrubber, looks_secret, mask_parameters

log = logging.getLogger(__name__)

ENGINE_NAME = "cml-nb"
_TEXT_MIMES = ("text/plain", "text/markdown", "text/html", "text/latex", "application/json")


@dataclass
class CellEvent:
    """What hooks receive: the notebook as it stands and the cell concerned."""

    kind: str  # "cell_start" or "cell_complete"
    index: int
    nb: Any


Hook = Callable[[CellEvent], None]


@dataclass
class _Session:
    """State shared with the papermill engine, so partial results survive any exception."""

    hooks: list[Hook] = field(default_factory=list)
    nb: Any = None
    current_index: int | None = None

    def emit(self, kind: str, index: int) -> None:
        for hook in self.hooks:
            hook(CellEvent(kind, index, self.nb))


def default_output(notebook: Path) -> Path:
    """``train.ipynb`` -> ``runs/train/train.ipynb``."""
    return Path("runs") / notebook.stem / notebook.name


def load_notebook(path: Path) -> Any:
    """Read and validate a notebook, or fail with what is wrong with the file."""
    import nbformat

    if not path.exists():
        raise NotebookReadError(f"notebook not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookReadError(f"cannot read {path}: {exc}") from exc
    try:
        nb = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
    except nbformat.reader.NotJSONError as exc:
        raise NotebookReadError(f"{path} is not valid JSON: is it a notebook (.ipynb)?") from exc
    except Exception as exc:  # nbformat raises several unrelated types for non-notebooks
        raise NotebookReadError(f"{path} is not a Jupyter notebook: {exc}") from exc
    if "cells" not in nb:
        raise NotebookReadError(f"{path} is not a Jupyter notebook: it has no 'cells'")
    return nb


def _engine_class() -> type:
    """The papermill engine that reports to a ``_Session`` (built on first use)."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager

    class Manager(NotebookExecutionManager):  # type: ignore[misc]
        def __init__(self, nb: Any, session: _Session, **kwargs: Any) -> None:
            super().__init__(nb, output_path=None, **kwargs)
            self.session = session
            session.nb = self.nb

        def cell_start(self, cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            super().cell_start(cell, cell_index, **kw)
            self.session.current_index = cell_index
            self.session.emit("cell_start", cell_index or 0)

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            super().cell_complete(cell, cell_index, **kw)
            self.session.emit("cell_complete", cell_index or 0)

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


_PAPERMILL_NOISE = ("Input Notebook", "Output Notebook", "Working directory")


class _ScrubFilter(logging.Filter):
    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith(_PAPERMILL_NOISE):
            return False
        record.msg = self.scrubber.scrub(text)
        record.args = ()
        return True


def _stream_cell_output(scrubber: Scrubber) -> logging.Handler:
    """Send papermill's live cell output to stderr, with secrets masked."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_ScrubFilter(scrubber))
    logger = logging.getLogger("papermill")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def _cell_timings(nb: Any) -> list[CellTiming]:
    timings = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("papermill", {})
        timings.append(
            CellTiming(
                index, cell.get("execution_count"), meta.get("duration"), meta.get("status", "")
            )
        )
    return timings


def _mask_notebook(nb: Any, injected: Mapping[str, Any], scrubber: Scrubber) -> None:
    """Hide secret parameter values in the injected cell, metadata and every text output."""
    if any(looks_secret(name) for name in injected):
        from papermill.translators import translate_parameters

        masked = mask_parameters(injected)
        kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
        language = nb.metadata.get("language_info", {}).get("name", "python")
        for cell in nb.cells:
            if INJECTED_TAG in cell.get("metadata", {}).get("tags", ()):
                cell.source = translate_parameters(kernel, language, masked, "Parameters")
        nb.metadata.setdefault("papermill", {})["parameters"] = masked
    for cell in nb.cells:
        for output in cell.get("outputs", ()):
            if "text" in output:
                output["text"] = scrubber.scrub(_joined(output["text"]))
            for key in ("evalue",):
                if key in output:
                    output[key] = scrubber.scrub(output[key])
            if "traceback" in output:
                output["traceback"] = [scrubber.scrub(line) for line in output["traceback"]]
            data = output.get("data", {})
            for mime in _TEXT_MIMES:
                if isinstance(data.get(mime), str | list):
                    data[mime] = scrubber.scrub(_joined(data[mime]))


def _joined(text: str | list[str]) -> str:
    return "".join(text) if isinstance(text, list) else text


def _write_notebook(nb: Any, path: Path) -> None:
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(nbformat.writes(nb), encoding="utf-8")  # type: ignore[no-untyped-call]
    tmp.replace(path)


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

    Returns:
        The run record (also written as ``run.json``).
    """
    started, clock = _now(), time.perf_counter()
    source = Path(notebook)
    out_path = Path(output) if output else default_output(source)
    nb = load_notebook(source)

    injected = params_mod.validate(nb, parameters or {}, allow_unknown=allow_unknown)
    if injected and params_mod.find_parameters_cell(nb) is None:
        log.warning("%s has no cell tagged 'parameters': injecting parameters at the top", source)
    scrubber = Scrubber(str(v) for k, v in injected.items() if looks_secret(k))
    # git and nvidia-smi take a while: probe them while the notebook runs.
    probe = ThreadPoolExecutor(max_workers=1)
    environment_future = probe.submit(environment.describe, source.parent)

    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError as NbCellTimeout
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    _register_engine()
    session = _Session(hooks=list(hooks or []))
    handler = _stream_cell_output(scrubber) if log_output else None
    status, message = SUCCEEDED, ""
    try:
        papermill.execute_notebook(
            nb,
            None,
            parameters=injected,
            engine_name=ENGINE_NAME,
            # A notebook saved without kernelspec metadata runs on the default kernel.
            kernel_name=kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3",
            language=nb.metadata.get("kernelspec", {}).get("language")
            or nb.metadata.get("language_info", {}).get("name")
            or "python",
            cwd=str(cwd or source.parent.resolve()),
            progress_bar=progress_bar,
            log_output=log_output,
            start_timeout=start_timeout,
            execution_timeout=timeout,
            allow_errors=keep_going,
            cml_nb_session=session,
            km=km,
        )
    except NoSuchKernel as exc:
        raise KernelNotFoundError(
            f"kernel {exc.name!r} is not installed: install it "
            f"(python -m ipykernel install --user --name {exc.name}) or pass --kernel"
        ) from None
    except PapermillExecutionError:
        status = FAILED
    except NbCellTimeout:
        status, message = TIMEOUT, f"a cell ran longer than the {timeout:g} s timeout"
    except DeadKernelError:
        status, message = KERNEL_DIED, "the kernel died while a cell ran"
    except RuntimeError as exc:
        if "Kernel died" not in str(exc):
            raise
        status, message = KERNEL_DIED, "the kernel died before it started"
    except KeyboardInterrupt:
        status, message = INTERRUPTED, "interrupted"
    finally:
        if handler is not None:
            logging.getLogger("papermill").removeHandler(handler)

    executed = session.nb if session.nb is not None else nb
    _mask_notebook(executed, injected, scrubber)  # before anything reads its errors
    error = first_error(executed)
    if error is None and status != SUCCEEDED and session.current_index is not None:
        cell = executed.cells[session.current_index]
        error = CellError(session.current_index, cell.get("execution_count"), status, message)
    if status == FAILED and error is not None:
        number = cell_numbers(executed).get(error.cell_index, error.cell_index)
        where = f"cell {number}" + (
            f" (In [{error.execution_count}])" if error.execution_count else ""
        )
        what = f"{error.ename}: {error.evalue}" if error.evalue else error.ename
        if error.ename == "SystemExit":
            what = f"called sys.exit({error.evalue})"
        message = f"{where} raised {what}" if error.ename != "SystemExit" else f"{where} {what}"
    elif status != SUCCEEDED and error is not None:
        message = (
            f"{message} (cell {cell_numbers(executed).get(error.cell_index, error.cell_index)})"
        )

    _write_notebook(executed, out_path)
    logged = read_metrics(executed)
    record = RunRecord(
        notebook=str(source),
        output=str(out_path),
        status=status,
        parameters=mask_parameters(injected),
        metrics=logged["metrics"],
        history=logged["history"],
        logged_params=logged["params"],
        error=error if status != SUCCEEDED else None,
        message=scrubber.scrub(message),
        cells=_cell_timings(executed),
        duration=round(time.perf_counter() - clock, 3),
        started_at=started,
        finished_at=_now(),
        kernel=kernel or executed.metadata.get("kernelspec", {}).get("name", ""),
        environment=environment_future.result(),
    )
    probe.shutdown()
    record.write(out_path.parent)
    if raise_on_failure and not record.succeeded:
        raise failure_error(record)
    return record


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
