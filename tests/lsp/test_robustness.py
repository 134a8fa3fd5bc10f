"""Bad input never stops the server: each test sends something hostile, then checks the answer and
that the server still answers a normal request afterwards."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from lsp_harness import RawConnection

pytestmark = pytest.mark.asyncio(loop_scope="session")

_ids = itertools.count(1)
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602


def did_open(uri: str, text: str, language: str = "python") -> dict[str, Any]:
    item = {"uri": uri, "languageId": language, "version": 1, "text": text}
    return {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}}


async def complete(raw: RawConnection, uri: str, line: int, character: int) -> dict[str, Any]:
    params = {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1},
    }
    return await raw.request("textDocument/inlineCompletion", params, request_id=next(_ids))


async def still_serving(raw: RawConnection) -> None:
    uri = f"file:///probe{next(_ids)}.py"
    await raw.send(did_open(uri, "x = "))
    reply = await complete(raw, uri, 0, 4)
    assert "result" in reply, reply


async def test_malformed_json_gets_a_parse_error_and_the_server_carries_on(raw: RawConnection):
    await raw.send_body(b'{"jsonrpc": "2.0", "id": 1, "method": ')
    reply = await raw.reply(None)
    assert reply["error"]["code"] == PARSE_ERROR
    await still_serving(raw)


async def test_bytes_that_are_not_utf8_get_a_parse_error(raw: RawConnection):
    await raw.send_body(b"\xff\xfe\x00binary\x80\x81")
    assert (await raw.reply(None))["error"]["code"] == PARSE_ERROR
    await still_serving(raw)


@pytest.mark.parametrize("body", [b"[1, 2, 3]", b"42", b'"text"', b"null"])
async def test_json_that_is_not_a_message_is_an_invalid_request(raw: RawConnection, body: bytes):
    await raw.send_body(body)
    assert (await raw.reply(None))["error"]["code"] == INVALID_REQUEST
    await still_serving(raw)


async def test_unknown_methods_get_method_not_found_and_unknown_notifications_are_ignored(raw: RawConnection):
    await raw.send({"jsonrpc": "2.0", "method": "dgem/noSuchNotification", "params": {"x": 1}})
    reply = await raw.request("dgem/noSuchMethod", {"x": 1}, request_id="unknown")
    assert reply["error"]["code"] == METHOD_NOT_FOUND
    await still_serving(raw)


@pytest.mark.parametrize(
    "params",
    [
        {"textDocument": {"uri": "file:///a.py"}, "position": "here", "context": {"triggerKind": 1}},
        {
            "textDocument": {"uri": "file:///a.py"},
            "position": {"line": -1, "character": 0},
            "context": {"triggerKind": 1},
        },
        {"position": {"line": 0, "character": 0}},
        None,
    ],
)
async def test_invalid_params_are_answered_with_an_error_for_that_request(raw: RawConnection, params):
    request_id = next(_ids)
    reply = await raw.request("textDocument/inlineCompletion", params, request_id=request_id)
    assert reply["id"] == request_id and reply["error"]["code"] in (INVALID_PARAMS, -32603)
    await still_serving(raw)


async def test_binary_document_content_is_completed(raw: RawConnection):
    uri = "file:///binary.py"
    # every code point below 256, NUL included, and a lone surrogate (valid JSON, invalid Unicode)
    text = "".join(map(chr, range(256))) + "\ud800\n" + "x = "
    await raw.send(did_open(uri, text))
    reply = await complete(raw, uri, 2, 4)
    assert "result" in reply, reply


async def test_a_10_mb_document_is_completed_at_its_end_and_after_an_edit(raw: RawConnection):
    uri = "file:///big.py"
    line = "value = compute(value, 12345)  # padding padding\n"
    text = line * (10 * 1024 * 1024 // len(line) + 1)
    lines = text.count("\n")
    await raw.send(did_open(uri, text + "total = "))
    assert "result" in await complete(raw, uri, lines, 8)
    change = {
        "range": {"start": {"line": 5, "character": 0}, "end": {"line": 5, "character": 5}},
        "text": "v",
    }
    await raw.send(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]},
        }
    )
    assert "result" in await complete(raw, uri, lines // 2, 10)


async def test_positions_past_the_end_clamp_to_the_end_of_the_document(raw: RawConnection):
    uri = "file:///short.py"
    await raw.send(did_open(uri, "a = 1\nb = "))
    for line, character in [(1, 500), (99, 0), (10**9, 10**9)]:
        reply = await complete(raw, uri, line, character)
        for item in reply["result"]["items"]:
            assert item["range"]["start"] == {"line": 1, "character": 4}


async def test_emoji_and_cjk_before_the_cursor_give_utf16_ranges(raw: RawConnection):
    uri = "file:///emoji.py"
    line = 's = "😀 中文 🎉" + '
    column = len(line.encode("utf-16-le")) // 2  # the emoji count twice
    await raw.send(did_open(uri, f"{line}\nt = '終わり'\n"))
    reply = await complete(raw, uri, 0, column)
    for item in reply["result"]["items"]:
        assert item["range"]["start"] == {"line": 0, "character": column}
    done = [n for n in raw.notifications if n["method"] == "dgem/refinement" and n["params"]["uri"] == uri]
    assert done and done[-1]["params"]["range"]["start"] == {"line": 0, "character": column}
