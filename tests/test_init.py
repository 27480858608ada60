"""`cml-nb init`: the pipelines it writes are valid CI files whose cml-nb commands exist."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from check_jsonschema import main as check_jsonschema
from cli_walk import all_commands, resolve
from click.testing import CliRunner

from cml_nb.cli import main
from cml_nb.pipelines import PipelineOptions, render

NOTEBOOKS = Path(__file__).parent / "notebooks"
SCHEMAS = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}
FILES = {"github": ".github/workflows/cml-nb.yml", "gitlab": ".gitlab-ci.yml"}

COMBINATIONS = [
    (forge, gpu, sweep, requirements)
    for forge, gpu, sweep, requirements in itertools.product(
        ("github", "gitlab"), (False, True), (False, True), (False, True)
    )
]


def _id(combo: tuple[str, bool, bool, bool]) -> str:
    forge, gpu, sweep, requirements = combo
    return "-".join(
        [forge] + [n for n, on in (("gpu", gpu), ("sweep", sweep), ("req", requirements)) if on]
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree holding one notebook, as the working directory."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    shutil.copy(NOTEBOOKS / "emits_metrics.ipynb", tmp_path / "train.ipynb")
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_TOKEN", "GITLAB_TOKEN", "REPO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _init(*args: str) -> Any:
    return CliRunner().invoke(main, ["init", *args], catch_exceptions=False)


def _generate(repo: Path, combo: tuple[str, bool, bool, bool]) -> Path:
    forge, gpu, sweep, requirements = combo
    args = ["--forge", forge, "--notebook", "train.ipynb"]
    if gpu:
        args += ["--gpu-runner", "aws"]
    if sweep:
        args += ["--sweep", "--shards", "3"]
    if requirements:
        (repo / "requirements.txt").write_text("scikit-learn\n")
    result = _init(*args)
    assert result.exit_code == 0, result.output
    return repo / FILES[forge]


# --- the generated files against the official schemas --------------------------------


@pytest.mark.parametrize("combo", COMBINATIONS, ids=[_id(c) for c in COMBINATIONS])
def test_generated_file_validates_against_the_official_schema(
    repo: Path, combo: tuple[str, bool, bool, bool]
) -> None:
    path = _generate(repo, combo)
    result = CliRunner().invoke(
        check_jsonschema, ["--builtin-schema", SCHEMAS[combo[0]], str(path)]
    )
    assert result.exit_code == 0, result.output + path.read_text()


@pytest.mark.parametrize("forge", ["github", "gitlab"])
def test_schema_check_rejects_a_broken_file(tmp_path: Path, forge: str) -> None:
    # The validation above can fail: a job without steps/script is refused.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x: {runs-on: 3}\n" if forge == "github" else "job: {script: 3}\n"
    )
    result = CliRunner().invoke(check_jsonschema, ["--builtin-schema", SCHEMAS[forge], str(broken)])
    assert result.exit_code == 1


# --- every cml-nb command line they contain exists with those flags --------------------


def _scripts(document: dict[str, Any], forge: str) -> list[str]:
    if forge == "github":
        return [s["run"] for job in document["jobs"].values() for s in job["steps"] if "run" in s]
    return [
        line
        for job in document.values()
        if isinstance(job, dict) and "script" in job
        for line in (*job.get("before_script", []), *job["script"])
    ]


def cml_nb_commands(text: str, forge: str) -> list[list[str]]:
    """Each `cml-nb ...` line of the pipeline, with CI expressions given sample values."""
    found = []
    for script in _scripts(yaml.safe_load(text), forge):
        for line in script.replace("\\\n", " ").splitlines():
            line = re.sub(r"\$\{\{[^}]*\}\}", "7", line)  # ${{ matrix.shard }}
            line = re.sub(r"\$\{?[A-Z_][A-Z0-9_]*\}?", "7", line)  # $SHARD, ${CI_PIPELINE_ID}
            words = shlex.split(line)
            if words and words[0] == "cml-nb":
                found.append(words)
    return found


@pytest.mark.parametrize("combo", COMBINATIONS, ids=[_id(c) for c in COMBINATIONS])
def test_every_cml_nb_command_exists_with_its_flags(
    repo: Path, combo: tuple[str, bool, bool, bool]
) -> None:
    path = _generate(repo, combo)
    commands = cml_nb_commands(path.read_text(), combo[0])
    verbs = {words[1] for words in commands}
    assert ("sweep" if combo[2] else "run") in verbs
    assert ("runner" in verbs) == combo[1]
    for words in commands:
        try:
            resolve(words)
        except click.UsageError as error:
            pytest.fail(f"{shlex.join(words)}: {error.format_message()}")


def test_resolve_rejects_unknown_flags_and_commands() -> None:
    with pytest.raises(click.NoSuchOption):
        resolve(["cml-nb", "run", "train.ipynb", "--no-such-flag"])
    with pytest.raises(click.UsageError):
        resolve(["cml-nb", "frobnicate"])


# --- what a user checks in the files ----------------------------------------------------


def test_github_workflow_has_permissions_history_and_pip_cache(repo: Path) -> None:
    workflow = yaml.safe_load(_generate(repo, ("github", False, False, True)).read_text())
    assert workflow["permissions"] == {"contents": "read"}
    # The publishing job may comment, create checks, and push images (assets branch).
    assert workflow["jobs"]["report"]["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "checks": "write",
    }
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    assert set(workflow[True]) == {"pull_request", "push"}
    steps = workflow["jobs"]["report"]["steps"]
    assert steps[0] == {"uses": "actions/checkout@v4", "with": {"fetch-depth": 0}}
    assert steps[1]["with"]["cache"] == "pip"
    assert steps[1]["with"]["cache-dependency-path"] == "requirements.txt"
    assert "-r requirements.txt" in steps[2]["run"]
    run = next(s for s in steps if "cml-nb run" in s.get("run", ""))
    assert run["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}


def test_github_gpu_jobs_run_on_the_label_the_launch_job_registers(repo: Path) -> None:
    workflow = yaml.safe_load(_generate(repo, ("github", True, True, False)).read_text())
    jobs = workflow["jobs"]
    launch = next(s["run"] for s in jobs["launch-runner"]["steps"] if "launch" in s.get("run", ""))
    label = launch.split("--labels ", 1)[1].strip()  # a GitHub expression, spaces and all
    assert jobs["sweep"]["runs-on"] == ["self-hosted", label]
    assert jobs["sweep"]["needs"] == "launch-runner"
    assert jobs["sweep"]["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert jobs["launch-runner"]["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert jobs["merge"]["runs-on"] == "ubuntu-latest" and jobs["merge"]["needs"] == "sweep"
    assert jobs["merge"]["permissions"]["pull-requests"] == "write"
    assert "permissions" not in jobs["launch-runner"] and "permissions" not in jobs["sweep"]
    env = next(s["env"] for s in jobs["launch-runner"]["steps"] if "env" in s)
    assert env["REPO_TOKEN"] == "${{ secrets.REPO_TOKEN }}"


def test_gitlab_pipeline_runs_for_merge_requests_with_full_history(repo: Path) -> None:
    document = yaml.safe_load(_generate(repo, ("gitlab", True, False, False)).read_text())
    conditions = [rule["if"] for rule in document["workflow"]["rules"]]
    assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in conditions
    assert document["variables"]["GIT_DEPTH"] == "0"
    job = document["cml-nb"]
    assert job["tags"] == ["cml-nb-$CI_PIPELINE_ID"] and job["needs"] == ["launch-runner"]
    assert "--labels cml-nb-$CI_PIPELINE_ID" in document["launch-runner"]["script"][0]
    assert document["stages"] == ["launch", "report"]


# --- the command line -------------------------------------------------------------------


def test_refuses_to_overwrite_without_force(repo: Path) -> None:
    target = repo / ".gitlab-ci.yml"
    target.write_text("mine: {script: [echo]}\n")
    result = CliRunner().invoke(main, ["init", "--forge", "gitlab"])
    assert result.exit_code == 2
    assert "already exists" in result.output and "--force" in result.output
    assert target.read_text() == "mine: {script: [echo]}\n"
    assert _init("--forge", "gitlab", "--force").exit_code == 0
    assert "cml-nb run train.ipynb --publish --check" in target.read_text()


def test_prints_the_secrets_to_add(repo: Path) -> None:
    result = _init("--forge", "github", "--gpu-runner", "aws")
    for name in ("REPO_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert name in result.output
    gitlab = _init("--forge", "gitlab")
    assert "GITLAB_TOKEN" in gitlab.output and "CI_JOB_TOKEN" in gitlab.output
    assert "merge request" in gitlab.output


def test_forge_and_notebook_are_detected(repo: Path) -> None:
    subprocess.run(
        ["git", "remote", "add", "origin", "https://gitlab.example.com/me/p.git"],
        check=True,
        timeout=30,
    )
    result = _init()
    assert result.exit_code == 0, result.output
    assert "cml-nb run train.ipynb --publish --check" in (repo / ".gitlab-ci.yml").read_text()


def test_a_notebook_in_a_subfolder_runs_from_the_root(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "nb").mkdir()
    (repo / "train.ipynb").rename(repo / "nb" / "train.ipynb")
    monkeypatch.chdir(repo / "nb")
    assert _init("--forge", "github", "--notebook", "train.ipynb").exit_code == 0
    assert "cml-nb run nb/train.ipynb --publish --check" in (repo / FILES["github"]).read_text()


def test_a_local_kernel_name_is_replaced_by_python3(repo: Path) -> None:
    nb = json.loads((repo / "train.ipynb").read_text())
    nb["metadata"]["kernelspec"]["name"] = "conda-env-ml-py"
    (repo / "train.ipynb").write_text(json.dumps(nb))
    _init("--forge", "github")
    assert (
        "cml-nb run train.ipynb --kernel python3 --publish --check"
        in (repo / FILES["github"]).read_text()
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--forge", "github", "--notebook", "missing.ipynb"], 3, "not found"),
        (["--notebook", "train.ipynb"], 2, "--forge github"),
        (["--forge", "github", "--output", "ci/cml.yml"], 2, ".github/workflows"),
        (["--forge", "github", "--sweep", "--shards", "1"], 2, "1"),
    ],
)
def test_usage_errors_are_one_actionable_line(
    repo: Path, args: list[str], code: int, message: str
) -> None:
    result = CliRunner().invoke(main, ["init", *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (repo / ".github").exists()


def test_several_notebooks_need_a_choice(repo: Path) -> None:
    shutil.copy(repo / "train.ipynb", repo / "eval.ipynb")
    result = CliRunner().invoke(main, ["init", "--forge", "github"])
    assert result.exit_code == 2 and "--notebook" in result.output


def test_dry_run_prints_and_writes_nothing(repo: Path) -> None:
    result = _init("--forge", "github", "--dry-run")
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["name"] == "cml-nb"
    assert not (repo / ".github").exists()


def test_gitlab_output_elsewhere_says_how_to_include_it(repo: Path) -> None:
    result = _init("--forge", "gitlab", "--output", "ci/cml-nb.yml")
    assert result.exit_code == 0
    assert (repo / "ci" / "cml-nb.yml").is_file() and "include" in result.output


def test_settings_come_from_pyproject(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.cml-nb.init]\nforge = "gitlab"\npython = "3.11"\n')
    assert _init().exit_code == 0
    assert "image: python:3.11" in (repo / ".gitlab-ci.yml").read_text()


# --- the generated jobs' lines run as CI would, publishing to the forge emulator ---------


def _run_lines(lines: list[str], cwd: Path, env: dict[str, str]) -> None:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    full = {**os.environ, **env, "PATH": path, "XDG_CACHE_HOME": str(cwd / ".xdg")}
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=cwd, env=full, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, f"{line}\n{done.stderr}"


def _granted(job: dict[str, Any]) -> set[str]:
    """The write permissions a job's `permissions:` block gives GITHUB_TOKEN, as the
    emulator names them: so the test proves the block is enough."""
    granted = {n.replace("-", "_") for n, level in job["permissions"].items() if level == "write"}
    # GitHub lets `pull-requests: write` comment on a pull request (the endpoint takes
    # Issues *or* Pull requests write); the emulator asks for both, so add `issues`.
    return granted | {"issues"}


def test_gitlab_sweep_pipeline_runs_and_publishes_one_comparison(
    repo: Path, forge_emulator: Any
) -> None:
    from forge_emulator import scenarios

    (repo / "sweep.yaml").write_text("parameters: {epochs: 1}\ngrid: {lr: [0.1, 0.2]}\n")
    assert _init("--forge", "gitlab", "--sweep", "--shards", "2").exit_code == 0
    document = yaml.safe_load((repo / ".gitlab-ci.yml").read_text())
    scenario = scenarios.gitlab(forge_emulator)
    for shard in ("1", "2"):  # the two matrix jobs
        _run_lines(document["sweep"]["script"], repo, {**scenario.env, "SHARD": shard})
    _run_lines(document["merge"]["script"], repo, scenario.env)
    merged = json.loads((repo / "sweeps" / "train" / "sweep.json").read_text())
    assert len(merged["runs"]) == 2
    assert scenario.pull is not None
    (note,) = scenario.pull.comments
    assert "2 runs" in note.body and "lr=0.2" in note.body
    assert scenario.token not in note.body
    assert [x["status"] for x in scenario.repo.statuses] == ["success"]


def test_github_sweep_pipeline_runs_and_publishes_one_comparison(
    repo: Path, forge_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forge_emulator import scenarios

    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    (repo / "sweep.yaml").write_text("parameters: {epochs: 1}\ngrid: {lr: [0.1, 0.2]}\n")
    assert _init("--forge", "github", "--sweep", "--shards", "2").exit_code == 0
    jobs = yaml.safe_load((repo / FILES["github"]).read_text())["jobs"]
    scenario = scenarios.github(forge_emulator, repo, permissions=_granted(jobs["merge"]))
    shard_steps = [s for s in jobs["sweep"]["steps"] if "run" in s][1:]  # after the install
    upload = jobs["sweep"]["steps"][-1]["with"]
    for shard in ("1", "2"):
        lines = [s["run"].replace("${{ matrix.shard }}", shard) for s in shard_steps]
        _run_lines(lines, repo, {})
        # upload-artifact keeps the folder's contents; download-artifact puts each
        # artifact in a folder named after it, under the download path.
        name = upload["name"].replace("${{ matrix.shard }}", shard)
        (repo / upload["path"].replace("${{ matrix.shard }}", shard)).rename(
            repo / "sweep-shards" / name
        )
    download = next(s for s in jobs["merge"]["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["path"] == "sweep-shards"
    for step in [s for s in jobs["merge"]["steps"] if "run" in s][1:]:
        # Only a step that maps secrets.GITHUB_TOKEN into its env gets the token.
        env = {k: v for k, v in scenario.env.items() if k != "GITHUB_TOKEN" or "env" in step}
        _run_lines([step["run"]], repo, env)
    assert scenario.pull is not None
    (comment,) = scenario.pull.comments
    assert "2 runs" in comment.body and scenario.token not in comment.body
    assert len(scenario.repo.check_runs) == 1


def test_github_pipeline_runs_and_comments_on_the_pull_request(
    repo: Path, forge_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forge_emulator import scenarios

    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")  # no need to pace 127.0.0.1
    assert _init("--forge", "github").exit_code == 0
    workflow = yaml.safe_load((repo / FILES["github"]).read_text())
    granted = _granted(workflow["jobs"]["report"])
    scenario = scenarios.github(forge_emulator, repo, permissions=granted)
    step = next(s for s in workflow["jobs"]["report"]["steps"] if "cml-nb run" in s.get("run", ""))
    assert step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    _run_lines([step["run"]], repo, scenario.env)  # scenario.env holds the job's GITHUB_TOKEN
    assert scenario.pull is not None
    (comment,) = scenario.pull.comments
    assert "accuracy" in comment.body and scenario.token not in comment.body
    assert len(scenario.repo.check_runs) == 1


# --- the examples in docs/ci.md are what init writes today ------------------------------

DOCS = Path(__file__).parent.parent / "docs"


@pytest.mark.parametrize("forge", ["github", "gitlab"])
def test_docs_show_the_current_output(forge: str) -> None:
    text = (DOCS / "ci.md").read_text()
    shown = re.search(rf"<!-- init:{forge} -->\n```yaml\n(.*?)```", text, re.DOTALL)
    assert shown is not None, f"docs/ci.md lost its <!-- init:{forge} --> example"
    options = PipelineOptions(forge, "train.ipynb", requirements=("requirements.txt",))
    # The version pinned in the example may lag behind releases.
    version = re.compile(r"\b\d+\.\d+\.\d+[\w.+]*")
    assert version.sub("X", shown.group(1)) == version.sub("X", render(options).text)


# --- docs/configuration.md lists every option of every command --------------------------

START, END = "<!-- options:start -->", "<!-- options:end -->"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def configuration_table() -> str:
    """The generated part of docs/configuration.md."""
    parts = []
    for path, command in all_commands():
        options = [
            p for p in command.params if isinstance(p, click.Option) and p.name and not p.hidden
        ]
        options = [p for p in options if p.name not in ("help", "version")]
        if not options:
            continue
        table = ".".join(path.split())
        env = "CML_NB_" + "_".join(path.upper().replace("-", "_").split())
        parts += [
            f"### `cml-nb {path}`: `[tool.cml-nb.{table}]`, `{env}_<KEY>`",
            "",
            "| key | flag | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for option in options:
            flags = " / ".join(option.opts + option.secondary_opts)
            default = option.get_default(click.Context(command), call=False)
            # click 8.2+ marks "no default" with a sentinel object.
            unset = default is None or callable(default) or repr(default).startswith("Sentinel.")
            if unset or default == ():
                shown = ""
            else:
                shown = f"`{str(default).lower() if isinstance(default, bool) else default}`"
            parts.append(f"| `{option.name}` | `{flags}` | {shown} | {_cell(option.help or '')} |")
        parts.append("")
    return "\n".join(parts)


def test_configuration_doc_lists_every_option() -> None:
    # Every command's table and every option's key and flags; help texts may drift.
    text = (DOCS / "configuration.md").read_text()
    assert START in text and END in text
    documented = text.split(START, 1)[1].split(END, 1)[0]
    missing = [
        line.split(" | ")[0] if line.startswith("|") else line
        for line in configuration_table().splitlines()
        if line.startswith(("### ", "| `")) and line.rsplit(" | ", 2)[0] not in documented
    ]
    assert not missing, (
        f"docs/configuration.md lacks {missing}: regenerate it with `python tests/test_init.py`"
    )


if __name__ == "__main__":
    # Regenerate the option tables of docs/configuration.md.
    path = DOCS / "configuration.md"
    head, rest = path.read_text().split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{configuration_table()}\n{END}{tail}")


def test_outputs_and_environments_are_not_candidates(repo: Path) -> None:
    for folder in ("runs/train", ".venv/lib", "node_modules/x"):
        (repo / folder).mkdir(parents=True)
        shutil.copy(repo / "train.ipynb", repo / folder / "other.ipynb")
    assert _init("--forge", "github").exit_code == 0


def test_default_branch_comes_from_the_clone(repo: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
         "-m", "first"],
        check=True, timeout=30,
    )  # fmt: skip
    subprocess.run(["git", "branch", "-M", "master"], check=True, timeout=30)
    _init("--forge", "github")
    assert yaml.safe_load((repo / FILES["github"]).read_text())[True]["push"] == {
        "branches": ["master"]
    }
