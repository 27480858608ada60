"""Stream text as a terminal shows it at the end: a small screen model.

Progress bars redraw themselves with carriage returns, backspaces and cursor
movement (``tqdm`` with nested bars writes ``\\n`` to reach its row, the frame,
then ``\\x1b[A`` to climb back). Stripping those codes keeps every frame; applying
them, as a terminal does, keeps what a person saw last. Only the codes programs
use for that are modelled (cursor up/down/left/right/column/position, erase in
line and display); colours and every other escape are dropped.

A ``\\r`` starts the line afresh, as Jupyter's own output area treats it (it keeps
what follows the last ``\\r``), rather than leaving a longer previous frame's tail.
"""

from __future__ import annotations

import re

# CSI sequences (parameters, intermediates, final byte), other 2-byte escapes and OSC strings.
_TOKEN = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|(?P<control>[\r\n\b])"
)
_NEEDS_MODEL = re.compile(r"[\r\b\x1b]")
#: Rows a cursor-down or position code may open, so hostile output cannot exhaust memory.
MAX_ROWS = 100_000


class Screen:
    """An unbounded-width screen of text lines with a cursor."""

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = 0
        self.col = 0
        self.fresh = False  # after \r: the next text replaces the line's rest

    def _goto(self, row: int, col: int) -> None:
        self.row = max(0, min(row, MAX_ROWS))
        self.col = max(0, col)
        while len(self.lines) <= self.row:
            self.lines.append("")

    def write(self, text: str) -> None:
        """Put printable ``text`` at the cursor, overwriting what is there."""
        line = self.lines[self.row]
        if self.fresh:
            line, self.fresh = line[: self.col], False
        if len(line) < self.col:
            line = line.ljust(self.col)
        self.lines[self.row] = line[: self.col] + text + line[self.col + len(text) :]
        self.col += len(text)

    def control(self, char: str) -> None:
        """A C0 control: newline (which also returns, as in Jupyter), return, backspace."""
        if char == "\n":
            self._goto(self.row + 1, 0)
            self.fresh = False
        elif char == "\r":
            self.col, self.fresh = 0, True
        elif char == "\b":
            self.col = max(0, self.col - 1)

    def csi(self, params: str, final: str) -> None:
        """A CSI sequence (``ESC [ params final``); unknown ones are ignored."""
        if params.startswith("?"):  # private modes: cursor visibility and the like
            return
        numbers = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else []
        n = max(1, numbers[0]) if numbers else 1
        if final == "A":
            self._goto(self.row - n, self.col)
        elif final in "BE":
            self._goto(self.row + n, 0 if final == "E" else self.col)
        elif final == "F":
            self._goto(self.row - n, 0)
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = n - 1
        elif final in "Hf":
            column = max(1, numbers[1]) if len(numbers) > 1 else 1
            self._goto(n - 1, column - 1)
        elif final == "K":
            self._erase_line(numbers[0] if numbers else 0)
        elif final == "J":
            self._erase_display(numbers[0] if numbers else 0)
        self.fresh = False

    def _erase_line(self, mode: int) -> None:
        line = self.lines[self.row]
        if mode == 0:
            self.lines[self.row] = line[: self.col]
        elif mode == 1:
            self.lines[self.row] = " " * min(self.col + 1, len(line)) + line[self.col + 1 :]
        else:
            self.lines[self.row] = ""

    def _erase_display(self, mode: int) -> None:
        if mode == 0:
            self._erase_line(0)
            del self.lines[self.row + 1 :]
        elif mode == 1:
            for row in range(self.row):
                self.lines[row] = ""
            self._erase_line(1)
        else:
            self.lines = [""] * len(self.lines)

    def text(self) -> str:
        """The screen's lines, trailing spaces and trailing blank lines removed."""
        lines = [line.rstrip(" ") for line in self.lines]
        while len(lines) > 1 and not lines[-1]:
            lines.pop()
        return "\n".join(lines)


def render_terminal(text: str) -> str:
    """``text`` as a terminal would show it once everything was written.

    Text without carriage returns, backspaces or escapes is returned unchanged
    (its final newline included).
    """
    if not _NEEDS_MODEL.search(text):
        return text
    text = text.replace("\r\n", "\n")
    screen = Screen()
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() > position:
            screen.write(text[position : match.start()])
        position = match.end()
        if match.group("control"):
            screen.control(match.group("control"))
        elif match.group("final"):
            screen.csi(match.group("params"), match.group("final"))
    if position < len(text):
        screen.write(text[position:])
    rendered = screen.text()
    return rendered + "\n" if text.endswith("\n") and rendered else rendered
