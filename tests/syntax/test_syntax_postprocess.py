"""postprocess as a whole: filter order and the cases no single filter owns."""

from __future__ import annotations

import pytest

from infill_server.syntax import FILTERS, analyze, postprocess


def _ghost(document: str, model: str, language: str | None) -> str:
    offset = document.index("█")
    text = document.replace("█", "")
    return postprocess(model, text[:offset], text[offset:], analyze(text, offset, language))


def test_filters_run_indentation_scope_overlap_brackets_then_auto_pair_layout() -> None:
    names = [keep.__module__.rsplit(".", 1)[-1] for keep in FILTERS]
    assert names == ["indentation", "scope", "suffix_overlap", "brackets", "auto_pair"]


@pytest.mark.parametrize("model", ["", "   ", "\n\n", "\n    \n"])
def test_blank_model_output_gives_empty_ghost_text(model: str) -> None:
    assert _ghost("def f():█\n", model, "python") == ""


def test_a_fill_that_only_repeats_the_suffix_gives_empty_ghost_text() -> None:
    assert _ghost("print(x█)\n", ")", "python") == ""


def test_windows_line_endings_in_model_output_become_newlines() -> None:
    assert _ghost("def f():█\n", "\r\n    return 1\r\n", "python") == "\n    return 1"


def test_plain_text_keeps_brackets_balanced_without_a_grammar() -> None:
    assert _ghost("call(a, █)\n", "b))", None) == "b"
