"""What a fill would break: the error count the engine uses to choose among a single line's sizes."""

from __future__ import annotations

import pytest

from infill_server.syntax import analyze, fill_errors, syntax_errors
from infill_server.syntax.window import LARGE_DOCUMENT


@pytest.mark.parametrize(
    ("language", "good", "broken"),
    [
        ("python", "def f(x):\n    return max(x, 1)\n", "def f(x):\n    return max(x, 1\n"),
        ("python", "from os import path\n", "from os\n"),
        ("javascript", "const a = f(1);\nexport default a;\n", "const a = f(1;\nexport default a;\n"),
        ("typescript", "let n: number = 1;\n", "let n: number = ;\n"),
    ],
)
def test_a_well_formed_document_has_no_errors_and_a_broken_one_has_some(
    language: str, good: str, broken: str
) -> None:
    assert syntax_errors(good, len(good) // 2, language) == 0
    assert syntax_errors(broken, len(broken) // 2, language) > 0


def test_a_large_document_is_counted_in_the_window_around_the_offset() -> None:
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(LARGE_DOCUMENT // 10))
    broken = "def broken(:\n    pass\n\n\n" + body
    assert len(broken) > 2 * LARGE_DOCUMENT
    assert syntax_errors(broken, 10, "python") > 0
    assert syntax_errors(broken, len(broken) - 10, "python") == 0, "the error lies outside the window"


def test_fill_errors_counts_the_document_with_the_fill_as_it_would_be_shown() -> None:
    prefix, suffix = "def f(a):\n    return max(a, ", "\n\n\ndef g():\n    pass\n"
    count = fill_errors(prefix, suffix, analyze(prefix + suffix, len(prefix), "python"))
    assert count is not None
    assert count("1)") == 0
    assert count("1") > 0, "the call is left open"
    assert count("1))") == 0, "post-processing drops the closer the line does not need, as the user would see it"
    prefix, suffix = 'import { readFile } from "fs";\nconst data = readFile(path, ', "\nexport default data;\n"
    count = fill_errors(prefix, suffix, analyze(prefix + suffix, len(prefix), "javascript"))
    assert count is not None and count('"utf8");') == 0 and count('"utf8"') > 0


def test_plain_text_has_no_grammar_to_count_with() -> None:
    assert fill_errors("a = ", "\n", analyze("a = \n", 4, None)) is None
