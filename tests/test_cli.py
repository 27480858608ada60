"""Every command has help, `--help` stays light, and the docs mention every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cli_walk import all_commands
from click.testing import CliRunner

from cml_nb.cli import VerbGroup, main

ROOT = Path(__file__).parent.parent
ALL = all_commands()
DOCS = (ROOT / "README.md").read_text() + "".join(
    p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))
)


def test_the_walk_finds_nested_and_dispatched_commands() -> None:
    names = {name for name, _ in ALL}
    assert {"run", "sweep merge", "runner launch", "pr create"} <= names


@pytest.mark.parametrize(("name", "command"), ALL, ids=[n for n, _ in ALL])
def test_every_command_has_help(name: str, command: click.Command) -> None:
    assert command.help, f"{name} has no help text"
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize(("name", "command"), ALL, ids=[n for n, _ in ALL])
def test_docs_mention_every_command(name: str, command: click.Command) -> None:
    assert f"cml-nb {name}" in DOCS


@pytest.mark.parametrize("name", ["", *(n for n, _ in ALL)], ids=["main", *(n for n, _ in ALL)])
def test_help_imports_no_heavy_module(name: str) -> None:
    code = (
        "import sys; from cml_nb.cli import main\n"
        f"try:\n    main({[*name.split(), '--help']!r})\nexcept SystemExit:\n    pass\n"
        "heavy = {'papermill', 'nbformat', 'github', 'gitlab', 'boto3', 'matplotlib', 'yaml',"
        " 'dask', 'jupyter_server', 'nbconvert', 'pandas', 'tensorboard', 'mlflow', 'dvc',"
        " 'dvclive'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CML_NB_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_command_lists_known_ones() -> None:
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "No such command" in result.output
    assert isinstance(main, VerbGroup)
