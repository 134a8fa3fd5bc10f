"""One client's queue of messages waiting to be written.

The engine's updates arrive on the event loop whether or not the client keeps up. Writing them straight
to the socket would make a slow reader either block the engine's callback or grow the server's buffer
without bound. So each connection gets an Outbox and a writer task that drains it:

- a request's refinements queue up to `refinement_backlog` unsent; past that, the newest unsent one is
  overwritten in place, so a slow reader skips intermediate steps but still sees the latest text;
- final messages (results and errors) are never dropped or reordered, and a request's final message is
  always behind its refinements;
- the connection stops reading new frames while `max_final` final messages wait (see has_room), which
  pushes back on a client that sends without reading.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from infill_server.websocket.messages import RequestId, encode, refinement


@dataclass
class _Entry:
    message: dict[str, Any]
    refinement_of: RequestId | None = None  # set for refinements, which may be coalesced or dropped
    dropped: bool = False


class Outbox:
    def __init__(self, refinement_backlog: int = 64, max_final: int = 256) -> None:
        if refinement_backlog < 1 or max_final < 1:
            raise ValueError("refinement_backlog and max_final must be at least 1")
        self._backlog = refinement_backlog
        self._max_final = max_final
        self._queue: deque[_Entry] = deque()
        self._pending: dict[RequestId, list[_Entry]] = {}  # unsent refinements, per request
        self._finals = 0
        self._ready = asyncio.Event()  # set while the queue is not empty
        self._room = asyncio.Event()  # set while fewer than max_final finals wait
        self._room.set()
        self.coalesced = 0  # refinements overwritten before they were sent (observable in tests)

    def put_refinement(self, id: RequestId, step: int, text: str) -> None:
        pending = self._pending.setdefault(id, [])
        if len(pending) >= self._backlog:
            pending[-1].message = refinement(id, step, text)
            self.coalesced += 1
            return
        entry = _Entry(refinement(id, step, text), refinement_of=id)
        pending.append(entry)
        self._append(entry)

    def put_final(self, message: dict[str, Any]) -> None:
        self._finals += 1
        if self._finals >= self._max_final:
            self._room.clear()
        self._append(_Entry(message))

    def drop_refinements(self, id: RequestId) -> None:
        """Forget a request's unsent refinements (it was cancelled; its text no longer matters)."""
        for entry in self._pending.pop(id, []):
            entry.dropped = True

    def has_room(self) -> bool:
        return self._room.is_set()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def __len__(self) -> int:
        return sum(not entry.dropped for entry in self._queue)

    async def get(self) -> str:
        """The next message to write, encoded; waits while there is none."""
        while True:
            await self._ready.wait()
            entry = self._queue.popleft()
            if not self._queue:
                self._ready.clear()
            if entry.refinement_of is not None:
                pending = self._pending.get(entry.refinement_of)
                if pending and pending[0] is entry:
                    pending.pop(0)
                    if not pending:
                        del self._pending[entry.refinement_of]
            else:
                self._finals -= 1
                if self._finals < self._max_final:
                    self._room.set()
            if not entry.dropped:
                return encode(entry.message)

    def _append(self, entry: _Entry) -> None:
        self._queue.append(entry)
        self._ready.set()
