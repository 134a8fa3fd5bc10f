"""Fills the document already holds: what followed the same text elsewhere in it, or in the other
documents open in the editor.

Code repeats itself (`self.name = name`, an import used further down, the same call with other
arguments, a sibling module's boilerplate), and the model reads only the nearest 512 tokens before the
hole and 64 after it. The line the hole needs is often further away; the engine ranks these texts with its
own fills (InfillRequest.document_candidates).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence

# the text before the cursor that an earlier or later spot must repeat (it may span a newline)
ANCHOR_CHARS = 8
# how far the text around a match is compared with the text around the cursor, each way
COMPARED_CHARS = 256
# a common anchor (`self.`) may occur thousands of times in a large file: the nearest ones are read
MAX_MATCHES = 512
MAX_CANDIDATE_CHARS = 200
# other open documents: the first this many (the caller's order), each read up to this many characters and
# this many matches (a line where every match agrees on nothing costs ~8 us a match)
MAX_OTHER_DOCUMENTS = 8
MAX_OTHER_CHARS = 256_000
MAX_OTHER_MATCHES = 128


def recalled_fills(prefix: str, suffix: str, limit: int = 4,
                   others: Sequence[str] = ()) -> tuple[tuple[str, int], ...]:
    """Up to `limit` (text, matching characters): texts that, elsewhere in the document or in `others`
    (the text of other open documents, the most relevant first), followed the prefix's last ANCHOR_CHARS
    characters, ran to the end of their line and ended with the rest of the cursor's line (which they then
    leave out), with how many characters before and after them (up to COMPARED_CHARS each way) match
    those around the cursor. Best first: by those, then the document itself before others, then the
    nearest."""
    anchor = prefix[-ANCHOR_CHARS:]
    if len(anchor) < ANCHOR_CHARS or len(anchor.strip()) < 2:
        return ()  # blank space or a file's first characters say nothing about what comes next
    line_end = suffix.find("\n")
    pattern = _Pattern(re.compile(re.escape(anchor)), prefix, suffix, suffix if line_end < 0 else suffix[:line_end])
    best: dict[str, tuple[int, int, int]] = {}  # fill -> (-matching characters, document, distance)
    # the matches nearest the cursor on each side; in the prefix, not the one that ends at the cursor
    earlier = [match.end() for match in pattern.regex.finditer(prefix, 0, len(prefix) - 1)][-MAX_MATCHES:]
    later = [match.end() for match in itertools.islice(pattern.regex.finditer(suffix), MAX_MATCHES)]
    pattern.collect(best, prefix, earlier, 0, lambda offset: len(prefix) - offset, line_may_run_on=False)
    pattern.collect(best, suffix, later, 0, lambda offset: offset)
    for rank, other in enumerate(others[:MAX_OTHER_DOCUMENTS], start=1):
        text = other[:MAX_OTHER_CHARS]
        found = [match.end() for match in itertools.islice(pattern.regex.finditer(text), MAX_OTHER_MATCHES)]
        pattern.collect(best, text, found, rank, lambda offset: offset)
    ranked = sorted(best, key=best.__getitem__)
    return tuple((fill, -best[fill][0]) for fill in ranked[:limit])


class _Pattern:
    """The anchor and the text around the cursor that each match is compared with."""

    def __init__(self, regex: re.Pattern[str], prefix: str, suffix: str, rest_of_line: str):
        self.regex, self.prefix, self.suffix, self.rest_of_line = regex, prefix, suffix, rest_of_line

    def collect(self, best: dict[str, tuple[int, int, int]], text: str, offsets: list[int], document: int,
                distance: Callable[[int], int], line_may_run_on: bool = True) -> None:
        """Add the fill after each anchor match (ending at `offsets`) in `text` to `best`, keeping each
        fill's best key. `line_may_run_on`: a line without a newline after it counts (False in the prefix,
        where such a line runs on into the cursor's own)."""
        for offset in offsets:
            line_end = text.find("\n", offset)
            if line_end < 0 and not line_may_run_on:
                continue
            fill = text[offset:] if line_end < 0 else text[offset:line_end]
            if not fill.endswith(self.rest_of_line):
                continue
            fill = fill[: len(fill) - len(self.rest_of_line)]
            if not fill.strip() or len(fill) > MAX_CANDIDATE_CHARS:
                continue
            matching = (_common_tail(self.prefix, text[:offset])
                        + _common_head(self.suffix, text[offset + len(fill) :]))
            key = (-matching, document, distance(offset))
            if fill not in best or key < best[fill]:
                best[fill] = key


def _common_tail(one: str, other: str) -> int:
    """How many of the last COMPARED_CHARS characters the two texts share at their ends."""
    low, high = 0, min(len(one), len(other), COMPARED_CHARS)
    while low < high:  # a binary search: slices compare in C
        middle = (low + high + 1) // 2
        if one[len(one) - middle :] == other[len(other) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_head(one: str, other: str) -> int:
    """How many of the first COMPARED_CHARS characters the two texts share at their starts."""
    low, high = 0, min(len(one), len(other), COMPARED_CHARS)
    while low < high:
        middle = (low + high + 1) // 2
        if one[:middle] == other[:middle]:
            low = middle
        else:
            high = middle - 1
    return low
