"""The text around the cursor that a job carries: a bounded, stable window of the document.

A 10 MB document must not be copied into every job, yet the model's prefix cache is reused only while
the leading part of the prefix stays the same across keystrokes. So the window's start is snapped to a
coarse grid (then to a line start): typing moves the cursor but not the start, and the cache survives.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX_CHARS = 24_000
SUFFIX_CHARS = 8_000
_GRID = 4_096


@dataclass(frozen=True)
class CursorContext:
    prefix: str
    suffix: str


def _clean(text: str) -> str:
    """Lone surrogates (from "\\ud800" escapes in JSON) cannot be encoded for the tokenizer; replace
    each with one "?" so offsets stay put."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def window(text: str, start: int, end: int | None = None) -> CursorContext:
    """Prefix before `start` and suffix after `end` (the hole is start..end; empty for an insertion)."""
    end = start if end is None else end
    first = 0
    if start > PREFIX_CHARS:
        first = (start - PREFIX_CHARS) // _GRID * _GRID + _GRID
        newline = text.find("\n", first, start)
        first = newline + 1 if newline >= 0 else first
    last = min(len(text), end + SUFFIX_CHARS)
    if last < len(text):
        newline = text.rfind("\n", end, last)
        last = newline + 1 if newline >= 0 else last
    return CursorContext(prefix=_clean(text[first:start]), suffix=_clean(text[end:last]))
