"""``cml-nb run``: execute a notebook with parameters and record the run."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import click

from cml_nb.cli._options import (
    execution_options,
    junit_option,
    logger_options,
    parameter_options,
)
from cml_nb.cli.history import compare_options
from cml_nb.cli.publish import publish_options


def _sigterm_as_interrupt() -> None:
    # CI systems cancel jobs with SIGTERM: treat it like Ctrl-C so outputs get written.
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (e.g. embedded use)
        signal.signal(signal.SIGTERM, handler)


def timing_summary(record: Any, top: int = 5) -> str:
    """The slowest cells and the total, for the end of the log."""
    timed = sorted(
        (c for c in record.cells if c.duration is not None), key=lambda c: c.duration, reverse=True
    )
    lines = [f"{record.status}: {len(record.cells)} code cells in {record.duration:.1f} s"]
    for cell in timed[:top]:
        # The author's cell numbers, as in the log's "Executing cell N" and error messages.
        name = f"cell {cell.number:>3}" if cell.number is not None else "parameters"
        lines.append(f"  {name:<10}  {cell.duration:8.2f} s")
    return "\n".join(lines)


@click.command("run")
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Executed notebook path (default runs/<name>/<name>.ipynb); run.json goes beside it.",
)  # fmt: skip
@parameter_options
@execution_options
@logger_options
@click.option(
    "--progress/--no-progress", default=None,
    help="Progress bar (default: on when stderr is a terminal).",
)  # fmt: skip
@click.option(
    "--log-output/--no-log-output", default=None,
    help="Stream cell output to the log (default: on when stderr is not a terminal, as in CI).",
)  # fmt: skip
@click.option(
    "--report/--no-report", default=True,
    help="Also write the report bundle (report.md, report.html, assets/, report.json) "
    "in report/ beside the executed notebook (default: on).",
)  # fmt: skip
@compare_options
@click.option(
    "--publish", "publish_report", is_flag=True,
    help="Publish the report as a sticky PR/MR comment (see `cml-nb publish`), also when the run fails.",
)  # fmt: skip
@publish_options
@junit_option
@click.option(
    "--live", type=float, metavar="SECONDS",
    help="With --publish: update the comment with the cells done so far, at most every SECONDS.",
)  # fmt: skip
def command(
    notebook: Path,
    output: Path | None,
    parameter_pairs: tuple[tuple[str, str], ...],
    parameter_yaml: tuple[str, ...],
    parameter_files: tuple[Path, ...],
    allow_unknown: bool,
    kernel: str | None,
    cwd: Path | None,
    timeout: float | None,
    keep_going: bool,
    loggers: str | None,
    tensorboard_dirs: tuple[Path, ...],
    mlflow_experiment: str | None,
    progress: bool | None,
    log_output: bool | None,
    report: bool,
    publish_report: bool,
    target: str,
    storage: str | None,
    marker: str | None,
    new: bool,
    check: bool,
    junit_path: Path | None,
    live: float | None,
    **compare: Any,
) -> None:
    """Execute NOTEBOOK with parameters; write the executed notebook, run.json and metrics.json.

    \b
    Exit codes: 0 success, 1 a cell failed, 2 bad usage or parameters,
    3 notebook unreadable, 6 a --fail-if / --fail-on-regression gate failed,
    124 cell timeout, 130 interrupted, 138 kernel died.
    The executed notebook is written in every case.
    """
    from cml_nb import execute, parameters

    values = parameters.collect(parameter_files, parameter_yaml, parameter_pairs)
    tty = sys.stderr.isatty()
    _sigterm_as_interrupt()
    if publish_report and not report:
        raise click.UsageError("--publish needs the report bundle: drop --no-report")
    publishing = _Publishing(notebook, target, storage, marker, new, check, live, publish_report)
    from cml_nb.errors import OutputWriteError

    try:
        record = execute.run(
            notebook,
            output,
            values,
            kernel=kernel,
            cwd=cwd,
            timeout=timeout,
            keep_going=keep_going,
            allow_unknown=allow_unknown,
            progress_bar=tty if progress is None else progress,
            log_output=(not tty) if log_output is None else log_output,
            raise_on_failure=False,
            hooks=publishing.hooks(),
            loggers=loggers,
            tensorboard_dirs=tensorboard_dirs,
            mlflow_experiment=mlflow_experiment,
        )
    except OutputWriteError:
        publishing.stop_live()
        if report:  # the run left no record: an older bundle beside it must not pass for it
            _discard_stale_bundle(Path(output) if output else execute.default_output(notebook))
        raise
    publishing.stop_live()
    click.echo(timing_summary(record), err=True)
    click.echo(f"executed notebook: {record.output}", err=True)
    from cml_nb.cli.report import write_report_and_compare

    comparison = write_report_and_compare(record, report=report, **compare)
    published = publishing.final(record)
    from cml_nb.ci.finish import finish_run  # JUnit, annotations, job summary, step outputs
    from cml_nb.secrets import looks_secret

    secret_values = [str(v) for k, v in values.items() if looks_secret(k)]
    finish_run(record, junit_path=junit_path, comparison=comparison, published=published,
               report=report, secrets=secret_values)  # fmt: skip
    if not record.succeeded:
        raise execute.failure_error(record)
    if comparison is not None:  # a regression (exit 6) only counts once the run succeeded
        comparison.enforce()


def _discard_stale_bundle(executed: Path) -> None:
    """Remove report.json and report.md of the bundle an earlier run left beside ``executed``."""
    bundle = executed.parent / "report"
    for name in ("report.json", "report.md"):
        with contextlib.suppress(OSError):
            (bundle / name).unlink()


class _Publishing:
    """``--publish`` and ``--live``: the live hook during the run, the final publish after."""

    def __init__(
        self, notebook: Path, target: str, storage: str | None, marker: str | None, new: bool,
        check: bool, live: float | None, enabled: bool,
    ) -> None:  # fmt: skip
        self.enabled, self.check, self.live_seconds = enabled, check, live
        # One marker for live updates and the final report, so the final one replaces them.
        self.options: dict[str, Any] = {"target": target, "storage": storage, "new": new,
                                        "marker": marker or notebook.stem}  # fmt: skip
        self.live: Any = None
        self._workdir: Path | None = None

    def hooks(self) -> list[Any] | None:
        if not (self.enabled and self.live_seconds):
            return None
        import tempfile

        from cml_nb.live import LivePublisher

        self._workdir = Path(tempfile.mkdtemp(prefix="cml-nb-live-"))
        self.live = LivePublisher(self.live_seconds, self._workdir, **self.options)
        return [self.live]

    def stop_live(self) -> None:
        if self.live is None:
            return
        self.live.close()
        if self.live.published:
            self.options["new"] = False  # the run's comment exists now: update it
        import shutil

        shutil.rmtree(self._workdir or "", ignore_errors=True)

    def final(self, record: Any) -> Any:
        if not self.enabled:
            return None
        from cml_nb.errors import CmlNbError
        from cml_nb.publish import publish

        bundle = Path(record.output).parent / "report"
        try:
            result = publish(bundle, check=self.check, **self.options)
        except CmlNbError as error:
            if record.succeeded:
                raise
            # The run's own failure is the more useful exit code; still say why.
            click.secho(f"cml-nb: warning: not published: {error}", err=True, fg="yellow")
            from cml_nb.ci.annotations import Annotator

            Annotator().warning(str(error), file=record.notebook, title="report not published")
            return None
        click.echo(f"{result.action} report comment: {result.url}", err=True)
        return result
