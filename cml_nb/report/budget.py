"""Keep a Markdown report under a forge's size limit, degrading in visible steps.

Steps, each tried only when the previous one was not enough:

1. fold every long output into ``<details>``;
2. truncate long outputs (keep their head and tail: long streams first of all),
   long tables and big HTML;
3. drop code, largest cells first (the failing cell's last), only as much as needed;
4. drop outputs identical to an earlier one;
5. cut cells from the middle: the start, the end (where the results are) and the
   failing cell stay, and a note marks each gap;
6. only if the header alone is too big: cut the header.

The header (status, error summary, metrics) is never dropped. Whenever something
was, a notice under the header says what, and where the full report is: a URL
when it is hosted (:class:`Plan`), else report.html in the run's artifact. The
result never exceeds the limit, whatever the notebook holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

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


#: Where the notice sends readers for everything: ``{url}`` when the full report is hosted.
FULL_REPORT_HOSTED = "The full report: {url}"
FULL_REPORT_ARTIFACT = "The full report is report.html in the run's artifact."


@dataclass
class Plan:
    """What the last steps may cut, and what they must keep.

    Attributes:
        keep_cells: cells never cut (the failing cell).
        full_report: URL of the hosted full report, named in the notice.
    """

    keep_cells: frozenset[int] = frozenset()
    full_report: str | None = None


def _notice(render: Render, collapse: int, max_chars: int, actions: list[str], plan: Plan) -> str:
    where = (
        FULL_REPORT_HOSTED.format(url=plan.full_report)
        if plan.full_report
        else FULL_REPORT_ARTIFACT
    )
    text = f"✂️ This report was shortened to fit {max_chars:,} characters: {', '.join(actions)}. "
    return render([NoteBlock(text + where, level="warning")], collapse)[1][0]


def _size(header: str, parts: list[str], keep: list[bool]) -> int:
    return len(header) + sum(
        len(p) + len(SEPARATOR) for p, k in zip(parts, keep, strict=True) if p and k
    )


def _with_notice(
    blocks: list[Block], render: Render, collapse: int, max_chars: int, actions: list[str],
    plan: Plan,
) -> str:  # fmt: skip
    header, parts = render(blocks, collapse)
    return _join(header, [_notice(render, collapse, max_chars, actions, plan), *parts])


def _drop_code(
    blocks: list[Block], parts: list[str], header: str, fits: Callable[[int, list[str]], bool],
    plan: Plan,
) -> tuple[list[bool], int]:  # fmt: skip
    """Code blocks dropped largest first (the failing cell's last) until the rest fits."""
    keep = [True] * len(blocks)
    order = sorted(
        (i for i, b in enumerate(blocks) if isinstance(b, CodeBlock)),
        key=lambda i: (blocks[i].cell in plan.keep_cells, -len(parts[i])),
    )
    size = _size(header, parts, keep)
    dropped = 0
    for index in order:
        if fits(size, [f"removed the code of {dropped} cells"]):
            break
        keep[index] = False
        size -= len(parts[index]) + len(SEPARATOR) if parts[index] else 0
        dropped += 1
    return keep, dropped


def _drop_repeats(blocks: list[Block], parts: list[str], keep: list[bool], plan: Plan) -> int:
    """Outputs identical to an earlier one dropped (the failing and last cells' kept)."""
    last = next((b.cell for b in reversed(blocks) if b.cell is not None), None)
    seen: set[str] = set()
    dropped = 0
    for index, (block, part) in enumerate(zip(blocks, parts, strict=True)):
        if not keep[index] or not part or block.role != "output" or isinstance(block, NoteBlock):
            continue
        if part in seen and block.cell not in plan.keep_cells and block.cell != last:
            keep[index] = False
            dropped += 1
        seen.add(part)
    return dropped


def _groups(blocks: list[Block], keep: list[bool]) -> list[list[int]]:
    """Indexes of kept blocks, grouped by cell (consecutive blocks of one cell)."""
    groups: list[list[int]] = []
    for index, block in enumerate(blocks):
        if not keep[index]:
            continue
        if groups and block.cell is not None and blocks[groups[-1][-1]].cell == block.cell:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def _cut_middle(
    header: str, parts: list[str], blocks: list[Block], keep: list[bool], render: Render,
    collapse: int, max_chars: int, actions: list[str], plan: Plan,
) -> str | None:  # fmt: skip
    """Keep the start and the end (and the failing cell), cut cells from the middle.

    Returns None when not even the last cell fits beside the header.
    """
    groups = _groups(blocks, keep)
    cost = [sum(len(parts[i]) + len(SEPARATOR) for i in g if parts[i]) for g in groups]
    gap_note = render([NoteBlock("✂️ 9999 blocks of cells 99999–99999 left out here.")], collapse)
    worst = _notice(render, collapse, max_chars, [*actions, "left out 99999 blocks of cells "
                    "99999–99999, 99999–99999 and others from the middle"], plan)  # fmt: skip
    room = max_chars - len(header) - len(worst) - 2 * len(SEPARATOR)
    chosen = [any(blocks[i].cell in plan.keep_cells for i in g) for g in groups]
    gap = len(gap_note[1][0]) + len(SEPARATOR)  # each cut run gets a note where it was
    room -= sum(c for c, k in zip(cost, chosen, strict=True) if k) + gap * (sum(chosen) + 1)

    def take(index: int, limit: int) -> int | None:
        """Choose a group if it fits in ``limit``; what it cost (0 if already chosen)."""
        nonlocal room
        if chosen[index]:
            return 0
        if cost[index] > min(limit, room):
            return None
        chosen[index], room = True, room - cost[index]
        return cost[index]

    # The last cell first (the results), then the end up to half the room, then the
    # start, then the end again with what is left.
    back = len(groups) - 1
    if groups and take(back, room) is not None:
        back -= 1
        end_share = room // 2
        while back >= 0 and (spent := take(back, end_share)) is not None:
            end_share -= spent
            back -= 1
    front = 0
    while front <= back and take(front, room) is not None:
        front += 1
    while back >= front and take(back, room) is not None:
        back -= 1
    out: list[str] = []
    cut_ranges: list[str] = []
    omitted = 0
    run: list[int] = []

    def close_run() -> None:
        nonlocal omitted
        if not run:
            return
        cells = [c for g in run for i in groups[g] if (c := blocks[i].cell) is not None]
        count = sum(len(groups[g]) for g in run)
        omitted += count
        span = f"{min(cells)}–{max(cells)}" if cells and min(cells) != max(cells) else (
            str(cells[0]) if cells else "")  # fmt: skip
        cut_ranges.append(span)
        what = f"cells {span}" if "–" in span else f"cell {span}" if span else "the notebook"
        note = NoteBlock(f"✂️ {count} blocks of {what} left out here.")
        out.append(render([note], collapse)[1][0])
        run.clear()

    for g, group in enumerate(groups):
        if chosen[g]:
            close_run()
            out.extend(parts[i] for i in group)
        else:
            run.append(g)
    close_run()
    named = [r for r in cut_ranges if r][:2]
    where = " of cells " + " and ".join(named) + (" and others" if len(cut_ranges) > 2 else "")
    notice = _notice(
        render, collapse, max_chars,
        [*actions, f"left out {omitted} blocks{where if named else ''} from the middle"], plan,
    )  # fmt: skip
    text = _join(header, [notice, *out])
    return text if len(text) <= max_chars else None


def _cut_header(header: str, render: Render, collapse: int, max_chars: int, actions: list[str],
                plan: Plan) -> str:  # fmt: skip
    """Even the header does not fit (thousands of metrics): keep its start."""
    notice = _notice(render, collapse, max_chars, [*actions, "cut the header and omitted the body"],
                     plan)  # fmt: skip
    room = max(0, max_chars - len(notice) - len(SEPARATOR) - 2)
    cut = header[:room].rsplit("\n", 1)[0] if "\n" in header[:room] else header[:room]
    return (cut + "\n…" + SEPARATOR + notice)[:max_chars]


def fit(
    blocks: list[Block], render: Render, max_chars: int | None, collapse_lines: int,
    plan: Plan | None = None,
) -> str:  # fmt: skip
    """Render ``blocks`` in at most ``max_chars`` characters (None: no limit).

    Raises:
        ConfigError: ``max_chars`` is too small to hold even a header and a notice.
    """
    plan = plan or Plan()
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
    blocks, count = truncate_outputs(blocks)  # 1. long streams and outputs: head and tail
    if count:
        actions.append(f"truncated {count} long outputs")
        text = _with_notice(blocks, render, collapse, max_chars, actions, plan)
        if len(text) <= max_chars:
            return text
    header, parts = render(blocks, collapse)

    def fits(size: int, more: list[str]) -> bool:
        notice = _notice(render, collapse, max_chars, [*actions, *more], plan)
        return size + len(notice) + len(SEPARATOR) <= max_chars

    keep, count = _drop_code(blocks, parts, header, fits, plan)  # 2. code, largest first
    if count:
        actions.append(f"removed the code of {count} cells")
    repeats = _drop_repeats(blocks, parts, keep, plan)  # 3. repeated outputs
    if repeats:
        actions.append(f"left out {repeats} repeated outputs")
    if (count or repeats) and fits(_size(header, parts, keep), []):
        kept = [p for p, k in zip(parts, keep, strict=True) if k]
        return _join(header, [_notice(render, collapse, max_chars, actions, plan), *kept])
    # 4. cells from the middle: the start, the end and the failing cell stay.
    text_or_none = _cut_middle(
        header, parts, blocks, keep, render, collapse, max_chars, actions, plan
    )
    if text_or_none is not None:
        return text_or_none
    return _cut_header(header, render, collapse, max_chars, actions, plan)
