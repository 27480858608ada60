"""Executed notebook(s) and run records to a :class:`Report`.

Notebooks are read with ``json`` and a few structural checks rather than
nbformat's full schema validation: the report path stays fast and light (no
jsonschema, no nbconvert, no Jinja), and a notebook that Jupyter opens is
reported even when its metadata is slightly off-schema.

Cell visibility follows Jupyter Book's tags (``remove-cell``, ``remove-input``,
``remove-output``, ``hide-input``, ``hide-output``) and Jupyter's
``jupyter.source_hidden`` / ``jupyter.outputs_hidden`` metadata.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cml_nb.errors import NotebookReadError
from cml_nb.metrics import read_metrics
from cml_nb.notebook import ERROR_MARKER_TAG, cell_numbers, first_error, joined
from cml_nb.records import RUN_RECORD_NAME, SUCCEEDED, RunRecord
from cml_nb.report.html_split import extract_data_images
from cml_nb.report.image_data import checked, decode_image
from cml_nb.report.model import (
    Block,
    CodeBlock,
    DetailsBlock,
    ErrorSummary,
    MarkdownBlock,
    NoteBlock,
    Report,
)
from cml_nb.report.outputs import output_blocks
from cml_nb.report.plotly_image import plotly_session
from cml_nb.report.redact import make_scrubber, redact_report
from cml_nb.report.widget_state import saved_states

NotebookLike = Path | str | Mapping[str, Any]


def read_notebook(path: Path) -> dict[str, Any]:
    """A notebook as plain JSON, after the checks the report needs.

    Raises:
        NotebookReadError: the file is missing, not JSON, or not a v4 notebook.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookReadError(f"notebook not found: {path}: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookReadError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookReadError(
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): is it a notebook (.ipynb)?"
        ) from None
    check_notebook(data, str(path))
    return data  # type: ignore[no-any-return]


def check_notebook(data: Any, label: str) -> None:
    """Fail with a clear message unless ``data`` looks like an nbformat 4 notebook."""
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookReadError(f"{label} is not a Jupyter notebook: it has no list of 'cells'")
    if data.get("nbformat", 4) != 4:
        raise NotebookReadError(
            f"{label} is nbformat {data.get('nbformat')}: convert it to version 4 "
            "(jupyter nbconvert --to notebook --nbformat 4)"
        )


def _record_beside(path: Path) -> RunRecord | None:
    """The run.json ``cml-nb run`` wrote beside this executed notebook, if it is this one's."""
    candidate = path.parent / RUN_RECORD_NAME
    if not candidate.is_file():
        return None
    try:
        record = RunRecord.read(candidate)
    except (OSError, ValueError, TypeError):
        return None
    return record if Path(record.output).name == path.name else None


def runner_description(environment: Mapping[str, Any]) -> str | None:
    """``2 × NVIDIA A100 · Linux-… · Python 3.11.7 · github``, from a record's environment."""
    parts: list[str] = []
    gpus = environment.get("gpus") or []
    if gpus:
        names = [str(g.get("name", "GPU")) for g in gpus]
        parts.append(names[0] if len(names) == 1 else f"{len(names)} × {names[0]}")
    if environment.get("platform"):  # "Linux-6.5.0-x86_64-with-glibc2.36" -> "Linux x86_64"
        system = str(environment["platform"]).split("-")[0]
        parts.append(f"{system} {environment.get('machine') or ''}".strip())
    if environment.get("python"):
        parts.append(f"Python {environment['python']}")
    if environment.get("ci"):
        parts.append(f"CI: {environment['ci']}")
    return " · ".join(parts) or None


@dataclass
class _Facts:
    """The header facts of one notebook."""

    label: str
    status: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    duration: float | None
    commit: str | None
    runner: str | None
    error: ErrorSummary | None
    error_outputs: int | None = None


