"""Fit a fill's indentation to the cursor's block, with tabs or spaces as the file uses.

- Continuation lines keep their columns but are re-rendered in the file's style (tabs vs spaces).
- The first line, when it starts a line (blank cursor line), is moved to the block's indentation.
- A fill that starts with a newline (cursor at the end of a line) is shifted as a whole so that its
  first line sits at the block's indentation, but only when the model's indentation is clearly
  wrong: not deeper than the cursor's line (a body left unindented), or off the file's grid (2
  spaces in a 4-space file). A deeper, on-grid indentation is the model's call: continuation lines
  of a ternary or a chained call are indented one level more than a plain body.
"""

from __future__ import annotations

from ..hole import Hole
from ..text import TAB_WIDTH, IndentStyle, closers_only, leading_ws, width


def _columns(ws: str, style: IndentStyle) -> int:
    # A tab in a space-indented file stands for one of the file's levels.
    tab = TAB_WIDTH if style.tabs else style.unit
    return sum(tab if ch == "\t" else 1 for ch in ws)


def _reindent(line: str, shift: int, style: IndentStyle) -> str:
    if not line.strip():
        return line
    ws = leading_ws(line)
    return style.render(max(0, _columns(ws, style) + shift)) + line[len(ws) :]


def fit_indentation(completion: str, hole: Hole) -> str:
    lines = completion.split("\n")
    target = width(hole.context.indent)
    shift = 0
    if not lines[0].strip():
        anchor = next((line for line in lines[1:] if line.strip()), None)
        # A lone closer belongs to an outer block, so it says nothing about the body's indentation.
        if anchor is not None and not closers_only(anchor):
            found = _columns(leading_ws(anchor), hole.style)
            line = _columns(leading_ws(hole.line_before), hole.style)
            step = TAB_WIDTH if hole.style.tabs else hole.style.unit
            if found <= line or (found - line) % step:
                shift = target - found
    rest = [_reindent(line, shift, hole.style) for line in lines[1:]]

    first = lines[0]
    if not hole.line_before.strip() and first.strip():
        # The first line starts the cursor's line: whatever the user typed plus the fill's own
        # whitespace should come to the block's indentation.
        typed = width(hole.line_before)
        first = hole.style.render(max(0, target - typed)) + first.lstrip(" \t")
    return "\n".join([first, *rest])
