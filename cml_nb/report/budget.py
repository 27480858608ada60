"""Keep a Markdown report under a forge's size limit, degrading in visible steps.

Steps, each tried only when the previous one was not enough:

1. fold every long output into ``<details>``;
2. truncate long outputs (keep their head and tail), long tables and big HTML;
3. drop the code;
4. cut the body at a block boundary.

Whenever something was dropped, a notice under the header says what, and that
the full report is report.html in the artifact. The result never exceeds the
limit, whatever the notebook holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from cml_nb.errors import ConfigError
from cml_nb.report.model import (
    Block,
    CodeBlock,
    DetailsBlock,
    ErrorBlock,
    HtmlBlock,
    MarkdownBlock,
    NoteBlock,
    StreamBlock,
    TableBlock,
    TextBlock,
)

#: Largest comment body each forge accepts, in characters.
FORGE_LIMITS = {"github": 65_536, "gitlab": 1_000_000}
MIN_CHARS = 500  # below this not even the header and notice fit
COLLAPSED_LINES = 10
HEAD_LINES, TAIL_LINES, MAX_LINE = 10, 15, 500
MAX_TABLE_ROWS = 10
MAX_BLOCK_CHARS = 4000

#: Renders blocks with a collapse threshold into (header, one string per block).
Render = Callable[[list[Block], int], tuple[str, list[str]]]

SEPARATOR = "\n\n"


def _join(header: str, parts: list[str]) -> str:
    return SEPARATOR.join(p for p in (header, *parts) if p)


def shorten_text(text: str) -> str:
    """Head and tail of a long text, very long lines cut, with how much was left out."""
    lines = [line if len(line) <= MAX_LINE else line[:MAX_LINE] + "…" for line in text.split("\n")]
    if len(lines) > HEAD_LINES + TAIL_LINES:
        skipped = len(lines) - HEAD_LINES - TAIL_LINES
        lines = [*lines[:HEAD_LINES], f"… {skipped} lines truncated …", *lines[-TAIL_LINES:]]
    short = "\n".join(lines)
    if len(short) > MAX_BLOCK_CHARS:  # many long lines survive the line cut
        short = short[: MAX_BLOCK_CHARS // 2] + "\n… truncated …\n" + short[-MAX_BLOCK_CHARS // 2 :]
    return short


def _truncate(block: Block) -> Block | None:
    """A shorter copy of ``block``, or None when it is already short."""
    if isinstance(block, StreamBlock | TextBlock):  # code is not cut: step 3 drops it whole
        short = shorten_text(block.text)
        return None if short == block.text else replace(block, text=short)
    if isinstance(block, ErrorBlock):
        trace = "\n".join(block.traceback)
        short = shorten_text(trace)
        return None if short == trace else replace(block, traceback=short.split("\n"))
    if isinstance(block, TableBlock) and len(block.rows) > MAX_TABLE_ROWS:
        total = block.total_rows if block.total_rows is not None else len(block.rows)
        return replace(block, rows=block.rows[:MAX_TABLE_ROWS], total_rows=total)
    if (
        isinstance(block, TableBlock)
        and sum(len(c) for r in block.rows for c in r) > MAX_BLOCK_CHARS
    ):
        rows = [[c[:40] for c in r] for r in block.rows]
        return replace(block, rows=rows, caption=(block.caption + " Long cells cut.").strip())
    too_long = isinstance(block, HtmlBlock) and len(block.html) > MAX_BLOCK_CHARS
    if isinstance(block, MarkdownBlock) and block.role == "output":
        too_long = len(block.text) > MAX_BLOCK_CHARS
    if too_long:
        return NoteBlock("A long output was left out to fit the size limit.", cell=block.cell)
    return None


def truncate_outputs(blocks: list[Block]) -> tuple[list[Block], int]:
    """Blocks with long outputs shortened, and how many were."""
    out: list[Block] = []
    count = 0
    for block in blocks:
        if isinstance(block, DetailsBlock):
            inner, n = truncate_outputs(block.blocks)
            out.append(replace(block, blocks=inner))
            count += n
            continue
        # The author's prose is kept; it goes only in the last step, the cut.
        prose = isinstance(block, MarkdownBlock) and block.role == "markdown"
        short = None if prose else _truncate(block)
        out.append(short if short is not None else block)
        count += short is not None
    return out, count


def drop_code(blocks: list[Block]) -> tuple[list[Block], int]:
    """Blocks without code, and how many code blocks went."""
    out: list[Block] = []
    count = 0
    for block in blocks:
        if isinstance(block, CodeBlock):
            count += 1
            continue
        if isinstance(block, DetailsBlock):
            inner, n = drop_code(block.blocks)
            count += n
            if inner:
                out.append(replace(block, blocks=inner))
            continue
        out.append(block)
    return out, count


def _notice(render: Render, collapse: int, max_chars: int, actions: list[str]) -> str:
    text = (
        f"✂️ This report was shortened to fit {max_chars:,} characters: {', '.join(actions)}. "
        "The full report is report.html in the run's artifact."
    )
    return render([NoteBlock(text, level="warning")], collapse)[1][0]


def _cut(
    header: str, parts: list[str], blocks: list[Block], render: Render, collapse: int,
    max_chars: int, actions: list[str],
) -> str:  # fmt: skip
    # Length of header + the first k parts, as _join would build it (empty parts skipped).
    prefix = [len(header)]
    for part in parts:
        prefix.append(prefix[-1] + (len(part) + len(SEPARATOR) if part else 0))

    def notice_for(kept: int) -> str:
        omitted = len(parts) - kept
        cell = next((b.cell for b in blocks[kept:] if b.cell is not None), None)
        where = f" from cell {cell} on" if cell is not None else ""
        return _notice(render, collapse, max_chars, [*actions, f"omitted {omitted} blocks{where}"])

    # Guess with the longest notice, then step back while the exact one does not fit.
    room = max_chars - len(notice_for(0)) - len(SEPARATOR)
    kept = max((k for k in range(len(parts) + 1) if prefix[k] <= room), default=-1)
    while kept >= 0:
        notice = notice_for(kept)
        if prefix[kept] + len(SEPARATOR) + len(notice) <= max_chars:
            return _join(header, [notice, *parts[:kept]])
        kept -= 1
    # Even the header does not fit (thousands of metrics): keep its start.
    notice = _notice(render, collapse, max_chars, [*actions, "cut the header and omitted the body"])
    room = max(0, max_chars - len(notice) - len(SEPARATOR) - 2)
    cut = header[:room].rsplit("\n", 1)[0] if "\n" in header[:room] else header[:room]
    return (cut + "\n…" + SEPARATOR + notice)[:max_chars]


def fit(blocks: list[Block], render: Render, max_chars: int | None, collapse_lines: int) -> str:
    """Render ``blocks`` in at most ``max_chars`` characters (None: no limit).

    Raises:
        ConfigError: ``max_chars`` is too small to hold even a header and a notice.
    """
    header, parts = render(blocks, collapse_lines)
    text = _join(header, parts)
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < MIN_CHARS:
        raise ConfigError(f"max_chars={max_chars} is too small: use at least {MIN_CHARS}")

    collapse = min(collapse_lines, COLLAPSED_LINES)
    header, parts = render(blocks, collapse)
    if len(_join(header, parts)) <= max_chars:
        return _join(header, parts)

    actions: list[str] = []
    blocks, count = truncate_outputs(blocks)
    if count:
        actions.append(f"truncated {count} long outputs")
        text = _with_notice(blocks, render, collapse, max_chars, actions)
        if len(text) <= max_chars:
            return text
    blocks, count = drop_code(blocks)
    if count:
        actions.append(f"removed the code of {count} cells")
        text = _with_notice(blocks, render, collapse, max_chars, actions)
        if len(text) <= max_chars:
            return text
    header, parts = render(blocks, collapse)
    return _cut(header, parts, blocks, render, collapse, max_chars, actions)


def _with_notice(
    blocks: list[Block], render: Render, collapse: int, max_chars: int, actions: list[str]
) -> str:
    header, parts = render(blocks, collapse)
    return _join(header, [_notice(render, collapse, max_chars, actions), *parts])