def _defaults(nb: Mapping[str, Any]) -> dict[str, Any]:
    """Literal defaults of the ``parameters`` cell, so the table shows every parameter."""
    from cml_nb.errors import ParameterError
    from cml_nb.parameters import declared

    try:
        found = declared(nb) or {}
    except ParameterError:  # not Python, or not valid: the injected values still show
        return {}
    literal = (str, int, float, bool, list, dict, tuple, type(None))
    return {n: d.default for n, d in found.items() if isinstance(d.default, literal)}


def _facts(nb: Mapping[str, Any], record: RunRecord | None, label: str) -> _Facts:
    facts = _facts_of_run(nb, record, label)
    if facts.error is not None and facts.error.cell_index is not None:
        facts.error.cell_number = cell_numbers(nb).get(facts.error.cell_index)
    return facts


def _facts_of_run(nb: Mapping[str, Any], record: RunRecord | None, label: str) -> _Facts:
    defaults = _defaults(nb)
    if record is not None:
        error = None
        if record.error is not None:
            e = record.error
            error = ErrorSummary(
                e.cell_index, e.execution_count, e.ename, e.evalue, list(e.traceback)
            )
        git = record.environment.get("git") or {}
        return _Facts(
            record.notebook or label,
            record.status,
            {**defaults, **record.parameters},
            dict(record.metrics),
            record.duration,
            git.get("commit"),
            runner_description(record.environment),
            error,
        )
    papermill = nb.get("metadata", {}).get("papermill", {}) or {}
    found = first_error(nb)
    error = ErrorSummary(**asdict(found)) if found is not None else None
    count: int | None = None
    if "exception" in papermill:  # papermill ran it and recorded whether a cell stopped it
        status = "failed" if papermill.get("exception") else SUCCEEDED
    else:
        # Executed elsewhere (Jupyter, Colab, nbconvert): errors may be deliberate and the
        # run may have gone on, so the header counts error outputs instead of a status.
        status, error, count = "unknown", None, _error_outputs(nb)
    duration = papermill.get("duration")
    return _Facts(
        label,
        status,
        {**defaults, **(papermill.get("parameters") or {})},
        read_metrics(nb)["metrics"],
        float(duration) if isinstance(duration, int | float) else None,
        None,
        None,
        error,
        count,
    )


def _error_outputs(nb: Mapping[str, Any]) -> int:
    """Error outputs in the notebook, papermill's banner cells aside."""
    return sum(
        1
        for cell in nb.get("cells", ())
        if ERROR_MARKER_TAG not in ((cell.get("metadata") or {}).get("tags") or ())
        for output in cell.get("outputs") or ()
        if output.get("output_type") == "error"
    )


def _attachments(cell: Mapping[str, Any], report: Report) -> tuple[str, list[str]]:
    """Markdown text with ``attachment:x.png`` links pointing at stored assets.

    Unreadable attachments (empty, not base64, not the format they claim) keep their
    link, which shows as a broken image in Jupyter too; ``data:`` images in ``<img>``
    tags of the cell are moved into assets like those of HTML outputs.
    """
    text = joined(cell.get("source"))
    names: list[str] = []
    for filename, bundle in (cell.get("attachments") or {}).items():
        for mime, payload in (bundle or {}).items():
            if not mime.startswith("image/"):
                continue
            decoded = decode_image(joined(payload), mime)
            if decoded.problem:
                continue
            asset = report.add_asset(decoded.data, mime)
            text = text.replace(f"attachment:{filename}", f"assets/{asset.name}")
            names.append(asset.name)
            break
    if "data:" in text:
        text, inline, _ = extract_data_images(
            text, lambda data, mime: report.add_asset(data, mime).name
        )
        names += inline
    return text, names


