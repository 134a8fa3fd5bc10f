"""Never repeat the text right after the cursor.

Two shapes of repetition, both common with a fixed number of hole slots:
- whole lines: a multi-line fill runs on into the suffix's next line (`return x`, a closing `}`);
  the fill is cut before the first line equal to the suffix's next non-blank line.
- a tail: the fill ends with the start of the suffix (`)` or `):` that is already there, or the rest
  of the cursor's line). A tail with letters or digits counts only when it is the whole rest of the
  line and starts at a word boundary, so `x + 1` before `1)` keeps its `1`. A closer in the tail
  that closes a bracket the fill opened is the fill's own and stays.
"""

from __future__ import annotations

import re

from ..hole import Hole
from ..lexer import scan
from ..text import CLOSERS

_WORD = re.compile(r"\w")


def _drop_repeated_lines(completion: str, hole: Hole) -> str:
    following = hole.suffix.split("\n")[1:]
    target = next((line.rstrip() for line in following if line.strip()), None)
    if target is None:
        return completion
    lines = completion.split("\n")
    for j, line in enumerate(lines):
        if j == 0 and hole.line_before.strip():
            continue  # the first line shares the cursor's line, so it is no whole line
        if ((hole.line_before + line) if j == 0 else line).rstrip() == target:
            kept = "\n".join(lines[:j])
            return kept.rstrip() if not hole.line_after.strip() else kept
    return completion


def _is_repetition(head: str, tail: str, hole: Hole) -> bool:
    if not tail.strip():
        return False
    if any(ch in CLOSERS for ch in tail) and scan(head, hole.context.language).open:
        return False
    if not _WORD.search(tail):
        return True
    whole_rest = len(tail) >= len(hole.line_after.rstrip())
    boundary = not head or not (_WORD.match(head[-1]) and _WORD.match(tail[0]))
    return whole_rest and boundary


def _drop_repeated_tail(completion: str, hole: Hole) -> str:
    for k in range(min(len(completion), len(hole.suffix)), 0, -1):
        tail = hole.suffix[:k]
        if completion.endswith(tail) and _is_repetition(completion[:-k], tail, hole):
            return completion[:-k]
    return completion


def drop_suffix_overlap(completion: str, hole: Hole) -> str:
    return _drop_repeated_tail(_drop_repeated_lines(completion, hole), hole)
