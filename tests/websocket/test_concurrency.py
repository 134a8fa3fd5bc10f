"""Many clients at once: complete, unmixed streams; slow readers only slow themselves; prompt cancel."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from engine import InfillRequest, Refinement
from infill_server.service import InfillJob, InfillService
from infill_server.websocket.server import Limits, WsServer

from .conftest import WAIT, assert_complete, client, collect, receive, send

INPUTS = [(f"def f{n}(x):\n    return x + ", f"\n\nprint(f{n}({n}))\n") for n in range(10)]


async def expected_texts(service: InfillService) -> list[str]:
    """What each input fills to when asked alone, straight through the service."""
    texts = []
    for n, (prefix, suffix) in enumerate(INPUTS):
        result = await service.infill(InfillJob(f"alone-{n}", prefix, suffix, max_tokens=2, steps=1))
        texts.append(result.text)
    return texts


@pytest.mark.parametrize("limits", [Limits(max_in_flight=10)])
async def test_twenty_clients_with_ten_requests_each_get_complete_unmixed_streams(
    server: WsServer, service: InfillService
) -> None:
    expected = await expected_texts(service)

    async def one_client(c: int) -> None:
        async with client(server) as ws:
            ids = {f"c{c}-r{n}" for n in range(10)}
            for n, (prefix, suffix) in enumerate(INPUTS):
                await send(ws, type="infill", id=f"c{c}-r{n}", prefix=prefix, suffix=suffix, max_tokens=2, steps=1)
            streams = await collect(ws, ids)  # fails on any message for another client's id
            for n in range(10):
                stream = streams[f"c{c}-r{n}"]
                assert_complete(stream)
                assert stream.final["text"] == expected[n], "a result that belongs to another input"

    await asyncio.wait_for(asyncio.gather(*(one_client(c) for c in range(20))), WAIT * 3)


def small_receive_buffer_socket(url: str) -> socket.socket:
    """A client socket with a tiny receive buffer, so an unread stream fills the server's buffers fast."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


class FinishedFills:
    """Wraps the real engine's infill to signal once `count` fills of prefixes starting with `marker` ended."""

    def __init__(self, service: InfillService, marker: str, count: int) -> None:
        self.engine = service.engine
        self.real_infill = self.engine.infill
        self.marker, self.left = marker, count
        self.done = threading.Event()

    def infill(self, request: InfillRequest, cancel: threading.Event | None = None) -> Iterator[Refinement]:
        yield from self.real_infill(request, cancel)
        if request.prefix.startswith(self.marker):
            self.left -= 1  # one engine thread: no race
            if self.left == 0:
                self.done.set()


@pytest.mark.parametrize("limits", [Limits(write_limit=1024, send_buffer_bytes=4096, refinement_backlog=4)])
async def test_slow_reader_does_not_stall_other_clients_and_still_gets_every_result(
    server: WsServer, service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_ids = {f"slow{n}" for n in range(6)}
    slow_prefix = "#" * 2000 + "\n"
    fills = FinishedFills(service, slow_prefix, len(slow_ids))
    monkeypatch.setattr(fills.engine, "infill", fills.infill)
    async with client(server, sock=small_receive_buffer_socket(server.url), compression=None) as slow:
        slow.transport.pause_reading()  # stop reading without closing: the server sees a slow reader
        for id in sorted(slow_ids):
            await send(slow, type="infill", id=id, prefix=slow_prefix, suffix="", max_tokens=64, steps=64)

        async def fast_client(c: int) -> None:
            async with client(server) as ws:
                for n, (prefix, suffix) in enumerate(INPUTS[:3]):
                    await send(ws, type="infill", id=n, prefix=prefix, suffix=suffix, max_tokens=2, steps=1)
                for stream in (await collect(ws, set(range(3)))).values():
                    assert_complete(stream)

        # The fast clients finish while the slow one has read nothing at all.
        await asyncio.wait_for(asyncio.gather(*(fast_client(c) for c in range(3))), WAIT)
        # Every slow fill ends while its reader reads nothing (~70 KB of refinements against buffers of a
        # few KB), so coalescing must happen; resuming earlier let it depend on timing (a CI run flaked).
        await asyncio.wait_for(asyncio.to_thread(fills.done.wait), WAIT)
        slow.transport.resume_reading()
        streams = await collect(slow, slow_ids)
    for stream in streams.values():
        assert_complete(stream)  # never lost a result, and the last refinement is the final text
    # The buffers really filled: intermediate steps were coalesced rather than queued without bound.
    assert any(len(s.refinements) < s.final["steps"] for s in streams.values())


class CancelProbe:
    """Wraps the real engine's infill to count steps it produced after the cancel flag was set."""

    def __init__(self, service: InfillService) -> None:
        self.engine = service.engine
        self.real_infill = self.engine.infill
        self.after_cancel: list[int] = []
        self.finished = threading.Event()

    def infill(self, request: InfillRequest, cancel: threading.Event | None = None) -> Iterator[Refinement]:
        assert cancel is not None
        count = 0
        try:
            for step, refinement in enumerate(self.real_infill(request, cancel)):
                if cancel.is_set():
                    count += 1
                yield refinement
                if step == 0 and not self.after_cancel:
                    # Hold the engine after its first step until the cancel arrives, so that the
                    # request cannot finish first however fast the tiny model is.
                    cancel.wait(WAIT)
        finally:
            self.after_cancel.append(count)
            self.finished.set()


async def test_cancel_stops_denoising_within_one_step_and_answers_cancelled(
    server: WsServer, service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = CancelProbe(service)
    monkeypatch.setattr(probe.engine, "infill", probe.infill)
    async with client(server) as ws:
        await send(ws, type="infill", id="long", prefix="x = ", suffix="", max_tokens=64, steps=256)
        first = await receive(ws)
        assert first["type"] == "refinement"
        await send(ws, type="cancel", id="long")
        messages = [first]
        while messages[-1]["type"] == "refinement":
            messages.append(await receive(ws))
        assert messages[-1] == {
            "type": "error", "id": "long", "code": "cancelled", "message": messages[-1]["message"]
        }
        await asyncio.wait_for(asyncio.to_thread(probe.finished.wait), WAIT)
        assert probe.after_cancel[0] <= 1
        # The engine is free again: the next request on the same connection completes.
        await send(ws, type="infill", id="next", prefix="y = ", suffix="", max_tokens=4)
        assert_complete((await collect(ws, {"next"}))["next"])


@pytest.mark.parametrize(
    "limits", [Limits(write_limit=1024, send_buffer_bytes=4096, max_final_backlog=4, max_frame_bytes=20_000)]
)
async def test_client_that_floods_without_reading_is_throttled_and_cleaned_up_when_it_vanishes(
    server: WsServer,
) -> None:
    ws = await client(server, sock=small_receive_buffer_socket(server.url), compression=None)
    await server.wait_for_connection_count(1)
    ws.transport.pause_reading()
    bad = "{" + "x" * 10_000  # each gets an invalid_json error the client never reads

    async def flood() -> None:
        for _ in range(2000):  # 20 MB: far more than any socket buffer holds
            await ws.send(bad)

    sender = asyncio.create_task(flood())
    done, _ = await asyncio.wait([sender], timeout=3)
    assert not done, "the server kept reading from a client that reads nothing back"
    sender.cancel()
    ws.transport.abort()  # the client vanishes mid-flood
    await asyncio.wait_for(server.wait_for_connection_count(0), WAIT)
