"""Which language a document is, and one cached tree-sitter parser per language.

The canonical ids are the grammar names the rest of the package switches on:
"python", "javascript", "typescript", "tsx", "go", "rust". Anything else is None (plain text).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import tree_sitter
import tree_sitter_go
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_rust
import tree_sitter_typescript

LANGUAGES: tuple[str, ...] = ("python", "javascript", "typescript", "tsx", "go", "rust")

# LSP languageId -> canonical id. JSX parses with the JavaScript grammar, which includes JSX.
_LANGUAGE_IDS: dict[str, str] = {
    "python": "python",
    "javascript": "javascript",
    "javascriptreact": "javascript",
    "typescript": "typescript",
    "typescriptreact": "tsx",
    "tsx": "tsx",
    "go": "go",
    "rust": "rust",
}

_EXTENSIONS: dict[str, str] = {
    "py": "python",
    "pyi": "python",
    "pyw": "python",
    "js": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "jsx": "javascript",
    "ts": "typescript",
    "mts": "typescript",
    "cts": "typescript",
    "tsx": "tsx",
    "go": "go",
    "rs": "rust",
}

_GRAMMARS: dict[str, Callable[[], object]] = {
    "python": tree_sitter_python.language,
    "javascript": tree_sitter_javascript.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "go": tree_sitter_go.language,
    "rust": tree_sitter_rust.language,
}

# Node types whose inside is text, not code: a cursor there gets a single-line fill.
STRING_TYPES: dict[str, frozenset[str]] = {
    "python": frozenset({"string", "concatenated_string"}),
    "javascript": frozenset({"string", "template_string", "regex"}),
    "typescript": frozenset({"string", "template_string", "regex"}),
    "tsx": frozenset({"string", "template_string", "regex", "jsx_text"}),
    "go": frozenset({"interpreted_string_literal", "raw_string_literal", "rune_literal"}),
    "rust": frozenset({"string_literal", "raw_string_literal", "char_literal"}),
}
COMMENT_TYPES: frozenset[str] = frozenset({"comment", "line_comment", "block_comment"})


def language_for(language_id: str | None, path: str | None) -> str | None:
    """Canonical language from an LSP languageId, else from the file extension of a path or URI."""
    if language_id:
        found = _LANGUAGE_IDS.get(language_id.strip().lower())
        if found:
            return found
    if path:
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        # A URI may carry a query or fragment after the name.
        name = name.split("?", 1)[0].split("#", 1)[0]
        if "." in name:
            return _EXTENSIONS.get(name.rsplit(".", 1)[-1].lower())
    return None


def grammar_for(language: str) -> object:
    """The tree-sitter grammar (a capsule for tree_sitter.Language) of a canonical language id."""
    return _GRAMMARS[language]()


# A Parser is not safe to share between threads, so the cache is per thread.
_local = threading.local()


def parser_for(language: str) -> tree_sitter.Parser:
    """One parser per language (and thread), built on first use: building a Language is not free."""
    cache: dict[str, tree_sitter.Parser] = _local.__dict__.setdefault("parsers", {})
    parser = cache.get(language)
    if parser is None:
        parser = cache[language] = tree_sitter.Parser(tree_sitter.Language(grammar_for(language)))
    return parser
