"""The mode decision: the node at the cursor and the cursor's line -> Mode, reason, hole size, indentation."""

from __future__ import annotations

import pytest

from infill_server.syntax import Mode, Reason, analyze, one_statement

CURSOR = "█"
R = Reason

# (language, document with █ at the cursor, expected reason); the mode follows from the reason.
CASES: list[tuple[str | None, str, Reason]] = [
    # python
    ("python", "def f(x):█\n", R.AFTER_BLOCK_OPENER),
    ("python", "class A:\n    def f(self):█\n", R.AFTER_BLOCK_OPENER),
    ("python", "if x:\n    pass\nelse:█", R.AFTER_BLOCK_OPENER),
    ("python", "def f(x):\n    x = 1\n    █\n    return x\n", R.BLANK_LINE_IN_BLOCK),
    ("python", "def f(x):\n    x = 1\n█\n    return x\n", R.BLANK_LINE_IN_BLOCK),
    ("python", "x = compute(a, █)\n", R.INSIDE_BRACKETS),
    ("python", "x = foo(\n    a,\n    █\n)\n", R.BLANK_LINE_IN_BRACKETS),
    ("python", "x = foo(\n    a,\n    █)\n", R.INSIDE_BRACKETS),  # the closer on the line: one argument
    ("python", "def f(x):\n    y = foo(a, █\n", R.INSIDE_BRACKETS),
    ("python", "x = 'abc█\n", R.STRING_OR_COMMENT),
    ("python", 'def f():\n    """Docs █\n    """\n', R.STRING_OR_COMMENT),
    ("python", 'def f():\n    """Docs.\n\n    █\n    """\n', R.BLANK_LINE_IN_TEXT),
    ("python", "x = 1  # hi█\n", R.STRING_OR_COMMENT),
    ("python", "x = a█ + b\n", R.TEXT_AFTER_CURSOR),
    ("python", "    return x█\n", R.END_OF_LINE),
    ("python", "d = {\n    'a':█\n}\n", R.END_OF_LINE),
    # javascript
    ("javascript", "function f() {█\n", R.AFTER_BLOCK_OPENER),
    ("javascript", "function f() {█}\n", R.AFTER_BLOCK_OPENER),
    ("javascript", "const f = (x) =>█\n", R.AFTER_BLOCK_OPENER),
    ("javascript", "items.forEach((item) => {█\n", R.AFTER_BLOCK_OPENER),
    ("javascript", "class A {\n  █\n}\n", R.BLANK_LINE_IN_BLOCK),
    ("javascript", "foo(a, █", R.INSIDE_BRACKETS),
    ("javascript", "foo(a, █)", R.INSIDE_BRACKETS),
    ("javascript", "const s = `abc ${x} d█", R.STRING_OR_COMMENT),
    ("javascript", "// todo: █\n", R.STRING_OR_COMMENT),
    ("javascript", "/* a █ */\n", R.STRING_OR_COMMENT),
    ("javascript", "/**\n * Docs.\n * █\n */\n", R.STRING_OR_COMMENT),  # ` * ` began the line: text after it
    ("javascript", "/*\n  Docs.\n  █\n*/\n", R.BLANK_LINE_IN_TEXT),
    ("javascript", "const xs = [\n  1,\n  █\n];\n", R.BLANK_LINE_IN_BRACKETS),
    ("javascript", "const x = a█ + b;\n", R.TEXT_AFTER_CURSOR),
    ("javascript", "const x = 1;█\n", R.END_OF_LINE),
    # typescript (and tsx)
    ("typescript", "interface A {█\n", R.AFTER_BLOCK_OPENER),
    ("typescript", "interface A {\n  █\n}\n", R.BLANK_LINE_IN_BLOCK),
    ("typescript", "function f(a: number, █)\n", R.INSIDE_BRACKETS),
    ("typescript", "function f(a: number, █) {}\n", R.TEXT_AFTER_CURSOR),
    ("typescript", "const s: string = 'ab█';\n", R.STRING_OR_COMMENT),
    ("typescript", "const n: number = a█ * 2;\n", R.TEXT_AFTER_CURSOR),
    ("typescript", "let n: number█\n", R.END_OF_LINE),
    ("tsx", "const A = () => <div>{█}</div>;\n", R.TEXT_AFTER_CURSOR),
    ("tsx", "function A() {█\n", R.AFTER_BLOCK_OPENER),
    # go
    ("go", "package main\n\nfunc f() {█\n", R.AFTER_BLOCK_OPENER),
    ("go", "package main\n\nfunc f() {\n\t█\n}\n", R.BLANK_LINE_IN_BLOCK),
    ("go", 'package main\n\nimport (\n\t"fmt"\n\t█\n)\n', R.BLANK_LINE_IN_BRACKETS),
    ("go", 'package main\n\nvar s = "ab█"\n', R.STRING_OR_COMMENT),
    ("go", "package main\n\nvar s = `raw █\n", R.STRING_OR_COMMENT),
    ("go", "package main\n\nvar x = a█ + b\n", R.TEXT_AFTER_CURSOR),
    ("go", "package main\n\nvar x = 1█\n", R.END_OF_LINE),
    # rust
    ("rust", "fn f() {\n    match x {█\n}", R.AFTER_BLOCK_OPENER),
    ("rust", "fn f() {\n    match x {\n        Some(v) =>█\n    }\n}", R.AFTER_BLOCK_OPENER),
    ("rust", "fn f() {\n    █\n}\n", R.BLANK_LINE_IN_BLOCK),
    ("rust", "fn f() {\n    let v = vec![1, █];\n}\n", R.INSIDE_BRACKETS),
    ("rust", 'fn f() {\n    let s = "ab█";\n}\n', R.STRING_OR_COMMENT),
    ("rust", "fn f<'a>(x: &'a str) {\n    let c = 'x';█\n}", R.END_OF_LINE),
    ("rust", "fn f() {\n    let y = x█ * 2;\n}\n", R.TEXT_AFTER_CURSOR),
    # no language: the same rules from the text alone
    (None, "plan:█\n", R.AFTER_BLOCK_OPENER),
    (None, "block {█\n", R.AFTER_BLOCK_OPENER),
    (None, "block {\n  █\n}\n", R.BLANK_LINE_IN_BLOCK),
    (None, "call(a, █\n", R.INSIDE_BRACKETS),
    (None, "some wo█rds\n", R.TEXT_AFTER_CURSOR),
    (None, "some words█\n", R.END_OF_LINE),
]


