"""Security at the handshake: token required, browsers only from allowed origins, localhost by default."""

from __future__ import annotations

import inspect

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from infill_server.websocket import server as server_module
from infill_server.websocket.server import Limits, WsServer

from .conftest import ALLOWED_ORIGIN, TOKEN, WAIT, client, collect, receive, send


async def refused_status(uri: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(uri, open_timeout=WAIT, **kwargs):
            pass
    return info.value.response.status_code


async def assert_still_serving(server: WsServer) -> None:
    async with client(server) as ws:
        await send(ws, type="cancel", id="ping")
        assert (await receive(ws))["code"] == "unknown_id"


async def test_connection_without_token_is_refused_with_401(server: WsServer) -> None:
    assert await refused_status(server.url) == 401
    await assert_still_serving(server)


async def test_connection_with_wrong_token_is_refused_with_401(server: WsServer) -> None:
    assert await refused_status(server.url, additional_headers={"Authorization": "Bearer nope"}) == 401
    assert await refused_status(f"{server.url}/?token=nope") == 401
    await assert_still_serving(server)


async def test_token_is_accepted_as_bearer_header_or_query_parameter(server: WsServer) -> None:
    async with connect(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await send(ws, type="cancel", id=1)
        assert (await receive(ws))["code"] == "unknown_id"
    async with connect(f"{server.url}/?token={TOKEN}") as ws:
        await send(ws, type="cancel", id=2)
        assert (await receive(ws))["code"] == "unknown_id"


async def test_browser_origin_not_on_the_allow_list_is_refused_even_with_the_token(server: WsServer) -> None:
    for origin in ("http://evil.example", "null", "http://tool.localhost:3001"):
        assert await refused_status(f"{server.url}/?token={TOKEN}", origin=origin) == 403
    await assert_still_serving(server)


async def test_browser_origin_on_the_allow_list_is_accepted_with_the_token(server: WsServer) -> None:
    async with connect(f"{server.url}/?token={TOKEN}", origin=ALLOWED_ORIGIN) as ws:
        await send(ws, type="infill", id="b", prefix="def f(", suffix="):\n", max_tokens=4)
        streams = await collect(ws, {"b"})
        assert streams["b"].final["type"] == "result"
    assert await refused_status(server.url, origin=ALLOWED_ORIGIN) == 401  # origin alone is not enough


async def test_server_binds_loopback_by_default(server: WsServer) -> None:
    assert server.host == "127.0.0.1"
    for function in (server_module.open_server, server_module.serve, server_module.run):
        assert inspect.signature(function).parameters["host"].default == "127.0.0.1"


@pytest.mark.parametrize("limits", [Limits(max_connections=2)])
async def test_connections_past_the_limit_are_refused_with_503(server: WsServer) -> None:
    async with client(server), client(server):
        await server.wait_for_connection_count(2)
        assert await refused_status(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) == 503
    await server.wait_for_connection_count(0)
    await assert_still_serving(server)
