"""Fills the document already holds: what followed the same text elsewhere in it.

Code repeats itself (`self.name = name`, an import used further down, the same call with other
arguments), and the model reads only the nearest 512 tokens before the hole and 64 after it. The line
the hole needs is often further away in the same document; the engine ranks these texts with its own fills
(InfillRequest.document_candidates).
"""

from __future__ import annotations

import re

# the text before the cursor that an earlier or later spot must repeat (it may span a newline)
ANCHOR_CHARS = 8
# how far the text around a match is compared with the text around the cursor, each way
COMPARED_CHARS = 256
# a common anchor (`self.`) may occur thousands of times in a large file: the nearest ones are read
MAX_MATCHES = 512
MAX_CANDIDATE_CHARS = 200


def recalled_fills(prefix: str, suffix: str, limit: int = 4) -> tuple[tuple[str, int], ...]:
    """Up to `limit` (text, matching characters): texts that, elsewhere in the document, followed the
    prefix's last ANCHOR_CHARS characters, ran to the end of their line and ended with the rest of the
    cursor's line (which they then leave out), with how many characters before and after them (up to
    COMPARED_CHARS each way) match those around the cursor; best first: by those, then the nearest."""
    anchor = prefix[-ANCHOR_CHARS:]
    if len(anchor) < ANCHOR_CHARS or len(anchor.strip()) < 2:
        return ()  # blank space or a file's first characters say nothing about what comes next
    line_end = suffix.find("\n")
    rest_of_line = suffix if line_end < 0 else suffix[:line_end]
    pattern = re.compile(re.escape(anchor))
    best: dict[str, tuple[int, int]] = {}  # fill -> (matching characters, distance from the cursor)
    # the matches nearest the cursor on each side; in the prefix, not the one that ends at the cursor
    earlier = [match.end() for match in pattern.finditer(prefix, 0, len(prefix) - 1)][-MAX_MATCHES:]
    later = [match.end() for match in pattern.finditer(suffix)][:MAX_MATCHES]
    for text, offsets, in_prefix in ((prefix, earlier, True), (suffix, later, False)):
        for offset in offsets:
            line_end = text.find("\n", offset)
            if line_end < 0 and in_prefix:
                continue  # the line runs on into the cursor's own
            fill = text[offset:] if line_end < 0 else text[offset:line_end]
            if not fill.endswith(rest_of_line):
                continue
            fill = fill[: len(fill) - len(rest_of_line)]
            if not fill.strip() or len(fill) > MAX_CANDIDATE_CHARS:
                continue
            matching = _common_tail(prefix, text[:offset]) + _common_head(suffix, text[offset + len(fill) :])
            distance = len(prefix) - offset if in_prefix else offset
            if fill not in best or (-matching, distance) < (-best[fill][0], best[fill][1]):
                best[fill] = (matching, distance)
    ranked = sorted(best, key=lambda fill: (-best[fill][0], best[fill][1]))
    return tuple((fill, best[fill][0]) for fill in ranked[:limit])


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
