"""recalled_fills: what followed the text before the cursor elsewhere in the document."""

from __future__ import annotations

from infill_server.syntax import recalled_fills as recalled
from infill_server.syntax.recall import (
    ANCHOR_CHARS,
    COMPARED_CHARS,
    MAX_MATCHES,
    MAX_OTHER_DOCUMENTS,
    MAX_OTHER_MATCHES,
)

AREA = "def area(width, height):\n    return width * height\n\n\n"


def recalled_fills(prefix: str, suffix: str, limit: int = 4, others: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(text for text, _ in recalled(prefix, suffix, limit, others))


def test_a_call_written_before_is_recalled_up_to_the_rest_of_the_cursors_line() -> None:
    prefix = AREA + "print(area(width, height))\nprint(area("
    assert recalled_fills(prefix, ")\n") == ("width, height)",)
    assert recalled_fills(prefix, "))\n") == ("width, height",)
    assert recalled_fills(prefix, "), end='')\n") == (), "no earlier line ends as the cursor's does"


def test_lines_after_the_cursor_count_too_and_the_cursors_own_line_does_not() -> None:
    prefix = "values = load()\nprint(area("
    suffix = ")\nprint(area(values[0], values[1]))\n"
    assert recalled_fills(prefix, suffix) == ("values[0], values[1])",)
    # the anchor twice on the cursor's line: the earlier one runs on into the cursor, it is no fill
    assert recalled_fills("x = f(area(1), print(area(", ")\n") == ()


def test_the_fill_whose_surroundings_match_the_cursors_longest_comes_first() -> None:
    prefix = ("class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
              "class Size:\n    def __init__(self, width, height):\n        self.width = width\n"
              "        self.height = height\n\n"
              "class Box:\n    def __init__(self, width, height):\n        self.width = width\n        self.")
    fills = recalled_fills(prefix, "\n")
    assert fills[0] == "height = height", "after the same `__init__(self, width, height)` and `self.width` line"
    assert set(fills) >= {"x = x", "y = y", "width = width"}
    assert len(recalled_fills(prefix, "\n", limit=2)) == 2


def test_each_fill_says_how_many_characters_around_it_match_the_cursors() -> None:
    prefix = "a = pick(1)\nb = pick(2)\nc = pick("
    # " = pick(" (8) before "2", ")\n" (2) after it: the cursor's suffix is ")\n" alone
    assert recalled(prefix, ")\n") == (("2", 10), ("1", 10))
    long = "x" * (COMPARED_CHARS * 2)
    assert recalled(long + "\nc = pick(9)\n" + long + "\nc = pick(", ")\n" + long)[0][1] == COMPARED_CHARS * 2


def test_ties_go_to_the_nearer_line() -> None:
    prefix = "a = pick(1)\nb = pick(2)\nc = pick("
    assert recalled_fills(prefix, ")\n") == ("2", "1")


def test_no_anchor_no_fills() -> None:
    assert recalled_fills("", "x = 1\n") == ()
    assert recalled_fills("x = 1\nx = 1\n" + " " * ANCHOR_CHARS, "\n") == (), "blank space says nothing"
    assert recalled_fills("short(", ")") == (), "a file's first characters"


def test_emoji_and_cjk_come_back_whole() -> None:
    prefix = "label = text('\U0001F600 \u4f60\u597d')\nother = text('"
    assert recalled_fills(prefix, "')\n") == ("\U0001F600 \u4f60\u597d",)


def test_a_common_anchor_in_a_large_file_reads_a_bounded_number_of_matches() -> None:
    lines = "".join(f"    self.field_{index} = {index}\n" for index in range(MAX_MATCHES * 4))
    fills = recalled_fills(lines + "    self.", "\n")
    assert len(fills) == 4 and all(fill.startswith("field_") for fill in fills)
    read = {int(fill.split()[-1]) for fill in fills}
    assert min(read) >= MAX_MATCHES * 3, "only the matches nearest the cursor are read"


def test_other_open_documents_are_read_after_the_document_itself() -> None:
    prefix = "import helpers\n\nresult = helpers.area("
    sibling = "import helpers\n\nvalue = helpers.area(width, height)"  # no newline at its end: still a line
    assert recalled_fills(prefix, ")\n") == ()
    assert recalled_fills(prefix, ")\n", others=(sibling,)) == ("width, height",)
    # equal matching characters: the document's own line first, then the others in the caller's order
    own = "value = helpers.area(3, 4)\n" + prefix
    others = ("value = helpers.area(width, height)\n", "value = helpers.area(1, 1)\n")
    assert recalled_fills(own, ")\n", others=others) == ("3, 4", "width, height", "1, 1")
    # more matching characters win wherever they are
    assert recalled_fills(own, ")\n", others=("import helpers\n\nresult = helpers.area(5, 6)\n",))[0] == "5, 6"
    late = ("",) * MAX_OTHER_DOCUMENTS + (sibling,)
    assert recalled_fills(prefix, ")\n", others=late) == (), "only the first MAX_OTHER_DOCUMENTS are read"
    many = "".join(f"value = helpers.area({index}, 0)\n" for index in range(MAX_OTHER_MATCHES + 50))
    read = {int(text.split(",")[0]) for text in recalled_fills(prefix, ")\n", limit=500, others=(many,))}
    assert read == set(range(MAX_OTHER_MATCHES)), "another document's first MAX_OTHER_MATCHES matches"
