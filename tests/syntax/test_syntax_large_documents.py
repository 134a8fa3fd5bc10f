"""Large documents: only a window around the cursor is parsed, so a keystroke stays cheap."""

from __future__ import annotations

import time

from infill_server.syntax import Mode, Reason, analyze, postprocess
from infill_server.syntax.window import LARGE_DOCUMENT, parse_around, window_bounds

FUNCTION = "def f{i}(x):\n    y = x * {i}\n    if y > 10:\n        return y\n    return -y\n\n\n"


def _python_document(size: int) -> str:
    parts, total, i = [], 0, 0
    while total < size:
        parts.append(FUNCTION.format(i=i))
        total += len(parts[-1])
        i += 1
    return "".join(parts)


def test_window_starts_at_a_top_level_line_and_holds_the_cursor() -> None:
    text = _python_document(1_000_000)
    offset = len(text) // 2
    start, end = window_bounds(text, offset)
    assert 0 < start <= offset <= end < len(text)
    assert text[start - 1] == "\n" and not text[start].isspace()
    assert end - start < 3 * 64_000


def test_window_parse_maps_the_cursor_to_window_bytes() -> None:
    text = "é = 1\n" * 100_000  # multi-byte characters before the cursor
    offset = len(text) - 3
    window = parse_around(text, offset, "python")
    assert window.start > 0
    assert window.cursor_byte == len(text[window.start : offset].encode("utf-8"))


def test_ten_megabyte_document_is_analyzed_quickly() -> None:
    text = _python_document(10_000_000)
    anchor = text.index("def f50000(x):") + len("def f50000(x):")
    started = time.perf_counter()
    context = analyze(text, anchor, "python")
    ghost = postprocess("\n    return x\n", text[:anchor], text[anchor:], context)
    elapsed = time.perf_counter() - started
    assert context.reason is Reason.AFTER_BLOCK_OPENER and context.mode is Mode.MULTI_LINE
    assert ghost == "\n    return x"
    # A whole-document parse takes seconds at this size; the window keeps it well under one.
    assert elapsed < 1.0, f"{elapsed:.2f}s"


def test_small_documents_are_parsed_whole() -> None:
    text = _python_document(LARGE_DOCUMENT // 2)
    assert parse_around(text, len(text) // 2, "python").start == 0
