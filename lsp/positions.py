"""LSP positions <-> offsets into a Python string, in the negotiated encoding.

LSP counts columns in UTF-16 code units unless both sides agree on another encoding; Python strings
count code points. An emoji is one code point but two UTF-16 units (and four UTF-8 bytes), so every
position crossing the protocol goes through this module. Lines end at "\\n", "\\r\\n" or "\\r" (the LSP
definition; str.splitlines would also split on form feeds and U+2028, shifting line numbers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lsprotocol import types

UTF8 = types.PositionEncodingKind.Utf8
UTF16 = types.PositionEncodingKind.Utf16

_LINE_END = re.compile(r"\r\n|\r|\n")


def choose_encoding(offered: Sequence[str] | None) -> types.PositionEncodingKind:
    """UTF-8 when the client offers it (no conversion for most text), UTF-16 otherwise (the default
    every client must support)."""
    if offered and UTF8 in offered:
        return UTF8
    return UTF16


def _units(char: str, encoding: str) -> int:
    code = ord(char)
    if encoding == UTF8:
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    if encoding == UTF16:
        return 2 if code >= 0x10000 else 1
    return 1  # utf-32: code points


def _column_to_chars(line: str, column: int, encoding: str) -> int:
    """Code points covering `column` units of `line`; a column inside a character or past the end is
    clamped (the spec says a column past the line means the line's end)."""
    if encoding not in (UTF8, UTF16) or line.isascii():
        return min(column, len(line))
    units = 0
    for index, char in enumerate(line):
        units += _units(char, encoding)
        if units > column:
            return index
    return len(line)


def _chars_to_units(text: str, encoding: str) -> int:
    if encoding not in (UTF8, UTF16) or text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return sum(_units(char, encoding) for char in text)


def _line_start(text: str, line: int) -> int | None:
    """Offset where `line` starts, or None when the text has fewer lines."""
    if line == 0:
        return 0
    for count, match in enumerate(_LINE_END.finditer(text), start=1):
        if count == line:
            return match.end()
    return None


def offset_at(text: str, position: types.Position, encoding: str) -> int:
    """Offset into `text` of a client position; positions past the end clamp to the end."""
    start = _line_start(text, max(position.line, 0))
    if start is None:
        return len(text)
    terminator = _LINE_END.search(text, start)
    end = terminator.start() if terminator else len(text)
    return start + _column_to_chars(text[start:end], max(position.character, 0), encoding)


def position_at(text: str, offset: int, encoding: str) -> types.Position:
    """Client position of an offset into `text` (clamped to the text)."""
    offset = min(max(offset, 0), len(text))
    line = 0
    line_start = 0
    for match in _LINE_END.finditer(text, 0, offset):
        line += 1
        line_start = match.end()
    return types.Position(line=line, character=_chars_to_units(text[line_start:offset], encoding))


def end_after_insert(start: types.Position, inserted: str, encoding: str) -> types.Position:
    """Where `inserted` ends when placed at `start`: the range a client needs to draw or select it."""
    lines = _LINE_END.split(inserted)
    if len(lines) == 1:
        return types.Position(
            line=start.line, character=start.character + _chars_to_units(inserted, encoding)
        )
    return types.Position(line=start.line + len(lines) - 1, character=_chars_to_units(lines[-1], encoding))
