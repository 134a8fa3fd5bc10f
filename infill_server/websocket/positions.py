"""LSP-style positions -> offsets into a Python string.

`line` is 0-based; `character` counts UTF-16 code units, as LSP and JavaScript strings do, so a client
written in JavaScript can send `text.length`-style columns. A Python str indexes code points, and a
character outside the Basic Multilingual Plane (most emoji) is one code point but two UTF-16 units.
Line breaks are `\\n`, `\\r\\n` and `\\r`, as in LSP.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class PositionError(ValueError):
    """The position does not name a place in the document (past the end, or inside a surrogate pair)."""


def line_bounds(text: str, line: int) -> tuple[int, int]:
    """(start, end) offsets of `line`'s content, without its line break."""
    if line < 0:
        raise PositionError(f"line {line} is negative")
    start = 0
    for index, match in enumerate(_LINE_BREAK.finditer(text)):
        if index == line:
            return start, match.start()
        start = match.end()
    last = len(_LINE_BREAK.findall(text))
    if line == last:
        return start, len(text)
    raise PositionError(f"line {line} is past the end of the document ({last + 1} lines)")


def offset_at(text: str, line: int, character: int) -> int:
    """Offset of (line, character) in `text`; `character` may be the line's length (end of line)."""
    if character < 0:
        raise PositionError(f"character {character} is negative")
    start, end = line_bounds(text, line)
    units = 0
    for offset in range(start, end):
        if units == character:
            return offset
        units += 2 if ord(text[offset]) > 0xFFFF else 1
        if units > character:
            raise PositionError(f"character {character} on line {line} falls inside a surrogate pair")
    if units == character:
        return end
    raise PositionError(f"character {character} is past the end of line {line} ({units} UTF-16 units)")
