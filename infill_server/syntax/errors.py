"""How many syntax errors a fill would leave in its document.

The engine fills a single-line hole at several sizes and keeps one; a fill that breaks the document (an
unclosed call, `from logging` with no import) is rarely what its writer meant, so the service lets the
engine prefer fills with fewer errors (engine/weights/MODEL_CARD.md, session 18).
"""

from __future__ import annotations

from collections.abc import Callable

from .context import Context
from .postprocess import postprocess
from .window import parse_around


def syntax_errors(text: str, offset: int, language: str) -> int:
    """ERROR and MISSING nodes in tree-sitter's parse of `text` (of the window around `offset` when the
    document is large). Only subtrees that hold an error are walked."""
    count, stack = 0, [parse_around(text, offset, language).tree.root_node]
    while stack:
        node = stack.pop()
        count += node.is_error or node.is_missing
        if node.has_error:
            stack.extend(node.children)
    return count


def fill_errors(prefix: str, suffix: str, context: Context) -> Callable[[str], int] | None:
    """fill -> syntax errors of the document with that fill as it would be shown (post-processed) in the
    hole; None where the language has no grammar here."""
    language = context.language
    if language is None:
        return None

    def count(fill: str) -> int:
        return syntax_errors(prefix + postprocess(fill, prefix, suffix, context) + suffix, len(prefix), language)

    return count
