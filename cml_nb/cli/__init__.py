"""The ``cml-nb`` command line: one module per verb in this package.

Each module ``cml_nb/cli/<verb>.py`` defines a click command (or group) named
``command``; the group below finds them without importing them, so ``cml-nb --help``
only imports click and the small command modules, never papermill or the forges.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from typing import Any

import click

from cml_nb import __version__
from cml_nb.errors import EXIT_INTERRUPTED, CmlNbError


def _verbs() -> list[str]:
    return sorted(
        info.name.replace("_", "-")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    )


class VerbGroup(click.Group):
    """A group whose commands live in sibling modules, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every verb module's name, without importing it."""
        return _verbs()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the verb's module on first use."""
        if cmd_name not in _verbs():
            return None
        module = importlib.import_module(f"{__name__}.{cmd_name.replace('-', '_')}")
        command: click.Command = module.command
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Run the verb; a CmlNbError becomes one line and its exit code."""
        try:
            return super().invoke(ctx)
        except CmlNbError as error:
            click.secho(f"cml-nb: error: {error}", err=True, fg="red")
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.secho("cml-nb: interrupted", err=True, fg="red")
            ctx.exit(EXIT_INTERRUPTED)


@click.group(
    cls=VerbGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "CML_NB"},
)
@click.version_option(__version__, prog_name="cml-nb")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Continuous machine learning for Jupyter notebooks.

    Run a notebook with parameters, turn it into a report, publish the report to
    the pull request, sweep parameters, and launch GPU runners. Settings come from
    [tool.cml-nb] in pyproject.toml, then CML_NB_* variables, then flags.
    """
    from cml_nb import config
    from cml_nb._imports import skip_unused_format_checkers

    skip_unused_format_checkers()
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.default_map = config.command_defaults(_verbs())
