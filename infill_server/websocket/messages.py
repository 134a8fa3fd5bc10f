"""The websocket protocol's messages: validating what clients send, shaping what the server sends.

docs/websocket.schema.json describes the same messages for client authors; tests/websocket/test_schema.py
keeps the two in step (limits, field names, error codes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from infill_server.config import MAX_HOLE_TOKENS
from infill_server.protocol import WS_CANCEL, WS_ERROR, WS_INFILL, WS_REFINEMENT, WS_RESULT
from infill_server.syntax.recall import MAX_OTHER_DOCUMENTS
from infill_server.websocket.positions import PositionError, offset_at

RequestId = str | int

# Error codes, one per thing a client can get wrong (or that happens to its request).
INVALID_JSON = "invalid_json"
INVALID_MESSAGE = "invalid_message"  # wrong type, missing or unknown field, value out of range
UNKNOWN_TYPE = "unknown_type"
BINARY_FRAME = "binary_frame"
FRAME_TOO_LARGE = "frame_too_large"
POSITION_OUT_OF_RANGE = "position_out_of_range"
DUPLICATE_ID = "duplicate_id"
TOO_MANY_REQUESTS = "too_many_requests"
UNKNOWN_ID = "unknown_id"
CANCELLED = "cancelled"
SUPERSEDED = "superseded"
ENGINE_ERROR = "engine_error"
INTERNAL_ERROR = "internal_error"
ERROR_CODES = (
    INVALID_JSON, INVALID_MESSAGE, UNKNOWN_TYPE, BINARY_FRAME, FRAME_TOO_LARGE, POSITION_OUT_OF_RANGE,
    DUPLICATE_ID, TOO_MANY_REQUESTS, UNKNOWN_ID, CANCELLED, SUPERSEDED, ENGINE_ERROR, INTERNAL_ERROR,
)

MAX_ID_LENGTH = 256
MAX_ID_INT = 2**53  # the largest integer a JavaScript client represents exactly
MAX_TOKENS_LIMIT = MAX_HOLE_TOKENS
MAX_STEPS_LIMIT = 256
MAX_NAME_LENGTH = 256  # language and uri
MAX_OPEN_DOCUMENTS = MAX_OTHER_DOCUMENTS  # the document lookup reads no more

_INFILL_COMMON = ("type", "id", "uri", "language", "max_tokens", "steps", "open_documents")
INFILL_TEXT_FIELDS = frozenset(_INFILL_COMMON + ("prefix", "suffix"))
INFILL_DOCUMENT_FIELDS = frozenset(_INFILL_COMMON + ("document", "position", "selection"))
CANCEL_FIELDS = frozenset(("type", "id"))

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class MessageError(Exception):
    """A frame the server cannot act on; becomes an `error` message. `id` is set when it was readable."""

    def __init__(self, code: str, message: str, id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id


@dataclass(frozen=True)
class InfillMessage:
    """A validated infill request; the document form is already split into prefix and suffix."""

    id: RequestId
    prefix: str
    suffix: str
    rewrite: bool = False  # a selection was given: regenerate it rather than insert at a point
    selection: str = ""  # the selected text being regenerated (sizes the hole)
    uri: str | None = None
    language: str | None = None
    max_tokens: int | None = None
    steps: int | None = None
    open_documents: tuple[str, ...] = ()  # the text of other documents open in the tool


@dataclass(frozen=True)
class CancelMessage:
    id: RequestId


def parse(frame: str) -> InfillMessage | CancelMessage:
    """Validate one text frame; raises MessageError with the code and a message a person can act on."""
    try:
        data = json.loads(frame, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers too long to convert.
        raise MessageError(INVALID_JSON, f"the frame is not valid JSON: {_short(exc)}") from None
    if not isinstance(data, dict):
        raise MessageError(INVALID_MESSAGE, "a message must be a JSON object")
    id = _request_id(data)
    kind = data.get("type")
    if kind is None:
        raise MessageError(INVALID_MESSAGE, "missing field 'type'", id)
    if not isinstance(kind, str):
        raise MessageError(INVALID_MESSAGE, "field 'type' must be a string", id)
    if kind == WS_INFILL:
        return _infill(data, _required_id(data, id))
    if kind == WS_CANCEL:
        _no_unknown_fields(data, CANCEL_FIELDS, id)
        return CancelMessage(_required_id(data, id))
    raise MessageError(
        UNKNOWN_TYPE, f"unknown message type {ascii(kind)[:80]}; expected '{WS_INFILL}' or '{WS_CANCEL}'", id
    )


def _infill(data: dict[str, Any], id: RequestId) -> InfillMessage:
    options = {
        "uri": _optional_name(data, "uri", id),
        "language": _optional_name(data, "language", id),
        "max_tokens": _optional_int(data, "max_tokens", MAX_TOKENS_LIMIT, id),
        "steps": _optional_int(data, "steps", MAX_STEPS_LIMIT, id),
        "open_documents": _optional_texts(data, "open_documents", MAX_OPEN_DOCUMENTS, id),
    }
    if "document" in data:
        _no_unknown_fields(data, INFILL_DOCUMENT_FIELDS, id)
        document = _text(data, "document", id)
        if "selection" in data:
            selection = data["selection"]
            if not isinstance(selection, dict):
                raise MessageError(INVALID_MESSAGE, "field 'selection' must be an object {start, end}", id)
            _no_unknown_fields(selection, frozenset(("start", "end")), id, "selection")
            start = _offset(document, selection, "start", id, "selection.")
            end = _offset(document, selection, "end", id, "selection.")
            if end < start:
                raise MessageError(INVALID_MESSAGE, "selection.end is before selection.start", id)
            if "position" in data:  # allowed (editors send the cursor too) but must still be valid
                _offset(document, data, "position", id)
            return InfillMessage(
                id, document[:start], document[end:], rewrite=True, selection=document[start:end], **options
            )
        if "position" not in data:
            raise MessageError(INVALID_MESSAGE, "missing field 'position' (or 'selection')", id)
        at = _offset(document, data, "position", id)
        return InfillMessage(id, document[:at], document[at:], **options)
    if "prefix" not in data:
        raise MessageError(INVALID_MESSAGE, "missing field 'prefix' (or 'document' with 'position')", id)
    _no_unknown_fields(data, INFILL_TEXT_FIELDS, id)
    suffix = _text(data, "suffix", id) if "suffix" in data else ""
    return InfillMessage(id, _text(data, "prefix", id), suffix, **options)


def _request_id(data: dict[str, Any]) -> RequestId | None:
    """The id if it is well formed, so that later errors about this frame can name their request."""
    value = data.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) <= MAX_ID_INT:
        return value
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and not _LONE_SURROGATE.search(value):
        return value
    return None


def _required_id(data: dict[str, Any], id: RequestId | None) -> RequestId:
    if id is not None:
        return id
    if "id" not in data:
        raise MessageError(INVALID_MESSAGE, "missing field 'id'")
    raise MessageError(
        INVALID_MESSAGE,
        f"field 'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters "
        f"or an integer of magnitude at most 2**53",
    )


def _no_unknown_fields(data: dict[str, Any], allowed: frozenset[str], id: RequestId | None, where: str = "") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        names = ", ".join(ascii(name)[:80] for name in unknown[:5])
        place = f" in '{where}'" if where else ""
        raise MessageError(INVALID_MESSAGE, f"unknown field(s){place}: {names}", id)


def _text(data: dict[str, Any], field: str, id: RequestId) -> str:
    value = data[field]
    if not isinstance(value, str):
        raise MessageError(INVALID_MESSAGE, f"field '{field}' must be a string", id)
    if _LONE_SURROGATE.search(value):
        # JSON allows "\ud800" alone, but it is not text: the tokenizer cannot encode it.
        raise MessageError(INVALID_MESSAGE, f"field '{field}' contains a lone UTF-16 surrogate", id)
    return value


def _optional_name(data: dict[str, Any], field: str, id: RequestId) -> str | None:
    if data.get(field) is None:
        return None
    value = _text(data, field, id)
    if not 0 < len(value) <= MAX_NAME_LENGTH:
        raise MessageError(INVALID_MESSAGE, f"field '{field}' must be 1 to {MAX_NAME_LENGTH} characters", id)
    return value


def _optional_texts(data: dict[str, Any], field: str, limit: int, id: RequestId) -> tuple[str, ...]:
    value = data.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > limit:
        raise MessageError(INVALID_MESSAGE, f"field '{field}' must be an array of at most {limit} strings", id)
    return tuple(_text({field: text}, field, id) for text in value)


def _optional_int(data: dict[str, Any], field: str, limit: int, id: RequestId) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise MessageError(INVALID_MESSAGE, f"field '{field}' must be an integer from 1 to {limit}", id)
    return value


def _offset(document: str, data: dict[str, Any], field: str, id: RequestId, label: str = "") -> int:
    name = label + field
    if field not in data:
        raise MessageError(INVALID_MESSAGE, f"missing field '{name}'", id)
    position = data[field]
    if not isinstance(position, dict):
        raise MessageError(INVALID_MESSAGE, f"field '{name}' must be an object {{line, character}}", id)
    _no_unknown_fields(position, frozenset(("line", "character")), id, name)
    for key in ("line", "character"):
        value = position.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MessageError(INVALID_MESSAGE, f"field '{name}.{key}' must be a non-negative integer", id)
    try:
        return offset_at(document, position["line"], position["character"])
    except PositionError as exc:
        raise MessageError(POSITION_OUT_OF_RANGE, f"{name}: {exc}", id) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__


# Server -> client. ensure_ascii keeps every frame valid UTF-8 whatever a client echoes back to itself.
def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"))


def refinement(id: RequestId, step: int, text: str) -> dict[str, Any]:
    return {"type": WS_REFINEMENT, "id": id, "step": step, "text": text}


def result(id: RequestId, text: str, steps: int, ms: float) -> dict[str, Any]:
    return {"type": WS_RESULT, "id": id, "text": text, "steps": steps, "ms": round(ms, 3)}


def error(code: str, message: str, id: RequestId | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": WS_ERROR, "code": code, "message": message}
    if id is not None:
        body["id"] = id
    return body
