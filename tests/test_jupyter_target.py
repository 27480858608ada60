"""Where the Jupyter faces post, and the developer checkout they post from.

``github_checkout`` builds what a developer has when they press "Post report": a git
working copy of ``octo/demo`` on branch ``feature`` whose HEAD is pushed and is the
head of an open pull request on the forge emulator, plus the shell's variables (a
personal token, ``GITHUB_API_URL`` naming the emulator). The handler, widget and
browser tests import it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from forge_emulator.scenarios import fake_token
from forge_emulator.server import ForgeEmulator
from forge_emulator.state import ALL_PERMISSIONS, Pull, Repo, now
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cml_nb.errors import ConfigError, ForgeAuthError
from cml_nb.jupyter import actions

HEADING = "Churn model: weekly retrain"

#: Variables of CI systems and tokens that would change what is detected.
_FOREIGN = ("GITHUB_", "GITLAB_", "CI_", "GH_TOKEN", "REPO_TOKEN", "CML_NB_")


def executed_notebook(heading: str = HEADING) -> nbformat.NotebookNode:
    """A notebook as saved after running: a heading, printed output."""
    code = new_code_cell("print('accuracy 0.93')", execution_count=1)
    code.outputs = [new_output("stream", name="stdout", text="accuracy 0.93\n")]
    return new_notebook(
        cells=[new_markdown_cell(f"# {heading}\n\nThe model improved this week."), code],
        metadata={
            # Without a kernelspec, Lab opens a "Select Kernel" modal over everything.
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )


def write_executed(path: Path, heading: str = HEADING) -> Path:
    """``executed_notebook(heading)`` saved at ``path``."""
    nbformat.write(executed_notebook(heading), path)
    return path


def developer_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` without CI variables or tokens, plus ``extra``."""
    kept = {k: v for k, v in base.items() if not k.startswith(_FOREIGN)}
    return {**kept, **extra}


@dataclass
class Checkout:
    folder: Path
    notebook: Path
    repo: Repo
    pull: Pull
    token: str
    env: dict[str, str]  # only the variables to add to a clean environment


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args],
        cwd=folder, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout.strip()


def github_checkout(emulator: ForgeEmulator, folder: Path, *, pull: bool = True) -> Checkout:
    """A working copy of ``octo/demo`` whose branch ``feature`` has an open PR on the emulator."""
    folder.mkdir(parents=True, exist_ok=True)
    notebook = write_executed(folder / "demo.ipynb")
    git(folder, "init", "-q", "-b", "feature")
    git(folder, "remote", "add", "origin", "https://github.com/octo/demo.git")
    git(folder, "add", "demo.ipynb")
    git(folder, "commit", "-q", "-m", "retrain")
    sha = git(folder, "rev-parse", "HEAD")
    state = emulator.state
    token = fake_token("ghp_")
    state.add_token(token, "alice", permissions=ALL_PERMISSIONS, app=False, bot=False)
    repo = state.add_repo("github", "octo/demo")
    # "git push": the local commit becomes branch feature on top of main.
    base = repo.head_sha()
    repo.git.commits[sha] = {"tree": repo.git.commits[base]["tree"], "parents": [base],
                             "message": "retrain", "date": now()}  # fmt: skip
    repo.git.refs["heads/feature"] = sha
    opened = state.add_pull(repo, "feature") if pull else None
    env = {"GITHUB_TOKEN": token, "GITHUB_API_URL": emulator.github_api,
           "CML_NB_GITHUB_WRITE_INTERVAL": "0"}  # fmt: skip
    return Checkout(folder, notebook, repo, opened, token, env)  # type: ignore[arg-type]


def use_developer_env(monkeypatch: pytest.MonkeyPatch, extra: Mapping[str, str]) -> None:
    """Make this process's environment a developer shell's: no CI variables, ``extra`` set."""
    for name in list(os.environ):
        if name.startswith(_FOREIGN):
            monkeypatch.delenv(name)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def checkout(forge_emulator: ForgeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``github_checkout`` with this process's environment set as the developer's."""
    made = github_checkout(forge_emulator, tmp_path / "demo")
    use_developer_env(monkeypatch, made.env)
    return made


def test_target_is_the_pull_request_of_the_current_branch(checkout: Checkout) -> None:
    where = actions.describe_target(checkout.notebook)
    assert where["forge"] == "github" and where["repository"] == "octo/demo"
    assert where["kind"] == "pr" and where["number"] == checkout.pull.number
    assert where["description"] == f"pull request #{checkout.pull.number} of octo/demo on GitHub"


def test_lab_settings_override_the_project_file(checkout: Checkout) -> None:
    (checkout.folder / "pyproject.toml").write_text('[tool.cml-nb]\ntarget = "issue/7"\n')
    sha = git(checkout.folder, "rev-parse", "HEAD")
    assert actions.describe_target(checkout.notebook)["kind"] == "issue"
    where = actions.describe_target(checkout.notebook, {"target": "commit", "marker": ""})
    assert where["kind"] == "commit" and where["sha"] == sha


def test_no_token_says_how_to_provide_one(checkout: Checkout, monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    with pytest.raises(ForgeAuthError) as caught:
        actions.describe_target(checkout.notebook)
    assert "GITHUB_TOKEN" in str(caught.value)


def test_outside_a_checkout_says_what_to_set(tmp_path: Path, monkeypatch) -> None:
    use_developer_env(monkeypatch, {})
    notebook = write_executed(tmp_path / "loose.ipynb")
    with pytest.raises(ConfigError) as caught:
        actions.describe_target(notebook)
    assert "--forge" in str(caught.value)
