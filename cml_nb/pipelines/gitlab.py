"""GitLab CI: ``.gitlab-ci.yml``.

Pipelines run for merge requests and for the default branch (``workflow: rules``
keeps a push to a branch with an open merge request from running twice). Jobs:
``cml-nb`` (run and publish), or ``sweep`` (``parallel: matrix`` of shards) and
``merge``; with a GPU runner, ``launch-runner`` first starts one machine per job
that needs it, tagged with the pipeline id (and shard), and those jobs run on it
with its shell executor.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from cml_nb import __version__
from cml_nb.pipelines import DOCS_URL, _yaml, commands
from cml_nb.pipelines.clouds import LOGINS, fill

if TYPE_CHECKING:
    from cml_nb.pipelines import Pipeline, PipelineOptions, Secret

PATH = PurePosixPath(".gitlab-ci.yml")
SETTINGS = (
    "project Settings > CI/CD > Variables (Masked, and not Protected so merge requests see it)"
)

WORKFLOW_RULES = [
    {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'},
    {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"},
    {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"},
]


def build(options: PipelineOptions) -> Pipeline:
    """The ``.gitlab-ci.yml`` for ``options``."""
    from cml_nb.errors import ConfigError
    from cml_nb.pipelines import Pipeline

    if options.use_action:
        raise ConfigError("--use-action is for GitHub Actions: drop it for GitLab CI")
    gpu = options.gpu_runner is not None
    stages = (["launch"] if gpu else []) + (["sweep", "merge"] if options.sweep else ["report"])
    document: dict[str, Any] = {
        "workflow": {"rules": WORKFLOW_RULES},
        "stages": stages,
        "variables": {
            # Full history, so that comparisons can find the target branch's commits.
            "GIT_DEPTH": "0",
            "PIP_CACHE_DIR": "$CI_PROJECT_DIR/.cache/pip",
        },
    }
    if gpu:
        document["launch-runner"] = _launch_job(options)
    if options.sweep:
        document["sweep"] = _sweep_job(options, gpu)
        document["merge"] = _merge_job(options)
    else:
        document["cml-nb"] = _report_job(options, gpu)
    secrets = _secrets(options)
    header = [
        "cml-nb: run the notebook on every merge request and publish its report as a note.",
        f"Written by `cml-nb init` {__version__}; see {DOCS_URL}",
    ]
    header += [f"Needs the CI/CD variable {s.name}: {s.why}." for s in secrets]
    text = _yaml.dump(document, "\n".join(header))
    return Pipeline(PATH, text, tuple(secrets), request="merge request")


def _python(options: PipelineOptions, gpu: bool, *, project: bool = True) -> dict[str, Any]:
    # Hosted jobs use the Python image; a GPU runner's shell executor gets a virtual
    # environment, so the job never needs root on the machine.
    fetch = (
        '[ -z "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME" ] || '
        'git fetch --quiet origin "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"'
    )
    venv = ["python3 -m venv .venv", ". .venv/bin/activate"] if gpu else []
    job: dict[str, Any] = {} if gpu else {"image": f"python:{options.python}"}
    job["cache"] = [{"key": "pip", "paths": [".cache/pip"]}]
    if not project:  # launching a runner needs cml-nb only
        return {
            **job,
            "before_script": [commands.install_script(replace(options, requirements=()))],
        }
    job["before_script"] = [fetch, *venv, commands.install_script(options)]
    return job


def _artifacts(path: str) -> dict[str, Any]:
    return {"when": "always", "expire_in": "1 week", "paths": [path]}


def _report_job(options: PipelineOptions, gpu: bool) -> dict[str, Any]:
    job: dict[str, Any] = {"stage": "report"}
    if gpu:
        job["needs"] = ["launch-runner"]
        job["tags"] = ["cml-nb-$CI_PIPELINE_ID"]
    job.update(_python(options, gpu))
    # CI/CD variables reach the job's environment, where dvc pull reads the credentials.
    job["script"] = [*([commands.DVC_PULL] if options.dvc else []), commands.run_command(options)]
    # reports:junit shows each cell as a test in the MR widget (docs.gitlab.com/ci/testing/unit_test_reports/).
    job["artifacts"] = {**_artifacts("runs/"), "reports": {"junit": commands.JUNIT_FILE}}
    return job


def _shards(options: PipelineOptions) -> dict[str, Any]:
    return {"matrix": [{"SHARD": [str(k) for k in range(1, options.shards + 1)]}]}


def _sweep_job(options: PipelineOptions, gpu: bool) -> dict[str, Any]:
    job: dict[str, Any] = {"stage": "sweep"}
    if gpu:
        job["needs"] = ["launch-runner"]
        # Matrix variables may appear in tags: each shard runs on its own machine.
        job["tags"] = ["cml-nb-$CI_PIPELINE_ID-$SHARD"]
    job["parallel"] = _shards(options)
    job.update(_python(options, gpu))
    job["cache"] = [
        {"key": "pip", "paths": [".cache/pip"]},
        # The run cache: unchanged runs are reused by the next pipeline.
        {"key": "cml-nb-sweep-$SHARD", "paths": [f"{commands.CACHE_DIR}/"]},
    ]
    job["script"] = [
        *([commands.DVC_PULL] if options.dvc else []),
        commands.sweep_shard_command(options, "$SHARD", str(options.shards)),
    ]
    # Each shard writes only its own subfolder, so the merge job's copy holds them all.
    job["artifacts"] = {
        **_artifacts(f"{commands.SHARDS_DIR}/"),
        "reports": {"junit": f"{commands.SHARDS_DIR}/$SHARD/junit.xml"},
    }
    return job


def _merge_job(options: PipelineOptions) -> dict[str, Any]:
    job: dict[str, Any] = {"stage": "merge", "needs": ["sweep"]}
    job.update(_python(options, False))
    job["script"] = [commands.sweep_merge_command(options), commands.sweep_publish_command(options)]
    job["artifacts"] = _artifacts(f"{commands.sweep_output(options)}/")
    # Publish what the shards that finished found, even when one failed.
    job["when"] = "always"
    return job


def _launch_job(options: PipelineOptions) -> dict[str, Any]:
    tag = "cml-nb-$CI_PIPELINE_ID" + ("-$SHARD" if options.sweep else "")
    job: dict[str, Any] = {"stage": "launch"}
    if options.sweep:
        job["parallel"] = _shards(options)
    job.update(_python(options, False, project=False))
    job["before_script"] = [commands.launch_install_script(options)]
    login = LOGINS[options.gpu_runner or "aws"]
    if login.gitlab_id_tokens:  # GitLab's OIDC token, traded for cloud access
        job["id_tokens"] = dict(login.gitlab_id_tokens)
    if login.gitlab_variables:
        job["variables"] = {k: fill(v, options.region) for k, v in login.gitlab_variables.items()}
    job["script"] = [*login.gitlab_script, commands.launch_command(options, tag)]
    return job


def _secrets(options: PipelineOptions) -> list[Secret]:
    from cml_nb.pipelines import Secret

    if options.gpu_runner:
        rights = "api, create_runner and manage_runner scopes and the Maintainer role"
    else:
        rights = "api scope and the Developer role"
    found = [
        Secret(
            "GITLAB_TOKEN",
            SETTINGS,
            f"a project access token with the {rights}; CI_JOB_TOKEN cannot write "
            "merge request notes" + (" or create runners" if options.gpu_runner else ""),
        )
    ]
    found += [Secret(name, SETTINGS, f"for dvc pull: {why} (masked)")
              for name, why in commands.dvc_secrets(options)
              if not (options.gpu_runner and name in
                      {n for n, _ in LOGINS[options.gpu_runner].secrets})]  # fmt: skip
    if options.gpu_runner:
        found += [Secret(name, SETTINGS, why) for name, why in LOGINS[options.gpu_runner].secrets]
    return found
