"""Line and indentation helpers shared by the cursor analysis and the filters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

OPENERS = "([{"
CLOSERS = ")]}"
MATCHING = {")": "(", "]": "[", "}": "{"}

TAB_WIDTH = 4
# How far from the cursor the line-based heuristics look; keeps every request O(window), not O(document).
WINDOW_CHARS = 32_000
STYLE_SAMPLE = 6_000  # characters either side of the cursor that decide tabs vs spaces and the unit


def line_before(prefix: str) -> str:
    """Text of the cursor's line before the cursor."""
    return prefix[prefix.rfind("\n") + 1 :]


def line_after(suffix: str) -> str:
    """Text of the cursor's line after the cursor."""
    end = suffix.find("\n")
    return suffix if end == -1 else suffix[:end]


def leading_ws(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def width(ws: str) -> int:
    """Columns of a run of indentation; a tab counts TAB_WIDTH."""
    return sum(TAB_WIDTH if ch == "\t" else 1 for ch in ws)


def closers_only(text: str) -> bool:
    """A run like `)`, `});` or `]:` that only closes things (what auto-pairing leaves after a cursor)."""
    stripped = text.strip()
    return bool(stripped) and stripped[0] in CLOSERS and all(ch in CLOSERS + ";,:" for ch in stripped)


@dataclass(frozen=True)
class IndentStyle:
    """How the file indents: with tabs, or with `unit` spaces a level."""

    tabs: bool
    unit: int

    @property
    def one_level(self) -> str:
        return "\t" if self.tabs else " " * self.unit

    def render(self, columns: int) -> str:
        """Whitespace for an indentation of `columns` in this style."""
        if self.tabs:
            return "\t" * (columns // TAB_WIDTH) + " " * (columns % TAB_WIDTH)
        return " " * columns


def detect_style(text: str, language: str | None) -> IndentStyle:
    """The indentation style that most lines of `text` use; the language's convention when unsure."""
    tabs = spaces = 0
    steps: Counter[int] = Counter()
    previous = 0
    for line in text.split("\n"):
        # ` * ` lines of a block comment are aligned to the `/*`, not indented.
        if not line.strip() or line.lstrip().startswith("*"):
            continue
        ws = leading_ws(line)
        if ws.startswith("\t"):
            tabs += 1
        elif ws:
            spaces += 1
        columns = width(ws)
        if columns > previous and not ws.startswith("\t"):
            steps[columns - previous] += 1
        previous = columns
    if tabs > spaces or (tabs == spaces == 0 and language == "go"):
        return IndentStyle(tabs=True, unit=TAB_WIDTH)
    default = 2 if language in ("javascript", "typescript", "tsx") else 4
    usual = [step for step, _ in steps.most_common() if step in (2, 3, 4, 8)]
    return IndentStyle(tabs=False, unit=usual[0] if usual else default)
