"""docs/sweep.md: its CI examples are valid pipelines and its commands parse with the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from cli_walk import resolve

DOC = Path(__file__).resolve().parent.parent / "docs" / "sweep.md"
# CI substitutes these before the shell runs; any shard index will do here.
SUBSTITUTIONS = {"${{ matrix.shard }}": "1", "$SHARD": "1"}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def shell_lines(value: Any) -> list[str]:
    """Every string under ``run:`` or ``script:`` keys of a pipeline."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("run", "script") and isinstance(item, str):
                found.append(item)
            elif key == "script" and isinstance(item, list):
                found.extend(str(line) for line in item)
            else:
                found.extend(shell_lines(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(shell_lines(item))
    return found


def cml_nb_commands(text: str) -> list[list[str]]:
    for old, new in SUBSTITUTIONS.items():
        text = text.replace(old, new)
    words = [shlex.split(line) for line in text.replace(">\n", " ").splitlines() if line.strip()]
    return [w for w in words if w and w[0] == "cml-nb"]


def all_commands() -> list[list[str]]:
    found = [c for text in blocks("bash") for c in cml_nb_commands(text)]
    for text in blocks("yaml"):
        for line in shell_lines(yaml.safe_load(text)):
            found.extend(cml_nb_commands(" ".join(line.split())))
    return found


def test_the_doc_shows_both_ci_examples() -> None:
    pipelines = [yaml.safe_load(text) for text in blocks("yaml")]
    github = next(p for p in pipelines if "jobs" in p)
    gitlab = next(p for p in pipelines if "stages" in p)
    assert github["jobs"]["sweep"]["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    assert gitlab["sweep"]["parallel"]["matrix"] == [{"SHARD": ["1", "2", "3", "4"]}]


@pytest.mark.parametrize(("schema", "key"), [("github-workflows", "jobs"), ("gitlab-ci", "stages")])
def test_ci_examples_validate_against_the_vendors_schemas(schema: str, key: str) -> None:
    from check_jsonschema.builtin_schemas import get_builtin_schema
    from jsonschema import Draft7Validator

    pipeline = next(yaml.safe_load(t) for t in blocks("yaml") if key in yaml.safe_load(t))
    if True in pipeline:  # YAML 1.1 reads the key `on` as true; GitHub reads it as "on"
        pipeline["on"] = pipeline.pop(True)
    # The schemas use formats and $refs within themselves only: no network is needed.
    validator = Draft7Validator(get_builtin_schema(f"vendor.{schema}"))
    errors = sorted(validator.iter_errors(pipeline), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_every_command_in_the_doc_parses() -> None:
    commands = all_commands()
    assert {" ".join(c[:2]) for c in commands} >= {"cml-nb sweep", "cml-nb publish"}
    assert any(c[:3] == ["cml-nb", "sweep", "merge"] for c in commands)
    for words in commands:
        try:
            resolve(words)
        except click.UsageError as error:
            pytest.fail(f"{shlex.join(words)}: {error.format_message()}")
