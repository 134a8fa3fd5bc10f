"""Keep brackets balanced with the suffix.

Walk the fill's brackets (outside strings and comments) against the brackets left open before the
cursor. The fill is cut at the first closer that
- closes a bracket the suffix already closes (the model's `)` before the user's `)`), or
- matches nothing (a `]` where a `)` is open, or a closer with nothing open).
A closer for a bracket opened before the cursor stays when the suffix lacks it (typing at the end of
a file). Which prefix bracket a suffix closer belongs to is decided by indentation when the closer
starts its line: a `}` at column 0 closes the function, not the `if` the cursor is in.
"""

from __future__ import annotations

from ..hole import Hole
from ..lexer import Bracket, scan
from ..text import MATCHING, OPENERS


def _closed_by_suffix(open_before: list[Bracket], hole: Hole) -> set[int]:
    """Indices into open_before of the brackets that the suffix closes."""
    after = scan(
        hole.line_before + hole.suffix,
        hole.context.language,
        start=len(hole.line_before),
        max_stray=len(open_before),
    )
    closed: set[int] = set()
    j = len(open_before) - 1
    for closer in after.stray:
        # An outdented closer on its own line skips the deeper brackets: the suffix lacks their closers.
        while j >= 0 and closer.starts_line and open_before[j].indent > closer.indent:
            j -= 1
        if j < 0 or open_before[j].char != MATCHING[closer.char]:
            break
        closed.add(j)
        j -= 1
    return closed


def _first_bad_closer(completion: str, hole: Hole) -> int | None:
    """Index in completion where the fill should end, or None when its brackets are fine."""
    language = hole.context.language
    before = scan(hole.prefix, language)
    if before.inside:
        return None  # in a string or comment, brackets are prose
    closed = _closed_by_suffix(before.open, hole)
    own: list[str] = []
    outer = len(before.open)
    fill = scan(hole.line_before + completion, language, start=len(hole.line_before))
    for bracket in fill.events:
        at = bracket.pos - len(hole.line_before)
        if bracket.char in OPENERS:
            own.append(bracket.char)
        elif own:
            if own.pop() != MATCHING[bracket.char]:
                return at
        else:
            outer -= 1
            if outer < 0 or before.open[outer].char != MATCHING[bracket.char] or outer in closed:
                return at
    return None


def balance_brackets(completion: str, hole: Hole) -> str:
    cut = _first_bad_closer(completion, hole)
    if cut is None:
        return completion
    text = completion[:cut]
    body = text.rstrip()
    if not hole.line_after.strip():
        return body
    # Whitespace that ends in a newline places the suffix's closer on its own line: keep it.
    return text if "\n" in text[len(body) :] else body
