"""The GitHub Actions job summary: the report appended to ``$GITHUB_STEP_SUMMARY``.

GitHub renders the file as GitHub-flavoured Markdown on the run's summary page and
accepts at most 1 MiB per step: a bigger summary is dropped and an error annotation
shown instead (docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands#adding-a-job-summary,
"Step isolation and limits"). So the report is fitted, in bytes, into what the file
still has room for.

Images: the job summary cannot show the bundle's ``assets/`` files. After a publish
the comment's body (images at their hosted URLs) is appended; otherwise images are
left out with a note saying where they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from cml_nb.errors import StorageError

if TYPE_CHECKING:
    from cml_nb.report.model import Block, Report

#: Largest step summary GitHub accepts, in bytes.
STEP_SUMMARY_LIMIT = 1024 * 1024
IMAGES_LEFT_OUT = (
    "Images are left out of the job summary: see report.html in the run's artifact, "
    "or publish the report (`--publish`) to see them in the comment."
)
_IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(assets/[0-9a-f]{64}\.[a-z]+[^)]*\)")
_MIN_ROOM = 600  # below this not even the report's header fits; write nothing


def summary_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The step summary file, when GitHub Actions provides one."""
    env = os.environ if env is None else env
    value = env.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None


def _room(path: Path) -> int:
    try:
        used = path.stat().st_size
    except FileNotFoundError:
        used = 0
    return STEP_SUMMARY_LIMIT - used


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise StorageError(
            f"cannot write GITHUB_STEP_SUMMARY {path}: {exc.strerror or exc}"
        ) from exc


def _without_images(blocks: list[Block]) -> list[Block]:
    from cml_nb.report.model import DetailsBlock, ImageBlock, MarkdownBlock, NoteBlock

    out: list[Block] = []
    for block in blocks:
        if isinstance(block, ImageBlock):
            out.append(NoteBlock(f"Image left out ({block.alt}).", cell=block.cell))
        elif isinstance(block, MarkdownBlock) and block.assets:
            text = _IMAGE_LINK.sub(lambda m: f"*(image left out: {m.group(1) or 'image'})*",
                                   block.text)  # fmt: skip
            out.append(replace(block, text=text, assets=[]))
        elif isinstance(block, DetailsBlock):
            out.append(replace(block, blocks=_without_images(block.blocks)))
        else:
            out.append(block)
    return out


def _fit_bytes(render: Callable[[int], str], room: int) -> str | None:
    """Markdown of at most ``room`` UTF-8 bytes (the report budget counts characters)."""
    chars = room
    for _ in range(6):
        if chars < _MIN_ROOM:
            return None
        text = render(chars)
        size = len(text.encode("utf-8"))
        if size <= room:
            return text
        chars = int(chars * room / size * 0.98)
    return None


def append_report(report: Report, env: Mapping[str, str] | None = None) -> Path | None:
    """Append ``report`` without its images; the path written, or None (not in Actions)."""
    from cml_nb.report.markdown import to_markdown
    from cml_nb.report.model import NoteBlock

    path = summary_path(env)
    if path is None:
        return None
    blocks = _without_images(report.blocks)
    has_images = bool(report.assets)
    if has_images:
        blocks = [NoteBlock(IMAGES_LEFT_OUT), *blocks]
    stripped = replace(report, blocks=blocks, assets={})
    text = _fit_bytes(lambda chars: to_markdown(stripped, max_chars=chars), _room(path) - 2)
    if text is not None:
        _append(path, text + "\n\n")
    return path


def append_markdown(markdown: str, env: Mapping[str, str] | None = None) -> Path | None:
    """Append Markdown already rendered (a published comment's body), if it fits."""
    path = summary_path(env)
    if path is None:
        return None
    room = _room(path) - 2
    if len(markdown.encode("utf-8")) <= room:
        _append(path, markdown + "\n\n")
    return path


def append_bundle(bundle: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """Append the report of a bundle folder (report.json), without its images."""
    if summary_path(env) is None or not (Path(bundle) / "report.json").is_file():
        return None
    from cml_nb.report.bundle import load_bundle

    return append_report(load_bundle(Path(bundle)), env)
