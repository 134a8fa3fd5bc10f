"""The word at the cursor, and the words the document already spells.

A small model often finishes a half-typed name into one that exists nowhere: `dayPositionValues` where the
file says `dayPeriodValues` a screen up, `ArgumentOutOfRangeError` written as `Array`. On 736 held-out
single lines, where the kept fill finished the cursor's word into a word that the document never spells
while the document had a longer word that begins as the typed part, the fill was wrong 104 times out of
118 (MODEL_CARD.md, session 20). `word_completion` tells the engine when that happens and which word to
type first; the engine then fills again after it and ranks that fill with its own.

Plain regular-expression searches: no list of the document's words is ever built, so a long document
costs a scan for the typed part's occurrences and, per distinct fill, one for the fill's word.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Sequence
from functools import cache

import tree_sitter

from .languages import grammar_for

# a name as Python, JavaScript/TypeScript, Go and Rust spell one (`$` for JavaScript)
WORD = re.compile(r"(?:[^\W\d]|\$)[\w$]*")
TYPED_WORD = re.compile(r"(?<![\w$])(?:[^\W\d]|\$)[\w$]*$")
WORD_CHARS = re.compile(r"[\w$]*")
LONGEST_WORD = 256  # characters before the cursor searched for its word
# how far each way the document is read, and the other open documents (as the document lookup reads them)
MAX_DOCUMENT_CHARS = 256_000
MAX_OTHER_DOCUMENTS = 8


def word_completion(prefix: str, suffix: str, language: str | None,
                    others: Sequence[str] = ()) -> Callable[[str], str] | None:
    """fill -> the characters to type at the cursor before filling again, or "" when the fill needs none.

    None when the cursor does not end a typed part of a word, or no word of the document begins with
    that part and is longer. Otherwise a fill needs them when it finishes the typed part into a word that
    neither the document, nor `others` (the text of other open documents), nor the language (its keywords,
    and Python's builtins) spells: then the characters that complete the document's most frequent longer
    word (the nearest, between equals)."""
    tail = prefix[-LONGEST_WORD:]
    typed = TYPED_WORD.search(tail)
    if typed is None or (typed.start() == 0 and len(tail) < len(prefix)):
        return None  # no word at the cursor, or one too long to be a name
    part = typed.group(0)
    cursor = len(prefix) - len(part)  # where the word starts
    before = prefix[max(0, cursor - MAX_DOCUMENT_CHARS) : cursor]
    after = suffix[:MAX_DOCUMENT_CHARS]
    longer = re.compile(r"(?<![\w$])" + re.escape(part) + r"[\w$]+")
    found: dict[str, tuple[int, int]] = {}  # word -> (-occurrences, distance to the cursor)
    for text, distance in ((before, lambda at: len(before) - at), (after, lambda at: at)):
        for match in longer.finditer(text):
            count, nearest = found.get(match.group(0), (0, len(before) + len(after)))
            found[match.group(0)] = (count - 1, min(nearest, distance(match.start())))
    if not found:
        return None
    best = min(found, key=found.__getitem__)
    texts = (before, after, *(other[:MAX_DOCUMENT_CHARS] for other in others[:MAX_OTHER_DOCUMENTS]))

    def needs(fill: str) -> str:
        word = part + WORD_CHARS.match(fill).group(0)  # type: ignore[union-attr]  # it matches any text
        if word in found or word in language_words(language):
            return ""
        spelled = re.compile(r"(?<![\w$])" + re.escape(word) + r"(?![\w$])")
        return "" if any(spelled.search(text) for text in texts) else best[len(part) :]

    return needs


@cache
def language_words(language: str | None) -> frozenset[str]:
    """The keywords of a language's tree-sitter grammar (its unnamed nodes that look like words), and for
    Python its builtins: names a fill may spell that no document need."""
    if language is None:
        return frozenset()
    grammar = tree_sitter.Language(grammar_for(language))
    words = {grammar.node_kind_for_id(kind) or "" for kind in range(grammar.node_kind_count)
             if not grammar.node_kind_is_named(kind) and grammar.node_kind_is_visible(kind)}
    if language == "python":
        words.update(dir(builtins))
    return frozenset(word for word in words if WORD.fullmatch(word))
