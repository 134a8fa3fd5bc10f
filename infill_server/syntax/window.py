"""Parse the part of a document around the cursor.

tree-sitter parses at roughly a few MB/s from Python, so a 10 MB file would take seconds per
keystroke. The node at the cursor only needs nearby code, so large documents are cut to a window of
whole lines around the cursor, started at a top-level line so that the window parses cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter

from .languages import parser_for

LARGE_DOCUMENT = 64_000  # characters; smaller documents are parsed whole
WINDOW_BEFORE = 32_000
WINDOW_AFTER = 8_000


@dataclass(frozen=True)
class ParsedWindow:
    tree: tree_sitter.Tree
    cursor_byte: int  # the cursor as a UTF-8 byte offset into the window
    start: int  # character offset of the window in the document


def _top_level_line(text: str, lo: int, hi: int) -> int | None:
    """Start of the last line in text[lo:hi] that begins without indentation."""
    pos = hi
    while (newline := text.rfind("\n", lo, pos)) != -1:
        if newline + 1 < len(text) and not text[newline + 1].isspace():
            return newline + 1
        pos = newline
    return None


def window_bounds(
    text: str, offset: int, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER
) -> tuple[int, int]:
    """Character range [start, end) of whole lines around offset, starting at a top-level line if one is near."""
    if len(text) <= before + after:
        return 0, len(text)
    start = max(0, offset - before)
    if start > 0:
        # Prefer to widen up to a top-level line (one more `before` at most); else the next line start.
        top = _top_level_line(text, max(0, start - before), start)
        start = top if top is not None else text.find("\n", start, offset) + 1 or start
    end = min(len(text), offset + after)
    newline = text.find("\n", end)
    end = len(text) if newline == -1 else newline
    return start, end


def parse_around(text: str, offset: int, language: str) -> ParsedWindow:
    start, end = (0, len(text)) if len(text) <= LARGE_DOCUMENT else window_bounds(text, offset)
    cursor_byte = len(text[start:offset].encode("utf-8"))
    tree = parser_for(language).parse(text[start:end].encode("utf-8"))
    return ParsedWindow(tree, cursor_byte, start)
