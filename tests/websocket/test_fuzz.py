"""Thousands of random frames, from raw noise to almost-valid messages: the server answers every time."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from infill_server.config import ServiceConfig
from infill_server.protocol import WS_ERROR, WS_REFINEMENT, WS_RESULT
from infill_server.service import InfillService
from infill_server.websocket import messages
from infill_server.websocket.server import Limits, open_server

from .conftest import TOKEN, WAIT


@pytest.fixture(scope="module")
def fuzz_url(tiny_model: Path) -> Iterator[str]:
    """The real server on its own event loop in a thread, so the sync client can drive it from hypothesis."""
    ready: list[str] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = loop.create_future()

    async def main() -> None:
        service = InfillService(ServiceConfig(model=str(tiny_model), device="cpu", max_tokens=4))
        await service.load()
        limits = Limits(
            max_in_flight=4, max_frame_bytes=4096, hard_frame_bytes=1 << 20, idle_timeout=None, ping_interval=None
        )
        async with open_server(service, token=TOKEN, limits=limits) as server:
            ready.append(server.url)
            started.set()
            await stop
        service.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(WAIT), "server did not start"
    yield ready[0]
    loop.call_soon_threadsafe(stop.set_result, None)
    thread.join(WAIT)


@pytest.fixture(scope="module")
def ws(fuzz_url: str) -> Iterator[ClientConnection]:
    # No keepalive thread: its pings draw from `random` while hypothesis is generating data.
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with connect(fuzz_url, additional_headers=headers, open_timeout=WAIT, ping_interval=None) as ws:
        yield ws


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(json_values, st.integers(-3, 70), st.sampled_from(["", "x", "漢字😀", "\ud800"]))
positions = st.fixed_dictionaries({"line": field_values, "character": field_values})
almost_valid = st.fixed_dictionaries(
    {"type": st.sampled_from(["infill", "cancel", "Infill", "", "result"]) | json_values},
    optional={
        "id": st.sampled_from([0, 1, "a", "b", "", None, True, 2**60]) | json_values,
        "prefix": field_values, "suffix": field_values, "document": field_values,
        "position": positions | field_values,
        "selection": st.fixed_dictionaries({"start": positions, "end": positions}) | field_values,
        "language": st.sampled_from(["python", "rust", "brainfuck"]) | field_values,
        "max_tokens": st.integers(-1, 5) | field_values, "steps": st.integers(-1, 3) | field_values,
        "uri": field_values, "extra": field_values,
    },
)
frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    almost_valid.map(json.dumps),
    st.builds(lambda m: json.dumps(m)[: len(json.dumps(m)) // 2], almost_valid),  # truncated JSON
    st.integers(4000, 6000).map(lambda n: json.dumps({"type": "infill", "id": "big", "prefix": "#" * n})),
)
sentinels = itertools.count()
seen: Counter[str] = Counter()  # message types and error codes the fuzzing produced


def check_shape(message: dict[str, Any]) -> None:
    """Every server message has the documented shape."""
    kind = message["type"]
    if kind == WS_REFINEMENT:
        assert set(message) == {"type", "id", "step", "text"}
    elif kind == WS_RESULT:
        assert set(message) == {"type", "id", "text", "steps", "ms"}
    else:
        assert kind == WS_ERROR
        assert set(message) - {"id"} == {"type", "code", "message"}
        assert message["code"] in messages.ERROR_CODES and message["message"]


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(frames, min_size=1, max_size=4))
def test_random_frames_always_get_answers_and_never_break_the_connection(
    ws: ClientConnection, batch: list[str | bytes]
) -> None:
    for frame in batch:
        ws.send(frame)
    # A cancel for an id never used is answered at once, after everything sent before it was read.
    sentinel = f"sentinel-{next(sentinels)}"
    ws.send(json.dumps({"type": "cancel", "id": sentinel}))
    while True:
        message = json.loads(ws.recv(timeout=WAIT))
        check_shape(message)
        seen[message.get("code", message["type"])] += 1
        if message.get("id") == sentinel:
            assert message["code"] == messages.UNKNOWN_ID
            break


def test_after_the_fuzzing_the_connection_still_completes_a_real_request(ws: ClientConnection) -> None:
    # The fuzzing reached past validation: real fills ran, and most error codes came up.
    assert seen[WS_RESULT] > 0 and seen[WS_REFINEMENT] > 0, seen
    reachable = set(messages.ERROR_CODES) - {messages.ENGINE_ERROR, messages.INTERNAL_ERROR, messages.SUPERSEDED}
    assert len(reachable & set(seen)) >= len(reachable) - 4, seen
    ws.send(json.dumps({"type": "infill", "id": "final-check", "prefix": "def f(", "suffix": "):\n"}))
    while True:
        message = json.loads(ws.recv(timeout=WAIT))
        if message.get("id") == "final-check" and message["type"] != WS_REFINEMENT:
            assert message["type"] == WS_RESULT
            break
