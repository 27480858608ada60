"""action.yml: valid against GitHub's schema, and its steps' commands run as the runner would.

The runner substitutes ``${{ ... }}`` expressions, then runs each ``run:`` with
``bash -e {0}`` (docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax#jobsjob_idstepsshell),
with the step's ``env:``. This test does the same: the install step into a fresh
virtual environment, the run step on a notebook against the forge emulator.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml
from check_jsonschema import main as check_jsonschema
from click.testing import CliRunner
from forge_emulator import scenarios

ROOT = Path(__file__).parent.parent
ACTION = ROOT / "action.yml"
NOTEBOOKS = Path(__file__).parent / "notebooks"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text())  # type: ignore[no-any-return]


def test_action_validates_against_the_github_actions_schema() -> None:
    result = CliRunner().invoke(
        check_jsonschema, ["--builtin-schema", "vendor.github-actions", str(ACTION)]
    )
    assert result.exit_code == 0, result.output


def test_the_schema_check_rejects_a_broken_action(tmp_path: Path) -> None:
    broken = _action()
    broken["runs"]["steps"][0].pop("shell")  # composite run steps must name their shell
    path = tmp_path / "action.yml"
    path.write_text(yaml.safe_dump(broken))
    result = CliRunner().invoke(
        check_jsonschema, ["--builtin-schema", "vendor.github-actions", str(path)]
    )
    assert result.exit_code != 0


def test_inputs_reach_the_shell_only_through_env() -> None:
    # An input spliced into the script text could inject commands (a notebook named
    # `$(curl ...)`); through env: it is data.
    for step in _action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]


def _substitute(text: str, context: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return context[match.group(1)]

    return EXPRESSION.sub(value, text)


def _inputs(given: dict[str, str], token: str) -> dict[str, str]:
    context = {"github.action_path": str(ROOT), "github.token": token}
    values = {}
    for name, spec in _action()["inputs"].items():
        default = str(spec.get("default", ""))
        values[f"inputs.{name}"] = given.get(name, _substitute(default, context))
    return {**context, **values}


def _venv(tmp_path: Path) -> Path:
    """A fresh environment that sees this one's packages (.pth), so pip needs no network."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    Path(site, "outer.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


@pytest.mark.timeout(280)
def test_the_steps_install_run_publish_and_set_the_outputs(forge_emulator, tmp_path: Path) -> None:
    s = scenarios.github(forge_emulator, tmp_path)
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "emits_metrics.ipynb", work / "train.ipynb")
    venv = _venv(tmp_path)
    outputs, summary = tmp_path / "outputs.txt", tmp_path / "summary.md"
    env = {
        **os.environ,
        **s.env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(work),
        "CML_NB_GITHUB_WRITE_INTERVAL": "0",
        # No network, no Node: build with this environment's hatchling, skip the frontend.
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_NO_INDEX": "1",
        "CML_NB_SKIP_LABEXTENSION": "1",
    }
    env.pop("GITHUB_TOKEN")  # the action's token input sets it
    context = _inputs(
        {"notebook": "train.ipynb", "parameters": "{epochs: 2, name: 'a b; $(touch x)'}"},
        s.token,
    )
    for step in _action()["runs"]["steps"]:
        step_env = {k: _substitute(str(v), context) for k, v in (step.get("env") or {}).items()}
        assert step["shell"] == "bash"
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]], cwd=work, env={**env, **step_env},
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, f"{step['name']}:\n{done.stdout}\n{done.stderr}"
    installed = venv / "lib"
    assert list(installed.glob("python*/site-packages/cml_nb*")), "not installed in the venv"
    assert not (work / "x").exists()  # the parameter was data, not a command
    written = _read_outputs(outputs)
    assert written["status"] == "succeeded"
    (comment,) = s.pull.comments
    assert written["report-url"].startswith("http") and "accuracy" in comment.body
    # The composite's outputs read exactly what cml-nb wrote.
    for name, spec in _action()["outputs"].items():
        assert spec["value"] == f"${{{{ steps.run.outputs.{name} }}}}" and name in written
    assert (work / "runs" / "junit.xml").is_file()
    assert "## Report: train.ipynb" in summary.read_text()


def _read_outputs(path: Path) -> dict[str, str]:
    """``name<<DELIM`` blocks as the runner parses $GITHUB_OUTPUT."""
    values: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        name, delimiter = line.split("<<", 1)
        body = []
        for inner in lines:
            if inner == delimiter:
                break
            body.append(inner)
        values[name] = "\n".join(body)
    return values


# --- cml-nb init --use-action -------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    shutil.copy(NOTEBOOKS / "emits_metrics.ipynb", tmp_path / "train.ipynb")
    (tmp_path / "requirements.txt").write_text("scikit-learn\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _init(*args: str) -> Any:
    from cml_nb.cli import main

    return CliRunner().invoke(main, ["init", *args])


def test_init_use_action_writes_a_valid_workflow_that_uses_the_action(repo: Path) -> None:
    result = _init("--forge", "github", "--notebook", "train.ipynb", "--use-action")
    assert result.exit_code == 0, result.output
    path = repo / ".github" / "workflows" / "cml-nb.yml"
    check = CliRunner().invoke(
        check_jsonschema, ["--builtin-schema", "vendor.github-workflows", str(path)]
    )
    assert check.exit_code == 0, check.output
    steps = yaml.safe_load(path.read_text())["jobs"]["report"]["steps"]
    (step,) = [s for s in steps if "uses" in s and s["uses"].startswith("cml-nb/cml-nb@")]
    assert step["with"]["notebook"] == "train.ipynb"
    assert set(step["with"]) <= set(_action()["inputs"])  # only inputs the action declares
    names = [s.get("name") for s in steps]
    assert "Install requirements" in names and "Install cml-nb" not in names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--forge", "gitlab"], "--use-action is for GitHub Actions"),
        (["--forge", "github", "--sweep"], "--use-action runs one notebook"),
    ],
)
def test_init_use_action_refuses_what_it_cannot_do(
    repo: Path, args: list[str], message: str
) -> None:
    result = _init(*args, "--notebook", "train.ipynb", "--use-action")
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
