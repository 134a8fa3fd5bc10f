"""Positions cross the protocol in UTF-16 or UTF-8 units; Python counts code points."""

from __future__ import annotations

import pytest
from lsprotocol.types import Position, PositionEncodingKind

from lsp.positions import choose_encoding, end_after_insert, offset_at, position_at

UTF8, UTF16, UTF32 = PositionEncodingKind.Utf8, PositionEncodingKind.Utf16, PositionEncodingKind.Utf32
TEXT = "x = '😀中'  # é\nsecond\r\nthird\rlast"


@pytest.mark.parametrize(
    ("encoding", "column", "expected_char"),
    [
        (UTF16, 4, "'"),  # the emoji is 2 UTF-16 units: column 7 is after it
        (UTF16, 7, "中"),
        (UTF16, 8, "'"),
        (UTF8, 9, "中"),  # the emoji is 4 UTF-8 bytes
        (UTF8, 12, "'"),
        (UTF32, 6, "中"),
    ],
)
def test_offset_counts_columns_in_the_negotiated_units(encoding, column, expected_char):
    assert TEXT[offset_at(TEXT, Position(0, column), encoding)] == expected_char


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
def test_position_and_offset_round_trip_on_every_character(encoding):
    for offset in range(len(TEXT) + 1):
        if TEXT[offset - 1 : offset + 1] == "\r\n":
            continue  # between \r and \n is not a position
        assert offset_at(TEXT, position_at(TEXT, offset, encoding), encoding) == offset


def test_crlf_and_cr_end_lines():
    assert TEXT[offset_at(TEXT, Position(2, 0), UTF16)] == "t"
    assert TEXT[offset_at(TEXT, Position(3, 0), UTF16)] == "l"


def test_positions_past_the_end_clamp():
    assert offset_at(TEXT, Position(0, 999), UTF16) == TEXT.index("\n")
    assert offset_at(TEXT, Position(99, 0), UTF16) == len(TEXT)
    assert offset_at("", Position(5, 5), UTF16) == 0


def test_a_column_inside_a_surrogate_pair_stays_before_the_character():
    assert TEXT[offset_at(TEXT, Position(0, 6), UTF16)] == "😀"


def test_end_after_insert_counts_units_of_the_last_line():
    assert end_after_insert(Position(3, 4), "ab😀", UTF16) == Position(3, 8)
    assert end_after_insert(Position(3, 4), "ab\n中😀", UTF16) == Position(4, 3)
    assert end_after_insert(Position(3, 4), "ab\n中😀", UTF8) == Position(4, 7)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(None, UTF16), ([], UTF16), ([UTF32, UTF16], UTF16), ([UTF32, UTF8], UTF8), ([UTF16, UTF8], UTF8)],
)
def test_utf8_is_chosen_only_when_offered(offered, chosen):
    assert choose_encoding(offered) == chosen
