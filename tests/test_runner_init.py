"""`cml-nb init --gpu-runner gcp|azure`: valid pipelines with each cloud's OIDC login.

The files are checked with the same official schemas (check-jsonschema's vendored
GitHub workflow and GitLab CI schemas) and the same command-line resolution as
tests/test_init.py does for AWS.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from check_jsonschema import main as check_jsonschema
from cli_walk import resolve
from click.testing import CliRunner
from test_init import FILES, NOTEBOOKS, SCHEMAS, _init, cml_nb_commands

CASES = [(f, c, s) for f in ("github", "gitlab") for c in ("gcp", "azure") for s in (False, True)]
LOGIN = {"gcp": "google-github-actions/auth@v2", "azure": "azure/login@v2"}


@pytest.fixture(name="repo")
def repo_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree holding one notebook, as the working directory (as in test_init)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    shutil.copy(NOTEBOOKS / "emits_metrics.ipynb", tmp_path / "train.ipynb")
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_TOKEN", "GITLAB_TOKEN", "REPO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _generate(cloud: str, forge: str, sweep: bool, *more: str) -> Any:
    args = ["--forge", forge, "--notebook", "train.ipynb", "--gpu-runner", cloud, *more]
    result = _init(*args, *(["--sweep", "--shards", "2"] if sweep else []))
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(("forge", "cloud", "sweep"), CASES)
def test_pipeline_validates_and_its_launch_command_parses(
    repo: Path, forge: str, cloud: str, sweep: bool
) -> None:
    _generate(cloud, forge, sweep)
    path = repo / FILES[forge]
    checked = CliRunner().invoke(check_jsonschema, ["--builtin-schema", SCHEMAS[forge], str(path)])
    assert checked.exit_code == 0, checked.output + path.read_text()
    launches = [
        w for w in cml_nb_commands(path.read_text(), forge) if w[1:3] == ["runner", "launch"]
    ]
    assert launches and all(w[w.index("--cloud") + 1] == cloud for w in launches)
    for words in cml_nb_commands(path.read_text(), forge):
        try:
            resolve(words)
        except click.UsageError as error:
            pytest.fail(f"{shlex.join(words)}: {error.format_message()}")


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_github_launch_job_logs_in_with_oidc_and_installs_the_extra(repo: Path, cloud: str) -> None:
    result = _generate(cloud, "github", False)
    job = yaml.safe_load((repo / FILES["github"]).read_text())["jobs"]["launch-runner"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    uses = [s.get("uses") for s in job["steps"]]
    run = [s.get("run", "") for s in job["steps"]]
    assert LOGIN[cloud] in uses
    assert uses.index(LOGIN[cloud]) < run.index(next(r for r in run if "runner launch" in r))
    assert any(f"cml-nb[{cloud}]==" in r for r in run)
    assert "AWS_SECRET_ACCESS_KEY" not in (repo / FILES["github"]).read_text()
    default_region = {"gcp": "us-central1", "azure": "eastus"}[cloud]
    assert f"--region {default_region}" in next(r for r in run if "runner launch" in r)
    secrets = {"gcp": ["GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_SERVICE_ACCOUNT"],
               "azure": ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP"]}[cloud]  # fmt: skip
    for name in ["REPO_TOKEN", *secrets]:
        assert name in result.output


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_gitlab_launch_job_gets_an_id_token(repo: Path, cloud: str) -> None:
    _generate(cloud, "gitlab", False, "--region", "europe-west4")
    job = yaml.safe_load((repo / FILES["gitlab"]).read_text())["launch-runner"]
    ((name, token),) = job["id_tokens"].items()
    assert name == f"{cloud.upper()}_ID_TOKEN" and token["aud"]
    assert job["script"][0].startswith(f'echo "${name}" > /tmp/')
    assert "--region europe-west4" in job["script"][-1]
    assert any(f"cml-nb[{cloud}]==" in line for line in job["before_script"])
    if cloud == "azure":
        assert job["variables"] == {"AZURE_FEDERATED_TOKEN_FILE": "/tmp/azure-oidc-token"}
