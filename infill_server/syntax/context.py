"""What kind of hole the cursor is in: single- or multi-line, how many slots, which indentation.

The decision reads the tree-sitter node at the cursor (inside a string or comment? inside which
bracket?) and the cursor's line. Where the tree is broken near the cursor, which is most of the time
while someone types, the bracket scanner answers instead; with no language, only the scanner does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .languages import COMMENT_TYPES, STRING_TYPES
from .lexer import Bracket, scan
from .text import (
    CLOSERS,
    MATCHING,
    OPENERS,
    STYLE_SAMPLE,
    WINDOW_CHARS,
    closers_only,
    detect_style,
    leading_ws,
    width,
)
from .window import ParsedWindow, parse_around, window_bounds


class Mode(enum.Enum):
    SINGLE_LINE = "single_line"
    MULTI_LINE = "multi_line"


class Reason(enum.Enum):
    """Why the cursor got its mode, named after what is at the cursor (logged by the service)."""

    STRING_OR_COMMENT = "string_or_comment"
    TEXT_AFTER_CURSOR = "text_after_cursor"
    INSIDE_BRACKETS = "inside_brackets"  # inside ( ) or [ ]: an argument or an element
    END_OF_LINE = "end_of_line"  # the end of a line that opens nothing: finish the statement
    BLANK_LINE_IN_BLOCK = "blank_line_in_block"
    AFTER_BLOCK_OPENER = "after_block_opener"  # `def f():`, `{`, `=>` at the end of the line
    # a line of its own inside ( ) or [ ]: arguments or elements, often several, one a line
    BLANK_LINE_IN_BRACKETS = "blank_line_in_brackets"
    BLANK_LINE_IN_TEXT = "blank_line_in_text"  # in a docstring, a block comment or a multi-line string


_MODE = {
    Reason.STRING_OR_COMMENT: Mode.SINGLE_LINE,
    Reason.TEXT_AFTER_CURSOR: Mode.SINGLE_LINE,
    Reason.INSIDE_BRACKETS: Mode.SINGLE_LINE,
    Reason.END_OF_LINE: Mode.SINGLE_LINE,
    Reason.BLANK_LINE_IN_BLOCK: Mode.MULTI_LINE,
    Reason.AFTER_BLOCK_OPENER: Mode.MULTI_LINE,
    Reason.BLANK_LINE_IN_BRACKETS: Mode.MULTI_LINE,
    Reason.BLANK_LINE_IN_TEXT: Mode.MULTI_LINE,
}
# Hole slots: a gap inside a line is short; a block opener promises a whole body, a blank line
# in a body usually one or two statements.
_MAX_TOKENS = {
    Reason.STRING_OR_COMMENT: 16,
    Reason.TEXT_AFTER_CURSOR: 16,
    Reason.INSIDE_BRACKETS: 16,
    Reason.END_OF_LINE: 24,
    Reason.BLANK_LINE_IN_BLOCK: 48,
    Reason.AFTER_BLOCK_OPENER: 64,
    Reason.BLANK_LINE_IN_BRACKETS: 48,
    Reason.BLANK_LINE_IN_TEXT: 48,
}
# The single-line reading of each blank line, which an explicit request offers beside the block (one_statement).
_ONE_LINE = {
    Reason.BLANK_LINE_IN_BLOCK: Reason.END_OF_LINE,
    Reason.BLANK_LINE_IN_BRACKETS: Reason.INSIDE_BRACKETS,
    Reason.BLANK_LINE_IN_TEXT: Reason.STRING_OR_COMMENT,
}


@dataclass(frozen=True)
class Context:
    language: str | None
    mode: Mode
    max_tokens: int
    indent: str  # indentation the fill's lines belong at (the body's, after a block opener)
    reason: Reason = Reason.END_OF_LINE


class _Enclosure(enum.Enum):
    BLOCK = "block"  # a body, `{ }`, or the top level
    INLINE = "inline"  # ( ) or [ ]


def _tree_facts(window: ParsedWindow, language: str) -> tuple[bool, _Enclosure | None]:
    """(inside a string or comment, innermost enclosure or None when the tree is too broken to say)."""
    root = window.tree.root_node
    b = window.cursor_byte
    node = root.descendant_for_byte_range(b - 1, b - 1) if b > 0 else root
    chain = []
    while node is not None:
        chain.append(node)
        node = node.parent
    strings = STRING_TYPES[language]
    in_text = any(
        (n.type in strings and n.start_byte < b < n.end_byte)
        # A line comment runs to the line end, so its end is still inside; `*/` is not.
        or (
            n.type in COMMENT_TYPES
            and n.start_byte < b <= n.end_byte
            and not (b == n.end_byte and n.text.endswith(b"*/"))
        )
        for n in chain
    )
    for n in chain:
        if n.is_error:
            return in_text, None
        if language == "python" and n.type == "block":
            return in_text, _Enclosure.BLOCK
        first = n.child(0) if n.child_count else None
        if first is None or first.type not in OPENERS or first.end_byte > b:
            continue
        last = n.child(n.child_count - 1)
        if last is not first and last.type in CLOSERS and not last.is_missing and last.start_byte < b:
            continue  # the cursor is after this bracket pair, not inside it
        return in_text, _Enclosure.INLINE if first.type in "([" else _Enclosure.BLOCK
    return in_text, None if root.has_error else _Enclosure.BLOCK


def _opens_block(line: str, language: str | None, inside_brackets: bool) -> bool:
    code = line.rstrip()
    if code.endswith(("{", "=>")):
        return True
    # Python's `:` opens a body only outside brackets (inside, it is a dict entry or a slice).
    return language in ("python", None) and code.endswith(":") and not inside_brackets


def _neighbour_indent(
    prefix_lines: list[str], suffix_lines: list[str], language: str | None, unit: str
) -> str:
    """Indentation for a blank line where nothing is typed yet, read from the lines around it."""
    prev = next((line for line in reversed(prefix_lines) if line.strip()), None)
    following = next((line for line in suffix_lines if line.strip()), None)
    if prev is None:
        return ""
    # A comment that ends in `:` or `{` opens nothing.
    if _opens_block(prev, language, inside_brackets=False) and not scan(prev, language).inside:
        return leading_ws(prev) + unit
    if following is None:
        return ""
    # Between two lines of a body, the body's indentation; after a body's last line, the outer one.
    return min(leading_ws(prev), leading_ws(following), key=width)


def _statement_indent(window: str, line_start: int, events: list[Bracket]) -> str | None:
    """Indentation of the line where the cursor line's statement began, when a bracket spans lines.

    `for x in (a,\n           b):` has its body indented from `for`, not from the continuation line.
    """
    stack: list[Bracket] = []
    at_line: list[Bracket] | None = None
    lowest = 0
    for bracket in events:
        if at_line is None and bracket.pos >= line_start:
            at_line, lowest = list(stack), len(stack)
        if bracket.char in OPENERS:
            stack.append(bracket)
            continue
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth].char == MATCHING[bracket.char]:
                del stack[depth:]
                break
        if at_line is not None:
            lowest = min(lowest, len(stack))
    if at_line is None or lowest >= len(at_line):
        return None
    opener = at_line[lowest]
    return leading_ws(window[window.rfind("\n", 0, opener.pos) + 1 : opener.pos])


def analyze(text: str, offset: int, language: str | None) -> Context:
    """Mode, hole size and indentation for a cursor at character `offset` of `text`."""
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end == -1 else line_end
    before, after = text[line_start:offset], text[offset:line_end]

    lo = window_bounds(text, offset, before=WINDOW_CHARS, after=0)[0]
    lexed = scan(text[lo:offset], language)
    in_text, enclosure = lexed.inside, None
    if language is not None:
        tree_in_text, enclosure = _tree_facts(parse_around(text, offset, language), language)
        in_text = in_text or tree_in_text
    if enclosure is None:
        enclosure = _Enclosure.INLINE if lexed.open and lexed.open[-1].char in "([" else _Enclosure.BLOCK

    # A line with nothing on it yet is where lines are written, whatever encloses it: arguments one a line,
    # a docstring's paragraph. Filled as a block, as in a block (MODEL_CARD.md, session 21).
    blank = not (before + after).strip()
    if in_text:
        reason = Reason.BLANK_LINE_IN_TEXT if blank else Reason.STRING_OR_COMMENT
    elif after.strip() and not closers_only(after):
        reason = Reason.TEXT_AFTER_CURSOR
    elif enclosure is _Enclosure.INLINE:
        reason = Reason.BLANK_LINE_IN_BRACKETS if blank else Reason.INSIDE_BRACKETS
    elif not before.strip():
        reason = Reason.BLANK_LINE_IN_BLOCK
    elif _opens_block(before, language, inside_brackets=bool(lexed.open)):
        reason = Reason.AFTER_BLOCK_OPENER
    else:
        reason = Reason.END_OF_LINE

    style = detect_style(text[max(lo, offset - STYLE_SAMPLE) : offset + STYLE_SAMPLE], language)
    if reason is Reason.AFTER_BLOCK_OPENER:
        header = _statement_indent(text[lo:offset], line_start - lo, lexed.events)
        indent = (leading_ws(before) if header is None else header) + style.one_level
    elif not (before + after).strip() and not before:
        prefix_lines = text[lo:line_start].split("\n")
        suffix_lines = text[line_end : line_end + WINDOW_CHARS].split("\n")
        indent = _neighbour_indent(prefix_lines, suffix_lines, language, style.one_level)
    else:
        indent = leading_ws(before + after)
    return Context(language, _MODE[reason], _MAX_TOKENS[reason], indent, reason)


def one_statement(context: Context) -> Context | None:
    """The one-line reading of a blank line (in a block, in brackets or in text), which `analyze` fills as a block.

    Whether a blank line wants one statement or several is open even to a reader, and the model's own
    likelihood does not tell them apart (MODEL_CARD.md, session 17): on held-out blank lines a one-line
    fill is exact 3x as often where one line was cut, a block fill twice as similar where several were.
    So an explicit request offers both. None where the cursor is not on a blank line.
    """
    line = _ONE_LINE.get(context.reason)
    if line is None:
        return None
    return replace(context, mode=_MODE[line], max_tokens=_MAX_TOKENS[line], reason=line)
