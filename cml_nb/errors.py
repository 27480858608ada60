"""The cml-nb exception tree and its documented exit codes.

Every failure that a user can cause or fix is a ``CmlNbError``; the CLI prints its
message on one line and exits with its ``exit_code``::

    CmlNbError (1)
    ├── UsageError (2)
    │   ├── ConfigError (2)
    │   ├── ParameterError (2)
    │   ├── KernelNotFoundError (2)
    │   └── MissingDependencyError (2)
    ├── NotebookReadError (3)
    ├── NotebookExecutionError (1)   a cell raised
    │   ├── CellTimeoutError (124)
    │   ├── KernelDiedError (138)
    │   └── RunInterruptedError (130)
    ├── ForgeError (4)
    │   ├── ForgeAuthError (4)
    │   ├── RateLimitedError (4)
    │   └── TargetNotFoundError (4)
    ├── StorageError (4)
    │   └── OutputWriteError (4)   an output file could not be written (disk full)
    ├── CloudError (5)
    ├── SweepFailedError (1)
    └── RegressionError (6)

All of them pickle (sweeps move them between processes).
"""

from __future__ import annotations

from typing import Any

#: Exit codes, as documented in the README ("Troubleshooting by exit code").
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTEBOOK_UNREADABLE = 3
EXIT_FORGE = 4
EXIT_CLOUD = 5
EXIT_REGRESSION = 6
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
EXIT_KERNEL_DIED = 138


def _rebuild(cls: type[CmlNbError], args: tuple[Any, ...], state: dict[str, Any]) -> CmlNbError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class CmlNbError(Exception):
    """Base of every error cml-nb reports to a user."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses carry keyword-only fields; rebuild from the instance dict.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class UsageError(CmlNbError):
    """The command line or configuration asks for something impossible."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A setting in pyproject.toml, the environment or a flag is invalid."""


class ParameterError(UsageError):
    """A notebook parameter is unknown, malformed or of the wrong type."""


class KernelNotFoundError(UsageError):
    """The requested Jupyter kernel is not installed."""


class MissingDependencyError(UsageError):
    """An optional part is used without its extra installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(f"{feature} needs the '{module}' package: pip install 'cml-nb[{extra}]'")
        self.feature, self.extra, self.module = feature, extra, module


class NotebookReadError(CmlNbError):
    """The notebook is missing, unreadable, or not a notebook."""

    exit_code = EXIT_NOTEBOOK_UNREADABLE


class NotebookExecutionError(CmlNbError):
    """A cell failed; the executed notebook and run record were written first.

    Attributes:
        cell_index: index of the failing cell in the executed notebook (0-based).
        ename: the exception's class name, e.g. ``ValueError``.
        evalue: the exception's message.
        traceback: the traceback lines, ANSI codes removed.
        output_path: where the executed notebook was written.
    """

    def __init__(
        self,
        message: str,
        *,
        cell_index: int | None = None,
        ename: str = "",
        evalue: str = "",
        traceback: list[str] | None = None,
        output_path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback or []
        self.output_path = output_path


class CellTimeoutError(NotebookExecutionError):
    """A cell ran longer than the per-cell timeout."""

    exit_code = EXIT_TIMEOUT


class KernelDiedError(NotebookExecutionError):
    """The kernel process died (often out of memory) while a cell ran."""

    exit_code = EXIT_KERNEL_DIED


class RunInterruptedError(NotebookExecutionError):
    """The run was interrupted (Ctrl-C or SIGTERM)."""

    exit_code = EXIT_INTERRUPTED


class ForgeError(CmlNbError):
    """GitHub or GitLab refused or failed a request."""

    exit_code = EXIT_FORGE


class ForgeAuthError(ForgeError):
    """The token is missing, invalid, or lacks a permission."""


class RateLimitedError(ForgeError):
    """The forge kept rate-limiting after every retry."""


class TargetNotFoundError(ForgeError):
    """The repository, pull request, commit or issue does not exist."""


class StorageError(CmlNbError):
    """Images could not be stored where the report links them."""

    exit_code = EXIT_FORGE


class OutputWriteError(StorageError):
    """A run's executed notebook or record could not be written (disk full, permissions)."""


class CloudError(CmlNbError):
    """The cloud provider refused or failed a request."""

    exit_code = EXIT_CLOUD


class SweepFailedError(CmlNbError):
    """One or more runs of a sweep failed (their records are written)."""


class RegressionError(CmlNbError):
    """A metric regressed past the allowed tolerance against the base."""

    exit_code = EXIT_REGRESSION
