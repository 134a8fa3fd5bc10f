"""The per-connection send queue: bounded for slow readers, lossless for results, order kept."""

import asyncio
import json

from infill_server.websocket import messages
from infill_server.websocket.outbox import Outbox


async def drain(outbox: Outbox) -> list[dict]:
    out = []
    while len(outbox):
        out.append(json.loads(await outbox.get()))
    return out


async def test_fast_reader_gets_every_refinement_in_order() -> None:
    outbox = Outbox(refinement_backlog=64)
    for step in range(1, 11):
        outbox.put_refinement("a", step, f"t{step}")
    outbox.put_final(messages.result("a", "t10", 10, 1.0))
    sent = await drain(outbox)
    assert [m["step"] for m in sent[:-1]] == list(range(1, 11))
    assert sent[-1]["type"] == "result"


async def test_slow_reader_backlog_is_bounded_and_keeps_the_latest_text() -> None:
    outbox = Outbox(refinement_backlog=4)
    for step in range(1, 1001):
        outbox.put_refinement("a", step, f"t{step}")
    assert len(outbox) == 4
    outbox.put_final(messages.result("a", "t1000", 1000, 1.0))
    sent = await drain(outbox)
    steps = [m["step"] for m in sent if m["type"] == "refinement"]
    assert steps == [1, 2, 3, 1000]
    assert sent[-1] == messages.result("a", "t1000", 1000, 1.0)
    assert outbox.coalesced == 996


async def test_results_are_never_dropped_and_follow_their_refinements() -> None:
    outbox = Outbox(refinement_backlog=2, max_final=10_000)
    for step in range(1, 50):
        for id in ("a", "b"):
            outbox.put_refinement(id, step, "x")
    outbox.put_final(messages.result("b", "x", 49, 1.0))
    outbox.put_final(messages.result("a", "x", 49, 1.0))
    sent = await drain(outbox)
    for id in ("a", "b"):
        mine = [m for m in sent if m["id"] == id]
        assert mine[-1]["type"] == "result"
        assert [m["step"] for m in mine[:-1]] == [1, 49]


async def test_dropped_refinements_are_not_sent_but_later_finals_are() -> None:
    outbox = Outbox()
    outbox.put_refinement("a", 1, "x")
    outbox.put_refinement("b", 1, "y")
    outbox.drop_refinements("a")
    outbox.put_final(messages.error(messages.CANCELLED, "cancelled", "a"))
    sent = await drain(outbox)
    assert [(m["type"], m["id"]) for m in sent] == [("refinement", "b"), ("error", "a")]


async def test_room_closes_when_finals_pile_up_and_reopens_as_they_are_sent() -> None:
    outbox = Outbox(max_final=3)
    for _ in range(3):
        outbox.put_final(messages.error(messages.INVALID_JSON, "bad"))
    assert not outbox.has_room()
    waiter = asyncio.create_task(outbox.wait_for_room())
    await outbox.get()
    await asyncio.wait_for(waiter, 5)
    assert outbox.has_room()