def _at_cursor(document: str) -> tuple[str, int]:
    return document.replace(CURSOR, ""), document.index(CURSOR)


@pytest.mark.parametrize(("language", "document", "reason"), CASES, ids=[f"{c[0]}: {c[1]!r}" for c in CASES])
def test_mode_follows_from_what_is_at_the_cursor(language: str | None, document: str, reason: Reason) -> None:
    context = analyze(*_at_cursor(document), language)
    assert context.reason is reason
    multi = reason in (R.AFTER_BLOCK_OPENER, R.BLANK_LINE_IN_BLOCK, R.BLANK_LINE_IN_BRACKETS, R.BLANK_LINE_IN_TEXT)
    assert context.mode is (Mode.MULTI_LINE if multi else Mode.SINGLE_LINE)
    assert context.language == language


def test_multi_line_holes_are_larger_than_single_line_holes() -> None:
    single = analyze(*_at_cursor("x = a█ + b\n"), "python")
    opener = analyze(*_at_cursor("def f():█\n"), "python")
    blank = analyze(*_at_cursor("def f():\n    x = 1\n    █\n"), "python")
    assert single.max_tokens == 16
    assert opener.max_tokens == 64
    assert single.max_tokens < blank.max_tokens < opener.max_tokens


@pytest.mark.parametrize(
    ("language", "document", "indent"),
    [
        ("python", "def f():█\n", "    "),
        ("python", "class A:\n  def f(self):█\n", "    "),  # the file's 2-space unit
        ("python", "def f(x):\n    x = 1\n█\n    return x\n", "    "),  # blank line between body lines
        ("python", "def f(x):\n    return 1\n█\ndef g():\n    pass\n", ""),  # after the body: top level
        ("python", "def f(x):\n    if x:\n        █\n", "        "),  # what the user typed
        ("python", "# Contributors:\n█\nx = 1\n", ""),  # a comment ending in `:` opens nothing
        ("python", "for d in (a,\n          b):█\n", "    "),  # a header that spans lines
        ("javascript", "function f() {█}\n", "  "),
        ("javascript", "function f(a,\n           b) {█\n", "  "),
        ("typescript", "class A {\n    m() {█\n", "        "),
        ("go", "package main\n\nfunc f() {█\n", "\t"),
        ("go", "package main\n\nfunc f() {\n█\n}\n", "\t"),
        ("rust", "fn f() {\n    let x = 1;█\n}\n", "    "),
        (None, "a:\n\tb:█\n", "\t\t"),
    ],
)
def test_indent_is_the_cursor_blocks_indentation(language: str | None, document: str, indent: str) -> None:
    assert analyze(*_at_cursor(document), language).indent == indent


@pytest.mark.parametrize(
    ("document", "line_reason"),
    [
        ("def f(x):\n    x = 1\n    █\n    return x\n", R.END_OF_LINE),
        ("x = foo(\n    a,\n    █\n)\n", R.INSIDE_BRACKETS),
        ('def f():\n    """Docs.\n\n    █\n    """\n', R.STRING_OR_COMMENT),
    ],
)
def test_a_blank_line_is_a_block_with_a_one_line_reading_beside_it(document: str, line_reason: Reason) -> None:
    block = analyze(*_at_cursor(document), "python")
    line = one_statement(block)
    assert block.mode is Mode.MULTI_LINE and line is not None
    assert line.mode is Mode.SINGLE_LINE and line.reason is line_reason and line.max_tokens < block.max_tokens
    assert line.indent == block.indent


def test_a_line_with_text_has_no_second_reading() -> None:
    assert one_statement(analyze(*_at_cursor("x = foo(a, █)\n"), "python")) is None
    assert one_statement(analyze(*_at_cursor("def f():█\n"), "python")) is None


def test_offsets_count_characters_not_bytes() -> None:
    # Multi-byte characters before the cursor must not shift the node lookup.
    text, offset = _at_cursor('s = "héllo 👋 世界" + compute(a, █)\n')
    assert analyze(text, offset, "python").reason is R.INSIDE_BRACKETS
    text, offset = _at_cursor('s = "héllo 👋 世界█"\n')
    assert analyze(text, offset, "python").reason is R.STRING_OR_COMMENT


@pytest.mark.parametrize(("offset", "reason"), [(-5, R.TEXT_AFTER_CURSOR), (10_000, R.BLANK_LINE_IN_BLOCK)])
def test_offsets_outside_the_text_are_clamped(offset: int, reason: Reason) -> None:
    assert analyze("x = 1\n", offset, "python").reason is reason


def test_empty_document_gets_a_multi_line_hole() -> None:
    assert analyze("", 0, "python").mode is Mode.MULTI_LINE
    assert analyze("", 0, None).mode is Mode.MULTI_LINE
