"""Fixtures: a real InfillService on a tiny random model, and the websocket server on port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from engine.testing import write_tiny_native_model
from infill_server.config import ServiceConfig
from infill_server.service import InfillService
from infill_server.websocket.server import Limits, WsServer, open_server

TOKEN = "test-token-0123456789"
ALLOWED_ORIGIN = "http://tool.localhost:3000"
WAIT = 60  # seconds: a bound on waits that should take milliseconds, never a sleep


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """The tiny model is ~50x slower with torch's intra-op threads fighting for a busy CPU."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_native_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def service(tiny_model: Path) -> AsyncIterator[InfillService]:
    service = InfillService(ServiceConfig(model=str(tiny_model), device="cpu"))
    await service.load()
    yield service
    service.close()


@pytest.fixture
def limits() -> Limits:
    """Tests override this fixture (or parametrize it) to exercise a particular limit."""
    return Limits()


@pytest.fixture
async def server(service: InfillService, limits: Limits) -> AsyncIterator[WsServer]:
    async with open_server(service, token=TOKEN, allow_origins=(ALLOWED_ORIGIN,), limits=limits) as running:
        yield running


def client(server: WsServer, token: str | None = TOKEN, **kwargs: Any) -> connect:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return connect(server.url, additional_headers=headers, open_timeout=WAIT, **kwargs)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    import json

    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def send(ws: ClientConnection, **message: Any) -> None:
    import json

    await ws.send(json.dumps(message))


@dataclass
class Stream:
    """Everything one request id received, in order."""

    refinements: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None


async def collect(ws: ClientConnection, ids: set[Any]) -> dict[Any, Stream]:
    """Read until every id in `ids` has its final message; fails on a message for any other id."""
    streams = {id: Stream() for id in ids}
    waiting = set(ids)
    while waiting:
        message = await receive(ws)
        id = message.get("id")
        assert id in streams, f"message for a request this client never sent: {message}"
        stream = streams[id]
        assert stream.final is None, f"message after the final one: {message}"
        if message["type"] == "refinement":
            stream.refinements.append(message)
        else:
            stream.final = message
            waiting.discard(id)
    return streams


def assert_complete(stream: Stream) -> None:
    """Refinements with strictly increasing steps, then a result that matches the last of them."""
    assert stream.final is not None and stream.final["type"] == "result", stream.final
    steps = [m["step"] for m in stream.refinements]
    assert steps, "a result without any refinement"
    assert steps == sorted(set(steps))
    assert stream.refinements[-1]["text"] == stream.final["text"]
    assert steps[-1] == stream.final["steps"]
