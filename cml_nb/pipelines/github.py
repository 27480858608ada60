"""GitHub Actions: ``.github/workflows/cml-nb.yml``.

Jobs: ``report`` (run and publish), or ``sweep`` (a matrix of shards, each
uploading its folder as an artifact) and ``merge`` (download, join, publish); with a
GPU runner, ``launch-runner`` first starts one machine per job that needs it, with
a label unique to this workflow run (and shard), and those jobs run on it.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from cml_nb import __version__
from cml_nb.errors import ConfigError
from cml_nb.pipelines import DOCS_URL, _yaml, commands
from cml_nb.pipelines.clouds import LOGINS, fill

if TYPE_CHECKING:
    from cml_nb.pipelines import Pipeline, PipelineOptions, Secret

PATH = PurePosixPath(".github/workflows/cml-nb.yml")
#: The composite action at the root of cml-nb's repository (action.yml), for --use-action.
ACTION = "cml-nb/cml-nb"
SETTINGS = "repository Settings > Secrets and variables > Actions > New repository secret"

#: What every job may do: read the code.
READ = {"contents": "read"}
#: What a publishing job may do: comment on pull requests, create check runs, and
#: (``contents: write``) push images to the assets branch and comment on commits of
#: the default branch. With S3 storage, ``contents: read`` is enough.
PUBLISH = {"contents": "write", "pull-requests": "write", "checks": "write"}


def build(options: PipelineOptions) -> Pipeline:
    """The workflow for ``options``."""
    from cml_nb.pipelines import Pipeline

    jobs: dict[str, Any] = {}
    gpu = options.gpu_runner is not None
    if gpu:
        jobs["launch-runner"] = _launch_job(options)
    if options.use_action and options.sweep:
        raise ConfigError("--use-action runs one notebook: drop --sweep, or --use-action")
    if options.sweep:
        jobs["sweep"] = _sweep_job(options, gpu)
        jobs["merge"] = _merge_job(options)
    else:
        jobs["report"] = _report_job(options, gpu)
    workflow: dict[str, Any] = {
        "name": "cml-nb",
        "on": {"pull_request": None, "push": {"branches": [options.branch]}},
        "permissions": dict(READ),
        # A new push to the same pull request makes the older run pointless.
        "concurrency": {"group": "cml-nb-${{ github.ref }}", "cancel-in-progress": True},
        "jobs": jobs,
    }
    secrets = _secrets(options)
    header = [
        "cml-nb: run the notebook on every pull request and publish its report as a comment.",
        f"Written by `cml-nb init` {__version__}; see {DOCS_URL}",
        "The workflow's own GITHUB_TOKEN publishes the report.",
    ]
    header += [f"Needs the secret {s.name}: {s.why}." for s in secrets]
    return Pipeline(PATH, _yaml.dump(workflow, "\n".join(header)), tuple(secrets))


def _setup_steps(options: PipelineOptions, *, project: bool = True) -> list[dict[str, Any]]:
    # Full history, so that comparisons can find the base branch's commits; a job
    # that only launches a runner needs neither the history nor the requirements.
    checkout: dict[str, Any] = {"uses": "actions/checkout@v4"}
    if project:
        checkout["with"] = {"fetch-depth": 0}
    else:
        options = replace(options, requirements=())
    # setup-python's pip cache hashes a dependency file; without requirements, this
    # workflow itself stands in (it holds the install line).
    hashed = "\n".join(options.requirements) if options.requirements else PATH.as_posix()
    python = {
        "uses": "actions/setup-python@v5",
        "with": {"python-version": options.python, "cache": "pip", "cache-dependency-path": hashed},
    }
    install = {"name": "Install cml-nb", "run": commands.install_script(options)}
    return [checkout, python, install]


def _dvc_steps(options: PipelineOptions, *, install: bool = False) -> list[dict[str, Any]]:
    if options.dvc is None:
        return []
    pull = commands.DVC_PULL
    if install:
        pull = f"python -m pip install {shlex.quote(commands.dvc_requirement(options))} && {pull}"
    step: dict[str, Any] = {"name": "Pull DVC data", "run": pull}
    names = [name for name, _ in commands.dvc_secrets(options)]
    if names:
        step["env"] = {name: f"${{{{ secrets.{name} }}}}" for name in names}
    return [step]


def _token_env() -> dict[str, str]:
    return {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}


def _upload(name: str, path: str) -> dict[str, Any]:
    return {
        "uses": "actions/upload-artifact@v4",
        "if": "always()",
        "with": {"name": name, "path": path, "if-no-files-found": "ignore"},
    }


def _runs_on(gpu: bool, label: str) -> Any:
    return ["self-hosted", label] if gpu else "ubuntu-latest"


def _report_job(options: PipelineOptions, gpu: bool) -> dict[str, Any]:
    job: dict[str, Any] = {}
    if gpu:
        job["needs"] = "launch-runner"
    job["runs-on"] = _runs_on(gpu, "cml-nb-${{ github.run_id }}")
    job["permissions"] = dict(PUBLISH)
    if options.use_action:
        job["steps"] = _action_steps(options)
        return job
    job["steps"] = [
        *_setup_steps(options),
        *_dvc_steps(options),
        {"name": "Run and publish", "run": commands.run_command(options), "env": _token_env()},
        _upload("cml-nb-runs", "runs/"),
    ]
    return job


def _action_steps(options: PipelineOptions) -> list[dict[str, Any]]:
    # The action installs cml-nb from its own checkout; only the project's needs remain.
    setup = _setup_steps(options)[:2]
    if options.requirements:
        files = " ".join(f"-r {shlex.quote(r)}" for r in options.requirements)
        setup.append({"name": "Install requirements", "run": f"python -m pip install {files}"})
    inputs: dict[str, str] = {"notebook": options.notebook, "publish": "true", "check": "true",
                              "junit": commands.JUNIT_FILE}  # fmt: skip
    if options.kernel:
        inputs["kernel"] = options.kernel
    run = {"name": "Run and publish", "id": "cml-nb", "uses": f"{ACTION}@v{__version__}",
           "with": inputs}  # fmt: skip
    # The action installs cml-nb only: the DVC step installs DVC itself.
    return [*setup, *_dvc_steps(options, install=True), run, _upload("cml-nb-runs", "runs/")]


def _sweep_job(options: PipelineOptions, gpu: bool) -> dict[str, Any]:
    shard = "${{ matrix.shard }}"
    job: dict[str, Any] = {}
    if gpu:
        job["needs"] = "launch-runner"
    job["runs-on"] = _runs_on(gpu, f"cml-nb-${{{{ github.run_id }}}}-{shard}")
    job["strategy"] = {"fail-fast": False, "matrix": {"shard": list(range(1, options.shards + 1))}}
    cache = {
        "uses": "actions/cache@v4",
        "with": {
            "path": commands.CACHE_DIR,
            # A new key each commit (caches are immutable); restore the latest one.
            "key": f"cml-nb-sweep-{shard}-${{{{ github.sha }}}}",
            "restore-keys": f"cml-nb-sweep-{shard}-",
        },
    }
    job["steps"] = [
        *_setup_steps(options),
        *_dvc_steps(options),
        cache,
        {
            "name": "Run this shard of the sweep",
            "run": commands.sweep_shard_command(options, shard, str(options.shards)),
        },
        _upload(f"cml-nb-sweep-shard-{shard}", f"{commands.SHARDS_DIR}/{shard}/"),
    ]
    return job


def _merge_job(options: PipelineOptions) -> dict[str, Any]:
    merged = commands.sweep_output(options)
    return {
        "needs": "sweep",
        # Publish what the shards that finished found, even when one failed.
        "if": "${{ !cancelled() }}",
        "runs-on": "ubuntu-latest",
        "permissions": dict(PUBLISH),
        "steps": [
            *_setup_steps(options),
            {
                "uses": "actions/download-artifact@v4",
                "with": {"pattern": "cml-nb-sweep-shard-*", "path": commands.SHARDS_DIR},
            },
            {"name": "Join the shards", "run": commands.sweep_merge_command(options)},
            {
                "name": "Publish the comparison",
                "if": "${{ !cancelled() }}",
                "run": commands.sweep_publish_command(options),
                "env": _token_env(),
            },
            _upload("cml-nb-sweep", f"{merged}/"),
        ],
    }


def _launch_job(options: PipelineOptions) -> dict[str, Any]:
    label = "cml-nb-${{ github.run_id }}"
    if options.sweep:
        label += "-${{ matrix.shard }}"
    job: dict[str, Any] = {"runs-on": "ubuntu-latest"}
    if options.sweep:
        job["strategy"] = {"matrix": {"shard": list(range(1, options.shards + 1))}}
    login = LOGINS[options.gpu_runner or "aws"]
    if login.github_oidc:  # the login action trades GitHub's OIDC token for cloud access
        job["permissions"] = {"contents": "read", "id-token": "write"}
    setup = _setup_steps(options, project=False)
    setup[-1] = {**setup[-1], "run": commands.launch_install_script(options)}
    job["steps"] = [
        *setup,
        *login.github_steps,
        {
            "name": "Launch a GPU runner",
            "run": commands.launch_command(options, label),
            "env": {
                # GITHUB_TOKEN cannot register self-hosted runners: REPO_TOKEN can.
                "REPO_TOKEN": "${{ secrets.REPO_TOKEN }}",
                **{k: fill(v, options.region) for k, v in login.github_env.items()},
            },
        },
    ]
    return job


def _secrets(options: PipelineOptions) -> list[Secret]:
    from cml_nb.pipelines import Secret

    found = [Secret(name, SETTINGS, f"for dvc pull: {why}")
             for name, why in commands.dvc_secrets(options)]  # fmt: skip
    if options.gpu_runner is None:
        return found
    login = {name for name, _ in LOGINS[options.gpu_runner].secrets}
    found = [s for s in found if s.name not in login]  # the same names: the runner's IAM user's
    return found + [
        Secret(
            "REPO_TOKEN",
            SETTINGS,
            "a fine-grained personal access token with Administration: read and write on "
            "this repository, so the launch job can register self-hosted runners",
        ),
        *(Secret(name, SETTINGS, why) for name, why in LOGINS[options.gpu_runner].secrets),
    ]
