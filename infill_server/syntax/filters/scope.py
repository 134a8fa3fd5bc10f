"""Keep a fill inside the cursor's scope: one line in single-line mode, the cursor's block in multi-line.

Multi-line mode stops at the first line that dedents out of the block. A dedented line made only of
closers (`}`, `});`) is kept, since it may close the cursor's block; `brackets` then drops it if the
suffix already has it.
"""

from __future__ import annotations

from ..context import Mode
from ..hole import Hole
from ..text import closers_only, leading_ws, width


def cut_to_scope(completion: str, hole: Hole) -> str:
    nothing_after = not hole.line_after.strip()
    if hole.context.mode is Mode.SINGLE_LINE:
        line = completion.split("\n", 1)[0]
        return line.rstrip() if nothing_after else line

    lines = completion.split("\n")
    block = width(hole.context.indent)
    kept = lines[:1]
    for line in lines[1:]:
        if line.strip() and width(leading_ws(line)) < block:
            if closers_only(line):
                kept.append(line)
            break
        kept.append(line)
    text = "\n".join(kept)
    # Trailing blank lines are noise unless the suffix continues on the cursor's line (an auto-paired
    # `}`): then the last newline and indentation place that closer.
    return text.rstrip() if nothing_after else text