_HTML_IMG = re.compile(r"<img\b[^>]*>", re.I)
_HTML_SRC = re.compile(r"""(\bsrc\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.I)
_LOCAL_IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                ".gif": "image/gif", ".svg": "image/svg+xml"}  # fmt: skip


def _local_images(text: str, report: Report, folders: Sequence[Path]) -> tuple[str, list[str]]:
    """Images linked by a relative path (``![](fig/a.png)``, ``<img src="fig/a.png">``) as assets.

    The link is relative to the notebook's folder, which the bundle does not share;
    only files inside that folder are read.
    """
    names: list[str] = []

    def stored(link: str) -> str | None:
        mime = _IMAGE_TYPES.get(Path(unquote(link)).suffix.lower())
        if mime is None or ":" in link or link.startswith(("/", "assets/")):
            return None
        for folder in folders:
            path = (folder / unquote(link)).resolve()
            if path.is_file() and path.is_relative_to(folder.resolve()):
                found = checked(path.read_bytes(), mime)
                if found.problem:
                    return None  # not the image its name says: leave the link as written
                asset = report.add_asset(found.data, mime)
                names.append(asset.name)
                return f"assets/{asset.name}"
        return None

    def swap(match: re.Match[str]) -> str:
        new = stored(match.group(2))
        return match.group(0) if new is None else f"{match.group(1)}{new}{match.group(3)}"

    def swap_tag(tag: re.Match[str]) -> str:
        src = _HTML_SRC.search(tag.group(0))
        if src is None:
            return tag.group(0)
        link = next(v for v in src.groups()[1:] if v is not None)
        new = stored(html.unescape(link))
        if new is None:
            return tag.group(0)
        text = tag.group(0)
        return f'{text[: src.start()]}{src.group(1)}"{new}"{text[src.end() :]}'

    text = _LOCAL_IMAGE.sub(swap, text)
    return (_HTML_IMG.sub(swap_tag, text) if "<img" in text.lower() else text), names


def _cell_blocks(
    nb: Mapping[str, Any],
    report: Report,
    *,
    show_code: bool,
    max_table_rows: int,
    folders: Sequence[Path] = (),
) -> list[Block]:
    language = str(nb.get("metadata", {}).get("language_info", {}).get("name", "python"))

    def add_asset(data: bytes, mime: str) -> str:
        return report.add_asset(data, mime).name

    blocks: list[Block] = []
    numbers = cell_numbers(nb)
    widgets = saved_states(nb)
    for position, cell in enumerate(nb.get("cells", ())):
        meta = cell.get("metadata", {}) or {}
        tags = set(meta.get("tags", ()) or ())
        if "remove-cell" in tags or ERROR_MARKER_TAG in tags:
            continue
        index = numbers.get(position, 0)  # the injected-parameters cell has none
        kind = cell.get("cell_type")
        if kind == "markdown":
            text, names = _attachments(cell, report)
            text, local = _local_images(text, report, folders)
            names += local
            if text.strip():
                blocks.append(MarkdownBlock(text.strip(), names, cell=index, role="markdown"))
            continue
        if kind != "code":
            continue  # raw cells target other converters
        jupyter = meta.get("jupyter", {}) or {}
        source = joined(cell.get("source"))
        if show_code and "remove-input" not in tags and source.strip():
            collapsed = "hide-input" in tags or bool(jupyter.get("source_hidden"))
            blocks.append(CodeBlock(source, language, collapsed, cell=index, role="code"))
        if "remove-output" in tags:
            continue
        outputs = output_blocks(
            cell.get("outputs") or (), index, add_asset, max_rows=max_table_rows, widgets=widgets
        )
        if outputs and ("hide-output" in tags or jupyter.get("outputs_hidden")):
            outputs = [DetailsBlock(f"Output of cell {index}", outputs, cell=index)]
        blocks.extend(outputs)
    return blocks


def _load(item: NotebookLike, index: int) -> tuple[Mapping[str, Any], Path | None, str]:
    if isinstance(item, str | Path):
        path = Path(item)
        return read_notebook(path), path, str(path)
    check_notebook(item, f"notebook {index + 1}")
    label = str(item.get("metadata", {}).get("papermill", {}).get("output_path") or "")
    return item, None, label or f"notebook {index + 1}"


def _worst(statuses: Iterable[str]) -> str:
    found = list(statuses)
    failing = [s for s in found if s not in (SUCCEEDED, "unknown")]
    if failing:
        return failing[0]
    return SUCCEEDED if SUCCEEDED in found else "unknown"


def build_report(
    notebooks: Sequence[Path | str | Mapping[str, Any]],
    *,
    records: Sequence[RunRecord | None] | None = None,
    title: str | None = None,
    show_code: bool = False,
    max_table_rows: int = 20,
    secrets: Iterable[str] = (),
) -> Report:
    """Build the report of one or more executed notebooks.

    Args:
        notebooks: paths to executed notebooks, or notebooks already in memory
            (``NotebookNode`` or plain dicts).
        records: the run record of each notebook; when None, the ``run.json``
            beside each notebook file is used if it describes that notebook, else
            the facts are read from the notebook itself.
        title: the heading (default: ``Report: <notebook>``).
        show_code: show code cells (``hide-input`` ones collapsed).
        max_table_rows: rows of a DataFrame kept before truncating with a note.
        secrets: extra values to mask, besides token formats and secret-looking
            environment variables.

    Returns:
        The report, with every credential masked.

    Raises:
        NotebookReadError: a notebook is missing or not a notebook.
    """
    if not notebooks:
        raise NotebookReadError("no notebook given: pass at least one executed notebook")
    if records is not None and len(records) != len(notebooks):
        raise ValueError("records must have one entry per notebook")
    report = Report(title=title or "")
    facts: list[_Facts] = []
    bodies: list[list[Block]] = []
    first_record: RunRecord | None = None
    with plotly_session():  # plotly figures share one kaleido server
        for index, item in enumerate(notebooks):
            nb, path, label = _load(item, index)
            record = records[index] if records is not None else None
            if record is None and path is not None and records is None:
                record = _record_beside(path)
            facts.append(_facts(nb, record, label))
            first_record = record if index == 0 else first_record
            # Relative links resolve against the source notebook's folder (the kernel's cwd).
            folders = [Path(record.notebook).parent] if record is not None else []
            folders += [path.parent] if path is not None else []
            bodies.append(
                _cell_blocks(
                    nb, report, show_code=show_code, max_table_rows=max_table_rows, folders=folders
                )
            )

    first = facts[0]
    report.notebook = ", ".join(f.label for f in facts)
    report.status = _worst(f.status for f in facts)
    report.commit = first.commit
    report.runner = first.runner
    report.error = next((f.error for f in facts if f.error is not None), None)
    if report.status == "unknown" and all(f.error_outputs is not None for f in facts):
        report.error_outputs = sum(f.error_outputs or 0 for f in facts)
    if len(facts) == 1:
        report.parameters, report.metrics = first.parameters, first.metrics
        report.duration = first.duration
        report.blocks = bodies[0]
        if first_record is not None:  # what TensorBoard, DVCLive, MLflow logged (loggers/)
            from cml_nb.loggers.curves import add_curves, record_curves

            report.extra["metric_sources"] = dict(first_record.metric_sources)
            add_curves(report, record_curves(first_record))
    else:
        report.duration = sum(f.duration or 0.0 for f in facts)
        for f, body in zip(facts, bodies, strict=True):
            stem = Path(f.label).stem
            report.metrics.update({f"{stem}/{k}": v for k, v in f.metrics.items()})
            report.parameters.update({f"{stem}/{k}": v for k, v in f.parameters.items()})
            report.blocks.append(MarkdownBlock(f"## {f.label}", role="markdown"))
            if f.status not in (SUCCEEDED, "unknown"):
                report.blocks.append(NoteBlock(f"This notebook's run {f.status}.", "warning"))
            report.blocks.extend(body)
    report.title = (
        title or f"Report: {Path(first.label).name if len(facts) == 1 else report.notebook}"
    )
    return redact_report(report, make_scrubber(secrets))
