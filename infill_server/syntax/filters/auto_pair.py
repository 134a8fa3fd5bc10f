"""Leave an auto-paired closer on its own line.

Editors insert `}` when `{` is typed, so a multi-line fill often goes between `{` and `}` on one
line. A fill that does not end on a fresh line would glue that `}` to its last statement
(`return 1;}`); end it with a newline and the cursor line's indentation instead.
"""

from __future__ import annotations

from ..context import Mode
from ..hole import Hole
from ..text import closers_only, leading_ws


def end_before_auto_paired_closer(completion: str, hole: Hole) -> str:
    if hole.context.mode is not Mode.MULTI_LINE or "\n" not in completion.rstrip():
        return completion
    if not closers_only(hole.line_after):
        return completion
    body = completion.rstrip()
    tail = completion[len(body) :]
    if "\n" in tail:
        # The fill already ends on a fresh line: keep its indentation there, drop extra blank lines.
        return body + "\n" + tail.rsplit("\n", 1)[1]
    return body + "\n" + leading_ws(hole.line_before)
