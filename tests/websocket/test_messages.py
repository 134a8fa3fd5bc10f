"""Frame validation: every malformed message maps to one clear error code, with the id when readable."""

import json

import pytest

from infill_server.websocket import messages
from infill_server.websocket.messages import CancelMessage, InfillMessage, MessageError, parse


def frame(**fields: object) -> str:
    return json.dumps(fields)


def error_of(text: str) -> MessageError:
    with pytest.raises(MessageError) as info:
        parse(text)
    return info.value


def test_prefix_suffix_infill_is_parsed() -> None:
    message = parse(frame(type="infill", id="a", prefix="def f(", suffix="):", language="python", steps=4))
    assert message == InfillMessage("a", "def f(", "):", language="python", steps=4)


def test_suffix_may_be_omitted() -> None:
    assert parse(frame(type="infill", id=1, prefix="x")) == InfillMessage(1, "x", "")


def test_document_position_splits_at_utf16_column() -> None:
    document = "s = '😀'\nprint(s)\n"
    message = parse(frame(type="infill", id="p", document=document, position={"line": 0, "character": 8}))
    assert isinstance(message, InfillMessage)
    assert (message.prefix, message.suffix) == ("s = '😀'", "\nprint(s)\n")
    assert not message.rewrite


def test_selection_becomes_a_rewrite_of_that_range() -> None:
    document = "a = 漢字 + 1\n"
    selection = {"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 6}}
    message = parse(frame(type="infill", id="s", document=document, selection=selection))
    assert isinstance(message, InfillMessage)
    assert (message.prefix, message.suffix, message.rewrite) == ("a = ", " + 1\n", True)


def test_open_documents_are_parsed_as_texts() -> None:
    message = parse(frame(type="infill", id="a", prefix="x", open_documents=["one", "\U0001F600 \u4f60"]))
    assert isinstance(message, InfillMessage) and message.open_documents == ("one", "\U0001F600 \u4f60")
    assert parse(frame(type="infill", id="a", document="x", position={"line": 0, "character": 1},
                       open_documents=[])).open_documents == ()


def test_cancel_is_parsed() -> None:
    assert parse(frame(type="cancel", id="a")) == CancelMessage("a")


@pytest.mark.parametrize(
    ("text", "code", "has_id", "words"),
    [
        ("{not json", messages.INVALID_JSON, False, "not valid JSON"),
        ("NaN", messages.INVALID_JSON, False, "NaN"),
        ("[" * 100_000, messages.INVALID_JSON, False, "not valid JSON"),
        ("1" * 5000, messages.INVALID_JSON, False, "not valid JSON"),
        ("[1, 2]", messages.INVALID_MESSAGE, False, "JSON object"),
        (frame(id="a"), messages.INVALID_MESSAGE, True, "missing field 'type'"),
        (frame(type=3, id="a"), messages.INVALID_MESSAGE, True, "'type' must be a string"),
        (frame(type="complete", id="a"), messages.UNKNOWN_TYPE, True, "unknown message type"),
        (frame(type="infill", prefix="x"), messages.INVALID_MESSAGE, False, "missing field 'id'"),
        (frame(type="infill", id=True, prefix="x"), messages.INVALID_MESSAGE, False, "'id' must be"),
        (frame(type="infill", id="", prefix="x"), messages.INVALID_MESSAGE, False, "'id' must be"),
        (frame(type="infill", id=2**60, prefix="x"), messages.INVALID_MESSAGE, False, "'id' must be"),
        (frame(type="infill", id="a"), messages.INVALID_MESSAGE, True, "missing field 'prefix'"),
        (frame(type="infill", id="a", prefix=1), messages.INVALID_MESSAGE, True, "'prefix' must be a string"),
        (frame(type="infill", id="a", prefix="", suffix=None), messages.INVALID_MESSAGE, True, "'suffix'"),
        (frame(type="infill", id="a", prefix="\ud800"), messages.INVALID_MESSAGE, True, "surrogate"),
        (frame(type="infill", id="a", prefix="", max_tokens=0), messages.INVALID_MESSAGE, True, "max_tokens"),
        (frame(type="infill", id="a", prefix="", max_tokens=1.5), messages.INVALID_MESSAGE, True, "max_tokens"),
        (frame(type="infill", id="a", prefix="", steps=True), messages.INVALID_MESSAGE, True, "steps"),
        (frame(type="infill", id="a", prefix="", steps=10**6), messages.INVALID_MESSAGE, True, "steps"),
        (frame(type="infill", id="a", prefix="", language=""), messages.INVALID_MESSAGE, True, "language"),
        (frame(type="infill", id="a", prefix="", colour="red"), messages.INVALID_MESSAGE, True, "'colour'"),
        (frame(type="infill", id="a", prefix="", document=""), messages.INVALID_MESSAGE, True, "'prefix'"),
        (frame(type="infill", id="a", document="x"), messages.INVALID_MESSAGE, True, "'position'"),
        (frame(type="infill", id="a", document=1, position={}), messages.INVALID_MESSAGE, True, "'document'"),
        (
            frame(type="infill", id="a", document="x", position={"line": 0}),
            messages.INVALID_MESSAGE, True, "'position.character'",
        ),
        (
            frame(type="infill", id="a", document="x", position={"line": 0, "character": "0"}),
            messages.INVALID_MESSAGE, True, "'position.character'",
        ),
        (
            frame(type="infill", id="a", document="x", position={"line": 0, "character": 0, "col": 1}),
            messages.INVALID_MESSAGE, True, "'col'",
        ),
        (
            frame(type="infill", id="a", document="x\n", position={"line": 5, "character": 0}),
            messages.POSITION_OUT_OF_RANGE, True, "past the end of the document",
        ),
        (
            frame(type="infill", id="a", document="x\n", position={"line": 0, "character": 2}),
            messages.POSITION_OUT_OF_RANGE, True, "past the end of line 0",
        ),
        (
            frame(
                type="infill", id="a", document="abc",
                selection={"start": {"line": 0, "character": 2}, "end": {"line": 0, "character": 1}},
            ),
            messages.INVALID_MESSAGE, True, "before selection.start",
        ),
        (
            frame(type="infill", id="a", document="abc", selection={"start": {"line": 0, "character": 0}}),
            messages.INVALID_MESSAGE, True, "'selection.end'",
        ),
        (frame(type="infill", id="a", prefix="", open_documents="x"), messages.INVALID_MESSAGE, True, "open_documents"),
        (frame(type="infill", id="a", prefix="", open_documents=[1]), messages.INVALID_MESSAGE, True, "open_documents"),
        (
            frame(type="infill", id="a", prefix="", open_documents=["x"] * (messages.MAX_OPEN_DOCUMENTS + 1)),
            messages.INVALID_MESSAGE, True, "at most 8",
        ),
        (frame(type="infill", id="a", prefix="", open_documents=["\ud800"]), messages.INVALID_MESSAGE, True, "surrogate"),
        (frame(type="cancel"), messages.INVALID_MESSAGE, False, "missing field 'id'"),
        (frame(type="cancel", id="a", reason="x"), messages.INVALID_MESSAGE, True, "'reason'"),
    ],
)
def test_malformed_frames_get_a_specific_error(text: str, code: str, has_id: bool, words: str) -> None:
    error = error_of(text)
    assert error.code == code
    assert words in error.message
    assert (error.id is not None) == has_id


def test_error_codes_are_unique() -> None:
    assert len(set(messages.ERROR_CODES)) == len(messages.ERROR_CODES)


def test_server_messages_are_ascii_json_even_with_lone_surrogates() -> None:
    encoded = messages.encode(messages.error("x", "bad \ud800", "漢"))
    assert encoded.isascii()
    assert json.loads(encoded)["id"] == "漢"
