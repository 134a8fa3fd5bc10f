"""Requests through the real server and a real (tiny, random) model: streams, forms, bad input, limits."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from infill_server.websocket.server import Limits, WsServer

from .conftest import WAIT, assert_complete, client, collect, receive, send

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


async def assert_connection_serves(ws, id: str = "after") -> None:  # noqa: ANN001
    """The connection still answers a real request after whatever happened before."""
    await send(ws, type="infill", id=id, prefix=PREFIX, suffix=SUFFIX, max_tokens=4)
    assert_complete((await collect(ws, {id}))[id])


async def test_infill_streams_refinements_then_a_result(server: WsServer) -> None:
    async with client(server) as ws:
        await send(ws, type="infill", id="r1", prefix=PREFIX, suffix=SUFFIX, language="python", max_tokens=8)
        stream = (await collect(ws, {"r1"}))["r1"]
    assert_complete(stream)
    assert stream.refinements[0]["step"] == 1
    assert [m["step"] for m in stream.refinements] == list(range(1, stream.final["steps"] + 1))
    assert set(stream.final) == {"type", "id", "text", "steps", "ms"}
    assert stream.final["ms"] >= 0


async def test_document_position_form_matches_prefix_suffix_form_with_emoji_and_cjk(server: WsServer) -> None:
    document = "name = '漢字😀'  # 🎉\nprint(name)\n"
    line, character = 0, len("name = '漢字😀'  # 🎉".encode("utf-16-le")) // 2  # a JavaScript column
    split = document.index("\n")
    async with client(server) as ws:
        await send(ws, type="infill", id="doc", document=document,
                   position={"line": line, "character": character}, max_tokens=6)
        await send(ws, type="infill", id="text", prefix=document[:split], suffix=document[split:], max_tokens=6)
        streams = await collect(ws, {"doc", "text"})
    for stream in streams.values():
        assert_complete(stream)
    # The same split gives the same fill: the UTF-16 column landed exactly at the end of line 0.
    assert streams["doc"].final["text"] == streams["text"].final["text"]


async def test_selection_is_regenerated_as_a_rewrite(server: WsServer) -> None:
    document = "x = 1\ny = 漢字 + 2\n"
    selection = {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 6}}
    async with client(server) as ws:
        await send(ws, type="infill", id="sel", document=document, selection=selection, max_tokens=4)
        assert_complete((await collect(ws, {"sel"}))["sel"])


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{oops", "invalid_json"),
        ("[]", "invalid_message"),
        (json.dumps({"type": "infill", "id": "x", "prefix": 3}), "invalid_message"),
        (json.dumps({"type": "infill", "id": "x"}), "invalid_message"),
        (json.dumps({"type": "infill", "prefix": "a"}), "invalid_message"),
        (json.dumps({"type": "summon", "id": "x"}), "unknown_type"),
        (json.dumps({"type": "infill", "id": "x", "document": "a\n", "position": {"line": 9, "character": 0}}),
         "position_out_of_range"),
        (json.dumps({"type": "infill", "id": "x", "document": "ab", "position": {"line": 0, "character": 3}}),
         "position_out_of_range"),
        (json.dumps({"type": "cancel", "id": "never-sent"}), "unknown_id"),
        (b"\x00\x01binary", "binary_frame"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_the_connection_keeps_serving(
    server: WsServer, frame: str | bytes, code: str
) -> None:
    async with client(server) as ws:
        await ws.send(frame)
        error = await receive(ws)
        assert error["type"] == "error" and error["code"] == code
        assert error["message"]
        await assert_connection_serves(ws)


@pytest.mark.parametrize("limits", [Limits(max_frame_bytes=10_000, hard_frame_bytes=40_000)])
async def test_oversized_frame_gets_an_error_and_the_connection_keeps_serving(server: WsServer) -> None:
    async with client(server) as ws:
        await send(ws, type="infill", id="big", prefix="#" * 20_000, suffix="")
        error = await receive(ws)
        assert (error["code"], error.get("id")) == ("frame_too_large", None)
        await assert_connection_serves(ws)


@pytest.mark.parametrize("limits", [Limits(max_frame_bytes=10_000, hard_frame_bytes=40_000)])
async def test_frame_past_the_hard_limit_closes_only_that_connection(server: WsServer) -> None:
    async with client(server) as ws:
        await send(ws, type="infill", id="huge", prefix="#" * 50_000, suffix="")
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd.code == 1009  # message too big
    async with client(server) as ws:
        await assert_connection_serves(ws)


async def test_invalid_utf8_text_frame_closes_only_that_connection(server: WsServer) -> None:
    async with client(server) as ws:
        await ws.send(b'{"type": "\xff"}', text=True)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd.code == 1007  # RFC 6455 requires failing the connection
    async with client(server) as ws:
        await assert_connection_serves(ws)


async def test_duplicate_id_in_flight_is_refused_without_disturbing_the_first(server: WsServer) -> None:
    async with client(server) as ws:
        await send(ws, type="infill", id="d", prefix=PREFIX, suffix=SUFFIX, max_tokens=8, steps=8)
        await send(ws, type="infill", id="d", prefix=PREFIX, suffix=SUFFIX, max_tokens=4)
        messages = []
        while not messages or messages[-1]["type"] != "result":
            messages.append(await receive(ws))
    errors = [m for m in messages if m["type"] == "error"]
    assert [(e["code"], e["id"]) for e in errors] == [("duplicate_id", "d")]
    assert messages[-1]["steps"] == max(m["step"] for m in messages if m["type"] == "refinement")


@pytest.mark.parametrize("limits", [Limits(max_in_flight=2)])
async def test_requests_past_the_in_flight_limit_are_refused_and_the_rest_complete(server: WsServer) -> None:
    async with client(server) as ws:
        for id in range(4):
            await send(ws, type="infill", id=id, prefix=PREFIX, suffix=SUFFIX, max_tokens=4, steps=4)
        streams = await collect(ws, {0, 1, 2, 3})
    refused = {id for id, s in streams.items() if s.final["type"] == "error"}
    assert refused == {2, 3}
    assert {streams[id].final["code"] for id in refused} == {"too_many_requests"}
    for id in (0, 1):
        assert_complete(streams[id])


async def test_requests_naming_the_same_uri_supersede_older_ones(server: WsServer) -> None:
    async with client(server) as ws:
        await send(ws, type="infill", id="old", uri="file:///a.py", prefix=PREFIX, suffix=SUFFIX,
                   max_tokens=256, steps=256)
        await send(ws, type="infill", id="new", uri="file:///a.py", prefix=PREFIX + "a", suffix=SUFFIX,
                   max_tokens=4)
        streams = await collect(ws, {"old", "new"})
    assert streams["old"].final["code"] == "superseded"
    assert_complete(streams["new"])


async def test_ids_are_echoed_exactly_including_integers_and_unicode(server: WsServer) -> None:
    ids = {0, -7, 2**53, "漢字😀", "a" * 256}
    async with client(server) as ws:
        for id in ids:
            await send(ws, type="infill", id=id, prefix=PREFIX, suffix=SUFFIX, max_tokens=2)
        streams = await collect(ws, ids)
    for stream in streams.values():
        assert_complete(stream)


async def test_a_line_written_in_an_open_document_is_the_fill_with_the_shipped_model() -> None:
    """open_documents reach the document lookup: the sibling's call, after the same three lines, is the
    result; without them it is not."""
    from infill_server.config import ServiceConfig
    from infill_server.service import InfillService
    from infill_server.websocket.server import open_server

    from .conftest import ALLOWED_ORIGIN, TOKEN

    lines = ('def main():\n    """Read the options and configure the run."""\n    options = parse_options()\n'
             "    configure(")
    call = "verbose=options.verbose, colour=options.colour"
    sibling = f"{lines}{call})\n    return run(options)\n"
    service = InfillService(ServiceConfig(device="cpu"))
    await service.load()
    try:
        async with open_server(service, token=TOKEN, allow_origins=(ALLOWED_ORIGIN,)) as running, \
                client(running) as ws:
            fields = {"type": "infill", "prefix": lines, "suffix": ")\n    return run(options)\n",
                      "language": "python"}
            await send(ws, id="alone", **fields)
            await send(ws, id="beside", open_documents=[sibling], **fields)
            streams = await collect(ws, {"alone", "beside"})
    finally:
        service.close()
    assert streams["beside"].final is not None and streams["beside"].final["text"] == call
    assert streams["alone"].final is not None and streams["alone"].final["text"] != call
