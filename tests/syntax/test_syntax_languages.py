"""language_for: LSP languageId first, then the file extension; parsers are cached."""

from __future__ import annotations

import pytest

from infill_server.syntax import LANGUAGES, language_for
from infill_server.syntax.languages import parser_for


@pytest.mark.parametrize(
    ("language_id", "path", "expected"),
    [
        ("python", None, "python"),
        ("javascript", None, "javascript"),
        ("javascriptreact", None, "javascript"),
        ("typescript", None, "typescript"),
        ("typescriptreact", None, "tsx"),
        ("go", None, "go"),
        ("rust", None, "rust"),
        ("Python", None, "python"),
        (None, "src/app.py", "python"),
        (None, "stubs/mod.pyi", "python"),
        (None, "web/index.mjs", "javascript"),
        (None, "web/App.jsx", "javascript"),
        (None, "web/types.d.ts", "typescript"),
        (None, "web/App.TSX", "tsx"),
        (None, "cmd/main.go", "go"),
        (None, "src/lib.rs", "rust"),
        (None, "file:///project/src/main.rs", "rust"),
        (None, "file:///c%3A/Users/u/x.py?version=2", "python"),
        (None, "C:\\Users\\u\\x.ts", "typescript"),
        ("plaintext", "notes/x.py", "python"),  # an id we do not parse falls back to the path
        ("python", "x.rs", "python"),  # the client's languageId wins over the extension
        ("c", "main.c", None),
        (None, "Makefile", None),
        (None, "archive.tar.gz", None),
        (None, None, None),
        ("", "", None),
    ],
)
def test_language_comes_from_language_id_then_extension(
    language_id: str | None, path: str | None, expected: str | None
) -> None:
    assert language_for(language_id, path) == expected


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_a_cached_parser_that_parses(language: str) -> None:
    assert parser_for(language) is parser_for(language)
    assert parser_for(language).parse(b"x").root_node is not None
