"""CI pipeline files that run cml-nb: what ``cml-nb init`` writes.

``render(options)`` builds one pipeline file for a forge, as text, with the secrets the
user must add; ``write(pipeline, root)`` puts it in the repository and refuses to
overwrite an existing file unless asked. Builders are a registry keyed by forge name
(``github``: ``.github/workflows/cml-nb.yml``; ``gitlab``: ``.gitlab-ci.yml``).

The pipelines run ``cml-nb run NOTEBOOK --publish`` on every pull/merge request and
on the default branch (whose metrics later requests compare against); with a GPU
runner a launch job starts a cloud machine first and the notebook runs on it; with
a sweep, a matrix of shards runs ``cml-nb sweep --shard K/N`` and a merge job joins
and publishes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cml_nb import __version__
from cml_nb.errors import ConfigError, NotebookReadError
from cml_nb.pipelines.dvc import DvcProject

#: ``--gpu-runner`` values: the clouds ``cml-nb runner launch --cloud`` knows.
GPU_RUNNERS: tuple[str, ...] = ("aws", "gcp", "azure")
#: Where the generated files point users for help.
DOCS_URL = "https://github.com/cml-nb/cml-nb/blob/main/docs/ci.md"
RUNNERS_URL = "https://github.com/cml-nb/cml-nb/blob/main/docs/runners.md"
#: Requirement files installed (and hashed for the pip cache) when present.
REQUIREMENT_FILES: tuple[str, ...] = ("requirements.txt",)


@dataclass(frozen=True)
class Secret:
    """A value the user must store in the forge's settings before the pipeline works.

    Attributes:
        name: the variable's name, e.g. ``REPO_TOKEN``.
        where: where to add it, in the forge's own words.
        why: what it is for and what rights it needs.
    """

    name: str
    where: str
    why: str


@dataclass(frozen=True)
class PipelineOptions:
    """What to generate.

    Attributes:
        forge: ``github`` or ``gitlab``.
        notebook: the notebook's path relative to the repository root (POSIX form).
        gpu_runner: a cloud (``aws``) to launch a self-hosted GPU runner on, or ``None``.
        sweep: run a parameter sweep as a matrix of shards and a merge job.
        shards: number of shards (matrix jobs) of the sweep.
        sweep_file: the sweep's parameter space (YAML), relative to the root.
        python: Python version on hosted runners.
        requirements: requirement files to install, relative to the root.
        install: pip requirement for cml-nb itself; pinned to this version by default,
            the one whose commands and flags the pipeline was checked against.
        branch: the default branch (its runs are the base of comparisons).
        kernel: kernel to run the notebook with, when its own is not ``python3``.
        gpu: GPU shorthand for ``cml-nb runner launch --gpu`` (e.g. ``t4``).
        region: region of the runner (``clouds.LOGINS`` has each cloud's default).
        use_action: GitHub only: run the notebook with the cml-nb composite action
            (``uses: cml-nb/cml-nb@vX.Y.Z``) instead of ``run:`` steps.
        dvc: the repository's DVC set-up: the jobs install DVC and ``dvc pull`` first.
        parameters_file: a parameters file passed to ``cml-nb run -f`` (DVC's params.yaml).
    """

    forge: str
    notebook: str
    gpu_runner: str | None = None
    sweep: bool = False
    shards: int = 4
    sweep_file: str = "sweep.yaml"
    python: str = "3.12"
    requirements: tuple[str, ...] = ()
    install: str = f"cml-nb=={__version__}"
    branch: str = "main"
    kernel: str | None = None
    gpu: str = "t4"
    region: str = "us-east-1"
    use_action: bool = False
    dvc: DvcProject | None = None
    parameters_file: str | None = None


@dataclass(frozen=True)
class Pipeline:
    """One generated pipeline file.

    Attributes:
        path: where it goes, relative to the repository root.
        text: the YAML.
        secrets: what the user must add in the forge's settings.
        notes: other next steps to print (a missing sweep file, an ``include:``).
        request: what the forge calls a change under review (``pull request``).
    """

    path: PurePosixPath
    text: str
    secrets: tuple[Secret, ...] = ()
    notes: tuple[str, ...] = field(default=())
    request: str = "pull request"


Builder = Callable[[PipelineOptions], Pipeline]


def _builders() -> dict[str, Builder]:
    from cml_nb.pipelines import github, gitlab

    return {"github": github.build, "gitlab": gitlab.build}


def forges() -> list[str]:
    """The forge names ``render`` accepts."""
    return sorted(_builders())


def render(options: PipelineOptions) -> Pipeline:
    """The pipeline file for ``options.forge``.

    Raises:
        ConfigError: an unknown forge or GPU cloud, or fewer than 2 shards.
    """
    builders = _builders()
    if options.forge not in builders:
        raise ConfigError(
            f"unknown forge {options.forge!r}: use one of {', '.join(sorted(builders))}"
        )
    if options.gpu_runner is not None and options.gpu_runner not in GPU_RUNNERS:
        raise ConfigError(
            f"unknown GPU runner cloud {options.gpu_runner!r}: use one of {', '.join(GPU_RUNNERS)}"
        )
    if options.sweep and options.shards < 2:
        raise ConfigError(f"--shards {options.shards}: a sharded sweep needs at least 2 shards")
    return builders[options.forge](options)


def find_root(start: Path | None = None) -> Path:
    """The git work tree holding ``start`` (default: the working directory), else ``start``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def find_notebook(root: Path, notebook: Path | None) -> str:
    """The notebook's path relative to ``root``, checked; found when there is just one.

    Args:
        root: the repository root.
        notebook: the path the user gave (relative to the working directory), or ``None``
            to pick the only notebook in the repository.

    Raises:
        NotebookReadError: the notebook does not exist or lies outside the repository.
        ConfigError: no notebook was given and the repository has none or several.
    """
    if notebook is None:
        found = _notebooks(root)
        if len(found) != 1:
            listed = ", ".join(map(str, found[:5])) or "none"
            raise ConfigError(
                f"found {len(found)} notebooks in {root} ({listed}): "
                "pass --notebook PATH to choose the one CI runs"
            )
        return found[0].as_posix()
    path = notebook.resolve()
    if not path.is_file():
        raise NotebookReadError(
            f"notebook {notebook} not found: check the path (it is relative to the "
            "working directory) or add the notebook first"
        )
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise NotebookReadError(
            f"notebook {notebook} is outside the repository {root}: CI can only run "
            "files that are committed; move it into the repository"
        ) from None


#: Folders never searched for the notebook: environments, caches, and cml-nb's outputs.
SKIPPED_FOLDERS = frozenset(
    {
        "node_modules",
        "venv",
        "env",
        "site-packages",
        "__pycache__",
        "runs",
        "sweeps",
        "sweep-shards",
    }
)


def _notebooks(root: Path) -> list[Path]:
    import os

    found = []
    for folder, subfolders, files in os.walk(root):
        # Prune in place, so hidden folders (.git, .venv) are never walked.
        subfolders[:] = [
            d for d in subfolders if not d.startswith(".") and d not in SKIPPED_FOLDERS
        ]
        found += [Path(folder, f).relative_to(root) for f in files if f.endswith(".ipynb")]
    return sorted(found)


def kernel_override(root: Path, notebook: str) -> str | None:
    """``python3`` when the notebook names another Python kernel (a local env's name).

    CI machines have the ``python3`` kernel that ipykernel installs and no other, so a
    notebook saved with ``conda-env-ml-py`` would fail there with "no such kernel".
    """
    try:
        metadata = json.loads((root / notebook).read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return None
    spec = metadata.get("kernelspec") or {}
    name, language = spec.get("name"), spec.get("language", "python")
    if name and name != "python3" and str(language).lower() == "python":
        return "python3"
    return None


def requirement_files(root: Path) -> tuple[str, ...]:
    """The requirement files present at ``root``."""
    return tuple(name for name in REQUIREMENT_FILES if (root / name).is_file())


def write(pipeline: Pipeline, root: Path, *, force: bool = False) -> Path:
    """Write ``pipeline`` under ``root``; refuse to replace a file unless ``force``.

    Returns:
        The path written.

    Raises:
        ConfigError: the file exists and ``force`` is false, or it cannot be written.
    """
    target = root / pipeline.path
    if target.exists() and not force:
        raise ConfigError(
            f"{pipeline.path} already exists: pass --force to overwrite it, or --output "
            "PATH to write the pipeline elsewhere"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(pipeline.text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {target} ({exc.strerror}): check the folder's permissions"
        ) from exc
    return target


def relocate(pipeline: Pipeline, forge: str, path: PurePosixPath) -> Pipeline:
    """``pipeline`` written to ``path`` (relative to the root) instead of its usual place.

    Raises:
        ConfigError: GitHub would never run a workflow at ``path``.
    """
    from dataclasses import replace

    notes = list(pipeline.notes)
    if forge == "github":
        if path.parent != PurePosixPath(".github/workflows") or path.suffix not in (
            ".yml",
            ".yaml",
        ):
            raise ConfigError(
                f"--output {path}: GitHub Actions only runs .github/workflows/*.yml; "
                "pick a name in that folder"
            )
    elif path != pipeline.path:
        notes.append(
            f"GitLab reads only {pipeline.path}: add `include: [{{local: {path}}}]` to it, "
            "and its stages to your `stages:` list"
        )
    return replace(pipeline, path=path, notes=tuple(notes))


def detect_forge(root: Path) -> str | None:
    """``github`` or ``gitlab`` when the ``origin`` remote's address names one, else ``None``."""
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(root / ".git" / "config", encoding="utf-8")
    except configparser.Error:
        return None
    url = parser.get('remote "origin"', "url", fallback="").lower()
    for name in ("github", "gitlab"):
        if name in url:
            return name
    return None


def detect_branch(root: Path) -> str:
    """The default branch: origin's HEAD if known, else ``master`` if alone, else ``main``."""
    git = root / ".git"
    try:
        head = (git / "refs" / "remotes" / "origin" / "HEAD").read_text(encoding="utf-8")
    except OSError:
        head = ""
    prefix = "ref: refs/remotes/origin/"
    if head.startswith(prefix):
        return head[len(prefix) :].strip()
    heads = git / "refs" / "heads"
    if (heads / "master").is_file() and not (heads / "main").is_file():
        return "master"
    return "main"


def init(
    root: Path,
    *,
    forge: str | None = None,
    notebook: Path | None = None,
    output: Path | None = None,
    requirements: tuple[Path, ...] | None = None,
    sweep_file: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    **settings: object,
) -> Pipeline:
    """What ``cml-nb init`` does: resolve the inputs, render, write (unless ``dry_run``).

    Args:
        root: the repository root (``find_root()``).
        forge: ``github`` or ``gitlab``; ``None`` reads it from the ``origin`` remote.
        notebook: the notebook (relative to the working directory); ``None`` picks the
            repository's only notebook.
        output: write here instead of the forge's usual file.
        requirements: requirement files; ``None`` installs ``requirements.txt`` if present.
        sweep_file: the sweep's parameter space (default ``sweep.yaml`` at the root).
        force: replace an existing file.
        dry_run: render only.
        **settings: other ``PipelineOptions`` fields (``gpu_runner``, ``sweep``, ...).

    Returns:
        The pipeline, with the secrets and next steps to print.

    Raises:
        ConfigError: the forge is unknown or undetectable, the file exists, or an
            option is invalid.
        NotebookReadError: the notebook is missing or outside the repository.
    """
    from dataclasses import fields, replace

    root = root.resolve()
    forge = forge or detect_forge(root)
    if forge is None:
        raise ConfigError(
            "cannot tell the forge from the 'origin' remote: pass --forge github or --forge gitlab"
        )
    known = {f.name for f in fields(PipelineOptions)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown pipeline settings {', '.join(unknown)}: use {sorted(known)}")
    chosen = find_notebook(root, notebook)
    files = (
        requirement_files(root)
        if requirements is None
        else tuple(_inside(root, p, "--requirements") for p in requirements)
    )
    space = _inside(root, sweep_file, "--sweep-file") if sweep_file else "sweep.yaml"
    from cml_nb.pipelines.dvc import detect as detect_dvc

    dvc = detect_dvc(root, chosen)  # a DVC repository: dvc pull, its params.yaml
    options = PipelineOptions(
        forge=forge,
        notebook=chosen,
        requirements=files,
        sweep_file=space,
        kernel=kernel_override(root, chosen),
        dvc=dvc,
        parameters_file=dvc.parameters_file if dvc else None,
    )
    if settings.get("branch") is None:
        settings["branch"] = detect_branch(root)
    options = replace(options, **settings)  # type: ignore[arg-type]
    pipeline = render(options)
    if output is not None:
        pipeline = relocate(pipeline, forge, PurePosixPath(_inside(root, output, "--output")))
    if options.sweep and not (root / options.sweep_file).is_file():
        pipeline = replace(
            pipeline,
            notes=(
                *pipeline.notes,
                f"{options.sweep_file} does not exist yet: write the sweep's parameter space "
                f"there (grid:, random:, list:; see {DOCS_URL}#sweep-matrix) and commit it",
            ),
        )
    if options.dvc is not None and options.dvc.notes:
        pipeline = replace(pipeline, notes=(*pipeline.notes, *options.dvc.notes))
    if options.use_action and options.parameters_file:  # the action has no -f input
        pipeline = replace(pipeline, notes=(*pipeline.notes, f"{options.parameters_file} is "
                           "not passed by the action: give its values in the action's "
                           "`parameters:` input"))  # fmt: skip
    if not dry_run:
        write(pipeline, root, force=force)
    return pipeline


def _inside(root: Path, path: Path, flag: str) -> str:
    # Paths on the command line are relative to the working directory; the pipeline
    # runs from the repository root.
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ConfigError(
            f"{flag} {path} is outside the repository {root}: CI sees only the repository"
        ) from None
