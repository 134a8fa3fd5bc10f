"""Connections that go quiet are closed: idle ones, half-open ones (no pong), unfinished handshakes."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from infill_server.websocket.server import Limits, WsServer

from .conftest import WAIT, assert_complete, client, collect, send


@pytest.mark.parametrize("limits", [Limits(idle_timeout=0.3)])
async def test_idle_connection_is_closed_with_a_reason(server: WsServer) -> None:
    async with client(server) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1000, "idle timeout")
    await server.wait_for_connection_count(0)


@pytest.mark.parametrize("limits", [Limits(idle_timeout=0.3)])
async def test_connection_with_a_request_in_flight_is_not_idle(server: WsServer, service) -> None:  # noqa: ANN001
    # Hold the engine until the idle timeout has passed several times over.
    release = asyncio.Event()
    real = service.infill

    async def held(job, on_update=None):  # noqa: ANN001, ANN202
        await release.wait()
        return await real(job, on_update)

    service.infill = held
    async with client(server) as ws:
        await send(ws, type="infill", id="slow", prefix="x = ", suffix="", max_tokens=2, steps=1)
        await asyncio.sleep(1.0)  # not synchronisation: the property is that ~3 idle timeouts pass harmlessly
        release.set()
        assert_complete((await collect(ws, {"slow"}))["slow"])


@pytest.mark.parametrize("limits", [Limits(ping_interval=0.2, ping_timeout=0.2, close_timeout=0.2)])
async def test_half_open_connection_that_stops_answering_pings_is_closed(server: WsServer) -> None:
    async with client(server, ping_interval=None) as ws:
        await server.wait_for_connection_count(1)
        ws.transport.pause_reading()  # like a peer that vanished: nothing is read, no pong comes back
        await asyncio.wait_for(server.wait_for_connection_count(0), WAIT)
        ws.transport.resume_reading()


@pytest.mark.parametrize("limits", [Limits(open_timeout=0.3)])
async def test_tcp_connection_that_never_completes_the_handshake_is_dropped(server: WsServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # an unfinished request, then silence
    assert await asyncio.wait_for(reader.read(), WAIT) == b""
    writer.close()
