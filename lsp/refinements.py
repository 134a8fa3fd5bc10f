"""The `dgem/refinement` stream: one notification per denoising step, tied to the request it serves.

Params: {"uri", "version", "requestId", "step", "text", "range", "done"}. `range` is the document range
the text replaces (empty at the cursor for an infill, the selection for a rewrite), in the negotiated
position encoding. Exactly one notification has done=true: the last, whose text equals the response.
"""

from __future__ import annotations

from typing import Any, Protocol

from lsprotocol import types

from infill_server.protocol import REFINEMENT_NOTIFICATION


class _Notifier(Protocol):
    def notify(self, method: str, params: Any | None = None) -> None: ...


class RefinementStream:
    def __init__(
        self,
        notifier: _Notifier,
        *,
        uri: str,
        version: int | None,
        request_id: int | str | None,
        range: types.Range,
    ):
        self._notifier = notifier
        self._uri = uri
        self._version = version
        self._request_id = request_id
        self._range = {
            "start": {"line": range.start.line, "character": range.start.character},
            "end": {"line": range.end.line, "character": range.end.character},
        }
        self._last_step = -1

    def _send(self, step: int, text: str, done: bool) -> None:
        self._notifier.notify(
            REFINEMENT_NOTIFICATION,
            {
                "uri": self._uri,
                "version": self._version,
                "requestId": self._request_id,
                "step": step,
                "text": text,
                "range": self._range,
                "done": done,
            },
        )
        self._last_step = step

    def update(self, update: Any) -> None:
        """Forward one step of the service (an `Update`). The service's own done update is held back:
        finish() sends the final one from the result, so it always matches the response."""
        if not update.done:
            self._send(update.step, update.text, done=False)

    def finish(self, text: str, step: int | None = None) -> None:
        self._send(max(self._last_step, step or 0), text, done=True)
