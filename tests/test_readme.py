"""The README's commands exist with their flags, and its quick start works."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
from cli_walk import resolve, shell_commands
from click.testing import CliRunner

from cml_nb.cli import main

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = [(doc.name, words) for doc in DOCUMENTS for words in shell_commands(doc.read_text())]


def test_the_readme_shows_many_commands() -> None:
    verbs = {words[1] for doc, words in COMMANDS if doc == "README.md"}
    assert verbs >= {"run", "report", "publish", "pr", "sweep", "history", "runner", "init"}


@pytest.mark.parametrize(
    ("doc", "words"), COMMANDS, ids=[f"{d}:{shlex.join(w)[:60]}" for d, w in COMMANDS]
)
def test_documented_command_lines_parse(doc: str, words: list[str]) -> None:
    try:
        resolve(words)
    except click.UsageError as error:
        pytest.fail(f"{doc}: {shlex.join(words)}: {error.format_message()}")


def _quick_start() -> str:
    section = README.split("## Quick start", 1)[1]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)[0].strip()


def test_quick_start_installs_and_runs_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The install step is what .ci/run does on a fresh machine; here we check the command
    # names the example and run its cml-nb part for real, as a new user would.
    command = _quick_start()
    assert "pip install '.[examples]'" in command
    run = [shlex.split(part) for part in command.split("&&") if "cml-nb" in part]
    assert run == [["cml-nb", "run", "example_notebooks/train.ipynb"]]
    shutil.copytree(ROOT / "example_notebooks", tmp_path / "example_notebooks")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, run[0][1:])
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "train"
    assert json.loads((out / "run.json").read_text())["status"] == "succeeded"
    assert (out / "metrics.json").exists() and (out / "train.ipynb").exists()
    assert (out / "report" / "report.html").exists()
