"""Options shared by several verbs (run, sweep)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def parameter_value_options(func: F) -> F:
    """``-p NAME VALUE``, ``-y YAML`` and ``--allow-unknown``."""
    decorators = [
        click.option(
            "-p", "--parameter", "parameter_pairs", nargs=2, multiple=True,
            metavar="NAME VALUE",
            help="Set a parameter; VALUE is a Python/YAML literal (5, 0.1, true, [1,2], text).",
        ),
        click.option(
            "-y", "--parameters-yaml", "parameter_yaml", multiple=True, metavar="YAML",
            help="Parameters as a YAML mapping, e.g. -y 'lr: 0.1'.",
        ),
        click.option(
            "--allow-unknown", is_flag=True,
            help="Inject parameters the notebook's 'parameters' cell does not declare.",
        ),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def parameter_options(func: F) -> F:
    """``-f FILE`` and the :func:`parameter_value_options`."""
    func = parameter_value_options(func)
    return click.option(
        "-f", "--parameters-file", "parameter_files", multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Parameters from a YAML or JSON file (repeatable; later files win).",
    )(func)  # fmt: skip


def junit_option(func: F) -> F:
    """``--junit FILE``: JUnit XML, a test case per executed code cell (docs/ci.md)."""
    return click.option(
        "--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Write JUnit XML here: a test suite per run, a test case per executed code cell.",
    )(func)  # fmt: skip


def execution_options(func: F) -> F:
    """``--kernel``, ``--cwd``, ``--timeout``, ``--keep-going``."""
    decorators = [
        click.option("--kernel", "-k", help="Kernel name (default: the notebook's own)."),
        click.option(
            "--cwd", type=click.Path(file_okay=False, path_type=Path),
            help="Working directory of the kernel (default: the notebook's folder).",
        ),
        click.option(
            "--timeout", type=float, metavar="SECONDS",
            help="Fail a cell that runs longer than this (exit code 124).",
        ),
        click.option(
            "--keep-going", is_flag=True, help="Run every cell even after an error, then fail."
        ),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def logger_options(func: F) -> F:
    """``--loggers``, ``--tensorboard DIR``, ``--mlflow-experiment`` (docs/loggers.md)."""
    decorators = [
        click.option(
            "--loggers", "loggers", metavar="NAMES",
            help="Metric sources to read after the run: tensorboard,dvclive,mlflow "
            "(default: all), or none.",
        ),
        click.option(
            "--tensorboard", "tensorboard_dirs", multiple=True,
            type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
            help="Also read TensorBoard event files under DIR (repeatable; default "
            "runs/, logs/, lightning_logs/ under the kernel's working directory).",
        ),
        click.option(
            "--mlflow-experiment", metavar="NAME",
            help="Read only this MLflow experiment's runs (default: every run started "
            "during this one).",
        ),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func
