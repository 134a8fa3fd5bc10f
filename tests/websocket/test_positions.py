"""UTF-16 positions (LSP/JavaScript columns) map to the right place in documents with emoji and CJK."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infill_server.websocket.positions import PositionError, offset_at


def utf16_position(text: str, offset: int) -> tuple[int, int]:
    """Reference: the (line, character) a JavaScript editor would report for text[:offset]."""
    before = text[:offset].replace("\r\n", "\n").replace("\r", "\n")
    line = before.count("\n")
    column = before[before.rfind("\n") + 1 :]
    return line, len(column.encode("utf-16-le")) // 2


def test_ascii_position_is_plain_offset() -> None:
    assert offset_at("ab\ncd\n", 1, 1) == 4


def test_emoji_counts_two_utf16_units() -> None:
    text = "x = '😀'; y\n"
    # JavaScript: "x = '😀'; y".indexOf("y") == 10, Python index is 9.
    assert offset_at(text, 0, 10) == text.index("y")


def test_cjk_counts_one_utf16_unit() -> None:
    text = "# 漢字\nprint(漢)\n"
    assert offset_at(text, 1, 7) == text.index(")")


def test_crlf_and_cr_are_line_breaks() -> None:
    text = "a\r\nb\rc"
    assert offset_at(text, 1, 0) == 3
    assert offset_at(text, 2, 1) == len(text)


def test_end_of_line_and_end_of_document_are_valid() -> None:
    assert offset_at("ab\n", 0, 2) == 2
    assert offset_at("ab\n", 1, 0) == 3
    assert offset_at("", 0, 0) == 0


@pytest.mark.parametrize(
    ("text", "line", "character", "why"),
    [
        ("ab\n", 2, 0, "past the end of the document"),
        ("ab\ncd", 0, 3, "past the end of line"),
        ("😀", 0, 1, "inside a surrogate pair"),
        ("ab", 0, -1, "negative"),
    ],
)
def test_positions_outside_the_document_are_rejected(text: str, line: int, character: int, why: str) -> None:
    with pytest.raises(PositionError, match=why):
        offset_at(text, line, character)


@given(st.text(alphabet=st.sampled_from(list("ab \n\r\t漢😀🎉é")), max_size=40), st.data())
def test_every_offset_round_trips_through_its_utf16_position(text: str, data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, len(text)))
    if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
        offset += 1  # between \r and \n is not a position an editor can name
    assert offset_at(text, *utf16_position(text, offset)) == offset
