"""What every post-processing filter knows about the place a completion goes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .context import Context
from .text import STYLE_SAMPLE, WINDOW_CHARS, IndentStyle, detect_style, line_after, line_before
from .window import window_bounds


@dataclass(frozen=True)
class Hole:
    prefix: str  # the document before the cursor, cut to a window that starts at a line start
    suffix: str  # the document after the cursor, cut to a window
    context: Context
    line_before: str  # the cursor's line before the cursor
    line_after: str  # the cursor's line after the cursor
    style: IndentStyle  # how the file indents

    @classmethod
    def around(cls, prefix: str, suffix: str, context: Context) -> Hole:
        # Filters scan the prefix and suffix; windows keep that independent of the document's size.
        prefix = prefix[window_bounds(prefix, len(prefix), before=WINDOW_CHARS, after=0)[0] :]
        suffix = suffix[:WINDOW_CHARS]
        style = detect_style(prefix[-STYLE_SAMPLE:] + suffix[:STYLE_SAMPLE], context.language)
        return cls(prefix, suffix, context, line_before(prefix), line_after(suffix), style)


# Every filter has this one signature: the completion so far in, the filtered completion out.
Filter = Callable[[str, Hole], str]
