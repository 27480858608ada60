"""``cml-nb sweep``: run a notebook over a space of parameters; ``cml-nb sweep merge`` joins shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cml_nb.cli._options import execution_options, junit_option, parameter_value_options


class SweepCommand(click.Command):
    """``cml-nb sweep NOTEBOOK ...``, which hands ``cml-nb sweep merge ...`` to ``merge``."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """The ``merge`` command's context when the first argument is ``merge``."""
        if args and args[0] == "merge":
            # A context for "sweep" itself, so [tool.cml-nb.sweep.merge] settings apply.
            outer = click.Context(self, info_name=info_name, parent=parent)
            return merge.make_context("merge", args[1:], parent=outer, **extra)
        return super().make_context(info_name, args, parent, **extra)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Both spellings: ``sweep NOTEBOOK`` and ``sweep merge DIR...``."""
        super().format_usage(ctx, formatter)
        formatter.write_usage(ctx.command_path, "merge [OPTIONS] DIR...")


def _progress(entry: Any, done: int, total: int) -> None:
    how = "cached" if entry.cached else f"{entry.duration:.1f} s"
    shown = ", ".join(
        f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in entry.metrics.items()
    )
    line = f"[{done}/{total}] {entry.name}: {entry.status} ({how})" + (
        f"  {shown}" if shown else ""
    )
    if entry.message:
        line += f"  {entry.message}"
    click.echo(line, err=True)


def _finish(result: Any, allow_failures: bool, junit_path: Path | None = None) -> None:
    from cml_nb.ci.finish import finish_sweep  # JUnit of every run, annotations
    from cml_nb.sweep import runner

    finish_sweep(result, junit_path)

    pruned = len(result.pruned)
    ok = len(result.runs) - len(result.failed) - pruned
    cached = sum(1 for r in result.runs if r.cached)
    click.echo(
        f"{len(result.runs)} runs: {ok} succeeded, {len(result.failed)} failed"
        + (f", {pruned} pruned" if pruned else "")
        + f" ({result.executed} executed, {cached} reused from the cache)",
        err=True,
    )
    best = result.best()
    if best is not None:
        click.echo(f"best by {result.metric} ({result.goal}): {best.name}", err=True)
    report = Path(result.folder) / runner.REPORT_DIR / "report.html"
    if report.exists():
        click.echo(f"comparison report: {report}", err=True)
    click.echo(f"sweep: {Path(result.folder) / runner.SWEEP_FILE}", err=True)
    if result.failed and not allow_failures:
        raise runner.failure_error(result)


@click.command(cls=SweepCommand)
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option(
    "-g",
    "--grid",
    "grid_options",
    multiple=True,
    metavar="NAME=V1,V2,...",
    help="Sweep NAME over these values (repeat for a cartesian grid), e.g. -g lr=0.1,0.01.",
)
@click.option(
    "-f",
    "--sweep-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML space with grid:, random: (n, seed, parameters), list: and fixed parameters:;"
    " or a search: method: tpe|random|cmaes|grid, trials:, typed parameters: (docs/sweep.md).",
)
@parameter_value_options  # fixed for every run (-f names the sweep file here)
@execution_options
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Sweep folder (default sweeps/<name>): runs/<params>/, sweep.json and report/.",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Runs at a time (default: CPUs).")
@click.option(
    "--executor",
    default="local",
    show_default=True,
    help="Where runs execute: local (process pool) or dask (or a plugin's name).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster).",
)
@click.option("--metric", help="Metric that ranks the runs (a search optimises it), e.g. accuracy.")
@click.option(
    "--goal",
    type=click.Choice(["max", "min"]),
    help="Whether a higher or a lower --metric is better (default: the search file's, else max).",
)
@click.option(
    "--dep",
    "deps",
    multiple=True,
    type=click.Path(path_type=Path),
    help="An input file or folder whose content is part of the cache key (repeatable).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run cache folder (default ~/.cache/cml-nb/runs); CI caches can carry it.",
)
@click.option("--cache/--no-cache", default=True, help="Reuse and store finished runs.")
@click.option("--force", is_flag=True, help="Execute every run even when it is cached.")
@click.option("--shard", metavar="K/N", help="Run only the K-th of N shares (CI matrices).")
@click.option("--report/--no-report", default=True, help="Write the comparison report.")
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when some runs failed.")
@junit_option
def command(
    notebook: Path,
    grid_options: tuple[str, ...],
    sweep_file: Path | None,
    parameter_pairs: tuple[tuple[str, str], ...],
    parameter_yaml: tuple[str, ...],
    allow_unknown: bool,
    kernel: str | None,
    cwd: Path | None,
    timeout: float | None,
    keep_going: bool,
    output: Path | None,
    jobs: int | None,
    executor: str,
    scheduler: str | None,
    metric: str | None,
    goal: str | None,
    deps: tuple[Path, ...],
    cache_dir: Path | None,
    cache: bool,
    force: bool,
    shard: str | None,
    report: bool,
    allow_failures: bool,
    junit_path: Path | None,
) -> None:
    """Run NOTEBOOK once per configuration of a parameter space and compare the runs.

    \b
    cml-nb sweep train.ipynb -g lr=0.1,0.01 -g depth=3,5 -j 2 --metric accuracy
    cml-nb sweep train.ipynb -f sweep.yaml --shard 1/4      (one CI matrix job)
    cml-nb sweep merge shard-*/ -o sweeps/train             (join the shards)

    Each run gets runs/<params>/ (executed notebook, run.json, metrics.json);
    sweep.json lists them and report/ compares them. Finished runs are cached by
    notebook code, parameters, kernel and --dep contents: a rerun executes only
    what changed or failed. Exit codes: 0 all runs succeeded (or --allow-failures),
    1 a run failed, 2 bad usage or parameters, 3 notebook unreadable.
    """
    from cml_nb import parameters
    from cml_nb.cli.run import _sigterm_as_interrupt
    from cml_nb.sweep import runner, search, space

    _sigterm_as_interrupt()  # a cancelled CI job still gets its sweep.json

    sweep_space = search.read_sweep_file(sweep_file) if sweep_file else space.SweepSpace()
    options = {"scheduler": scheduler} if scheduler else {}
    if isinstance(sweep_space, search.SearchSpec):
        from cml_nb.errors import ConfigError
        from cml_nb.sweep.study import run_search

        if grid_options or shard:
            raise ConfigError(
                f"{'-g' if grid_options else '--shard'} does not apply to a search "
                f"(method: {sweep_space.method}): put every parameter in the sweep file, "
                "and spread trials with -j or --executor dask"
            )
        sweep_space.fixed.update(parameters.collect((), parameter_yaml, parameter_pairs))
        result = run_search(
            notebook, sweep_space, output, executor=executor,
            jobs=jobs or (None if executor == "dask" and scheduler else runner.cpu_count()),
            executor_options=options, kernel=kernel, cwd=cwd, timeout=timeout,
            allow_unknown=allow_unknown, keep_going=keep_going, deps=deps, cache_dir=cache_dir,
            use_cache=cache, force=force, metric=metric, goal=goal, report=report,
            progress=_progress,
        )  # fmt: skip
        _finish(result, allow_failures, junit_path)
        return
    for option in grid_options:
        name, values = space.parse_grid_option(option)
        sweep_space.grid[name] = values
    sweep_space.fixed.update(parameters.collect((), parameter_yaml, parameter_pairs))
    result = runner.run_sweep(
        notebook,
        sweep_space,
        output,
        executor=executor,
        jobs=jobs or (None if executor == "dask" and scheduler else runner.cpu_count()),
        executor_options=options,
        kernel=kernel,
        cwd=cwd,
        timeout=timeout,
        allow_unknown=allow_unknown,
        keep_going=keep_going,
        deps=deps,
        cache_dir=cache_dir,
        use_cache=cache,
        force=force,
        shard_spec=space.parse_shard(shard) if shard else None,
        metric=metric,
        goal=goal or "max",
        report=report,
        progress=_progress,
    )
    _finish(result, allow_failures, junit_path)


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the merged sweep (runs/, sweep.json, report/).",
)
@click.option("--metric", help="Metric that ranks the runs (default: the shards' own).")
@click.option(
    "--goal", type=click.Choice(["max", "min"]), help="max or min (default: the shards')."
)
@click.option("--report/--no-report", default=True, help="Write the comparison report.")
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when some runs failed.")
@junit_option
def merge(
    folders: tuple[Path, ...],
    output: Path,
    metric: str | None,
    goal: str | None,
    report: bool,
    allow_failures: bool,
    junit_path: Path | None,
) -> None:
    """Join the sweep folders of CI shards (cml-nb sweep --shard K/N) into one sweep and report."""
    from cml_nb.sweep.merge import merge_sweeps

    result = merge_sweeps(folders, output, metric=metric, goal=goal, report=report)
    _finish(result, allow_failures, junit_path)
