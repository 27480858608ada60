"""DVC repositories: `cml-nb init` pulls the data, history reads DVC's metrics files, and
the report lists the DVC-tracked data that changed against the base.

Repositories are real: `git init`, `dvc init`, `dvc add`, commits; no DVC remote is
needed for any of it (the pipeline's `dvc pull` is checked as a generated line).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import click
import dvc.repo  # noqa: F401  (the dev extra installs it: a missing install fails, never skips)
import nbformat
import pytest
import yaml
from check_jsonschema import main as check_jsonschema
from cli_walk import resolve
from click.testing import CliRunner

from cml_nb.cli import main
from tests.test_history import git
from tests.test_init import SCHEMAS, cml_nb_commands

NOTEBOOK_CELLS = (
    "lr = 0.1\nepochs = 2",  # the parameters cell
    "import cml_nb\ncml_nb.log_metric('train/loss', 0.25)",
)


def dvc(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, check=True, timeout=120,
                   capture_output=True)  # fmt: skip


def notebook(root: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(s) for s in NOTEBOOK_CELLS]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = root / "train.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def dvc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    dvc(root, "init", "-q")
    notebook(root)
    monkeypatch.chdir(root)
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN", "REPO_TOKEN", "CI_JOB_TOKEN",
                 "GITHUB_BASE_REF", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return root


# --- cml-nb init ------------------------------------------------------------------------


@pytest.mark.parametrize("forge", ["github", "gitlab"])
def test_init_pulls_dvc_data_with_the_remote_credentials(dvc_repo: Path, forge: str) -> None:
    dvc(dvc_repo, "remote", "add", "-d", "storage", "s3://bucket/data")
    (dvc_repo / "params.yaml").write_text("lr: 0.2\nepochs: 3\n")
    result = CliRunner().invoke(main, ["init", "--forge", forge, "--notebook", "train.ipynb"])
    assert result.exit_code == 0, result.output
    path = dvc_repo / (".github/workflows/cml-nb.yml" if forge == "github" else ".gitlab-ci.yml")
    text = path.read_text()
    document = yaml.safe_load(text)
    if forge == "github":
        steps = document["jobs"]["report"]["steps"]
        names = [s.get("name") for s in steps]
        pull = steps[names.index("Pull DVC data")]
        assert names.index("Pull DVC data") < names.index("Run and publish")
        assert pull["run"] == "dvc pull"
        assert pull["env"]["AWS_ACCESS_KEY_ID"] == "${{ secrets.AWS_ACCESS_KEY_ID }}"
        install = next(s["run"] for s in steps if s.get("name") == "Install cml-nb")
    else:
        job = document["cml-nb"]
        assert job["script"][0] == "dvc pull"
        install = job["before_script"][-1]
    assert "'dvc[s3]'" in install
    runs = [w for w in cml_nb_commands(text, forge) if w[1] == "run"]
    assert runs and runs[0][2:5] == ["train.ipynb", "-f", "params.yaml"]
    for words in cml_nb_commands(text, forge):
        try:
            resolve(words)
        except click.UsageError as error:
            pytest.fail(f"{shlex.join(words)}: {error.format_message()}")
    # The printed hints name the remote's credentials as secrets to add.
    assert "AWS_ACCESS_KEY_ID" in result.output and "AWS_SECRET_ACCESS_KEY" in result.output
    assert "dvc pull" in result.output
    checked = CliRunner().invoke(check_jsonschema, ["--builtin-schema", SCHEMAS[forge], str(path)])
    assert checked.exit_code == 0, checked.output


def test_init_leaves_out_a_params_file_the_notebook_does_not_declare(dvc_repo: Path) -> None:
    (dvc_repo / "params.yaml").write_text("lr: 0.2\nbatch_size: 64\n")
    result = CliRunner().invoke(main, ["init", "--forge", "github", "--notebook", "train.ipynb"])
    assert result.exit_code == 0, result.output
    text = (dvc_repo / ".github/workflows/cml-nb.yml").read_text()
    assert "-f params.yaml" not in text and "dvc pull" in text
    assert "params.yaml is not passed to the notebook (batch_size" in result.output
    assert "DVC has no remote URL" in result.output  # no remote configured: said, not guessed


# --- history and the report -------------------------------------------------------------


def test_report_shows_dvc_metrics_base_and_the_data_that_changed(dvc_repo: Path) -> None:
    (dvc_repo / "data.csv").write_text("x,y\n1,2\n")
    (dvc_repo / "labels.csv").write_text("a\n")
    dvc(dvc_repo, "add", "-q", "data.csv", "labels.csv")
    (dvc_repo / "dvc.yaml").write_text("metrics:\n- dvclive/metrics.json\n")
    (dvc_repo / "dvclive").mkdir()
    (dvc_repo / "dvclive" / "metrics.json").write_text('{"train": {"loss": 0.5}, "step": 2}')
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "base: data and DVC metrics")
    git(dvc_repo, "checkout", "-q", "-b", "change")
    (dvc_repo / "data.csv").write_text("x,y\n1,2\n3,4\n")
    dvc(dvc_repo, "add", "-q", "data.csv")
    git(dvc_repo, "commit", "-q", "-am", "more data")

    result = CliRunner().invoke(main, ["run", "train.ipynb", "-o", "out/train.ipynb",
                                       "--compare-to", "main", "--goal", "train/loss=min"])  # fmt: skip
    assert result.exit_code == 0, result.output
    markdown = (dvc_repo / "out" / "report" / "report.md").read_text()
    assert "| train/loss | 0.25 | 0.5 | -0.25 (-50.0%) 🟢 |" in markdown
    assert "Base: DVC metrics (dvc.yaml) at main" in markdown
    assert "### DVC-tracked data against main" in markdown
    assert "| data.csv | modified |" in markdown and "labels.csv" not in markdown
    report = json.loads((dvc_repo / "out" / "report" / "report.json").read_text())
    [change] = report["extra"]["dvc_diff"]["changes"]
    assert change["path"] == "data.csv" and change["old"] != change["new"]


def test_report_says_when_no_dvc_data_changed(dvc_repo: Path) -> None:
    (dvc_repo / "data.csv").write_text("x\n1\n")
    dvc(dvc_repo, "add", "-q", "data.csv")
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "base")
    git(dvc_repo, "commit", "-q", "--allow-empty", "-m", "no data change")
    result = CliRunner().invoke(main, ["run", "train.ipynb", "-o", "out/train.ipynb",
                                       "--compare-to", "HEAD~1", "--loggers", "none"])  # fmt: skip
    assert result.exit_code == 0, result.output
    markdown = (dvc_repo / "out" / "report" / "report.md").read_text()
    assert "No DVC-tracked data changed against HEAD~1." in markdown


def test_init_with_the_action_installs_dvc_for_the_pull(dvc_repo: Path) -> None:
    dvc(dvc_repo, "remote", "add", "-d", "storage", "gs://bucket/data")
    (dvc_repo / "params.yaml").write_text("lr: 0.2\n")
    result = CliRunner().invoke(
        main, ["init", "--forge", "github", "--notebook", "train.ipynb", "--use-action"]
    )
    assert result.exit_code == 0, result.output
    steps = yaml.safe_load((dvc_repo / ".github/workflows/cml-nb.yml").read_text())["jobs"][
        "report"
    ]["steps"]
    pull = next(s for s in steps if s.get("name") == "Pull DVC data")
    assert pull["run"] == "python -m pip install 'dvc[gs]' && dvc pull"
    assert list(pull["env"]) == ["GOOGLE_APPLICATION_CREDENTIALS"]
    assert "params.yaml is not passed by the action" in result.output
