"""The window of a document a job carries: bounded, and stable while the user types."""

from __future__ import annotations

from lsp.context import PREFIX_CHARS, SUFFIX_CHARS, window


def test_window_of_a_small_document_is_the_whole_document():
    context = window("abc\ndef", 5)
    assert (context.prefix, context.suffix) == ("abc\nd", "ef")


def test_window_of_a_huge_document_is_bounded():
    text = "x = 1\n" * 2_000_000  # 12 MB
    context = window(text, len(text) // 2)
    assert len(context.prefix) <= PREFIX_CHARS
    assert len(context.suffix) <= SUFFIX_CHARS


def test_window_start_stays_put_while_typing_so_the_prefix_cache_survives():
    text = "line of code\n" * 10_000
    cursor = len(text) // 2
    before = window(text, cursor).prefix
    typed = text[:cursor] + "abc" + text[cursor:]
    after = window(typed, cursor + 3).prefix
    assert after.startswith(before) and after == before + "abc"


def test_window_starts_on_a_line_start():
    text = "0123456789\n" * 10_000
    assert window(text, len(text) - 5).prefix.startswith("0123456789")


def test_lone_surrogates_are_replaced_one_for_one():
    context = window("a\ud800b", 3)
    assert context.prefix == "a?b"
    context.prefix.encode("utf-8")


def test_rewrite_window_skips_the_selection():
    context = window("keep OLD keep", 5, 8)
    assert (context.prefix, context.suffix) == ("keep ", " keep")
