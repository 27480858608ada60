"""The report bundle on disk: report.md, report.html, assets/ and report.json."""

from __future__ import annotations

import json
from pathlib import Path

from cml_nb.errors import NotebookReadError, StorageError
from cml_nb.report.assets import ASSETS_DIR, write_assets
from cml_nb.report.html import to_html
from cml_nb.report.markdown import DEFAULT_COLLAPSE_LINES, DEFAULT_MAX_CHARS, to_markdown
from cml_nb.report.model import Report

MARKDOWN_NAME, HTML_NAME, JSON_NAME = "report.md", "report.html", "report.json"


def _write_text(path: Path, text: str) -> None:
    # A fixed "report.md.tmp" in a shared folder could be a planted symlink; write_atomic
    # creates its temporary file with O_EXCL under a random name instead.
    from cml_nb.records import write_atomic

    write_atomic(path, text)


def write_bundle(
    report: Report,
    out_dir: Path,
    *,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    collapse_lines: int = DEFAULT_COLLAPSE_LINES,
) -> Path:
    """Write the bundle into ``out_dir`` and return it.

    Args:
        report: the report (already masked by ``build_report``).
        out_dir: the bundle folder, created if needed.
        max_chars: size budget of report.md (report.html is always complete).
        collapse_lines: outputs longer than this fold into ``<details>``.

    Raises:
        StorageError: the folder cannot be written.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_assets(report.assets, out_dir / ASSETS_DIR)
        # Written as is (no trailing newline added), so the file is within the budget.
        markdown = to_markdown(report, max_chars=max_chars, collapse_lines=collapse_lines)
        _write_text(out_dir / MARKDOWN_NAME, markdown)
        _write_text(out_dir / HTML_NAME, to_html(report, collapse_lines=collapse_lines))
        data = json.dumps(report.to_dict(), indent=1, ensure_ascii=False, default=str)
        _write_text(out_dir / JSON_NAME, data + "\n")
    except OSError as exc:
        raise StorageError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from exc
    return out_dir


def load_bundle(out_dir: Path) -> Report:
    """The Report of a bundle, from report.json and assets/ (no Markdown parsing).

    The bundle may come from an untrusted job: assets are checked and SVGs sanitised
    by :func:`cml_nb.report.trust.read_trusted_assets` before their bytes are used.

    Raises:
        NotebookReadError: the folder holds no readable report.json, or an asset in it
            is not a content-hashed image inside assets/.
    """
    path = Path(out_dir) / JSON_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotebookReadError(
            f"no {JSON_NAME} in {out_dir}: make one with `cml-nb report NOTEBOOK -o {out_dir}`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise NotebookReadError(f"cannot read {path}: {exc}") from exc
    report = Report.from_dict(data)
    from cml_nb.report.trust import read_trusted_assets

    read_trusted_assets(report, Path(out_dir) / ASSETS_DIR)
    return report
