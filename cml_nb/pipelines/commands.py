"""The shell lines the generated pipelines run, shared by every forge.

Both forges run the same ``cml-nb`` command lines; only the way a shard index or a
run id is spelled differs (``${{ matrix.shard }}`` on GitHub, ``$SHARD`` on GitLab),
so the builders take those spellings as arguments. Tests parse these lines back out
of the YAML and resolve them against the real click application.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cml_nb.pipelines import PipelineOptions

#: Where sweep shards write their folders, and where the merge job joins them.
SHARDS_DIR = "sweep-shards"
#: The run cache that CI caches carry between pipelines (``cml-nb sweep --cache-dir``).
CACHE_DIR = ".cache/cml-nb"
#: The JUnit XML of the run (``--junit``), read by GitLab's MR widget and test-report actions.
JUNIT_FILE = "runs/junit.xml"


def install_script(options: PipelineOptions) -> str:
    """Install cml-nb and the project's requirements with pip."""
    parts = ["python -m pip install", shlex.quote(options.install)]
    if options.dvc is not None:  # dvc pull, with the remote's storage SDK
        parts.append(shlex.quote(dvc_requirement(options)))
    for requirement in options.requirements:
        parts += ["-r", shlex.quote(requirement)]
    return " ".join(parts)


def run_command(options: PipelineOptions) -> str:
    """Execute the notebook and publish its report to the pull/merge request."""
    words = ["cml-nb", "run", options.notebook]
    if options.parameters_file:
        words += ["-f", options.parameters_file]
    if options.kernel:
        words += ["--kernel", options.kernel]
    # --check adds a check run (GitHub) or commit status (GitLab) beside the comment.
    return _join([*words, "--publish", "--check", "--junit", JUNIT_FILE])


#: Fetches the DVC-tracked data the notebook reads, before it runs.
DVC_PULL = "dvc pull"


def dvc_requirement(options: PipelineOptions) -> str:
    """``dvc[s3]`` for the default remote's storage, ``dvc`` when it needs no extra."""
    kind = options.dvc.kind if options.dvc is not None else None
    return f"dvc[{kind.extra}]" if kind is not None and kind.extra else "dvc"


def dvc_secrets(options: PipelineOptions) -> list[tuple[str, str]]:
    """``(name, why)`` of each credential ``dvc pull`` reads from the environment."""
    kind = options.dvc.kind if options.dvc is not None else None
    return list(kind.secrets) if kind is not None else []


def sweep_output(options: PipelineOptions) -> str:
    """The merged sweep's folder, ``sweeps/<notebook name>`` as ``cml-nb sweep`` names it."""
    return f"sweeps/{PurePosixPath(options.notebook).stem}"


def sweep_shard_command(options: PipelineOptions, shard: str, total: str) -> str:
    """Run the ``shard``-th of ``total`` shares of the space (both may be CI expressions)."""
    words = ["cml-nb", "sweep", options.notebook, "--sweep-file", options.sweep_file]
    if options.kernel:
        words += ["--kernel", options.kernel]
    words += ["--cache-dir", CACHE_DIR]
    # The shard expression is left unquoted: CI substitutes it before the shell runs.
    return _join(words) + (
        f" --shard {shard}/{total} --output {SHARDS_DIR}/{shard}"
        f" --junit {SHARDS_DIR}/{shard}/junit.xml"
    )


def sweep_merge_command(options: PipelineOptions) -> str:
    """Join every shard's folder into one sweep with its comparison report."""
    return f"cml-nb sweep merge {SHARDS_DIR}/* --output {shlex.quote(sweep_output(options))}"


def sweep_publish_command(options: PipelineOptions) -> str:
    """Publish the merged sweep's comparison report (its ``report/`` bundle)."""
    return _join(["cml-nb", "publish", f"{sweep_output(options)}/report", "--check"])


def launch_command(options: PipelineOptions, labels: str) -> str:
    """Start a cloud runner that registers with ``labels`` (a CI expression may be in them)."""
    from cml_nb.pipelines.clouds import LOGINS, fill

    cloud = options.gpu_runner or "aws"
    words = ["cml-nb", "runner", "launch", "--forge", options.forge]
    words += ["--cloud", cloud, "--gpu", options.gpu]
    # The cloud's own arguments may name CI variables ($AZURE_RESOURCE_GROUP): unquoted.
    more = " ".join(fill(arg, options.region) for arg in LOGINS[cloud].launch_args)
    # One job per machine: it terminates after the job its label was made for.
    return _join([*words, "--single"]) + (f" {more}" if more else "") + f" --labels {labels}"


def launch_install_script(options: PipelineOptions) -> str:
    """Install cml-nb with the SDK of the runner's cloud (its extra), no project requirements."""
    from dataclasses import replace

    from cml_nb.pipelines.clouds import LOGINS, with_extra

    extra = LOGINS[options.gpu_runner or "aws"].extra
    install = with_extra(options.install, extra) if extra else options.install
    return install_script(replace(options, requirements=(), install=install))


def _join(words: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)
