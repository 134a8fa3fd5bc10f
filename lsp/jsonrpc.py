"""The JSON-RPC layer under the handlers: encoding negotiation and answers to malformed messages.

pygls drops a request whose params fail to parse without replying (the client would wait forever),
and takes the client's first position encoding even when it is not the one we prefer. Both are fixed
here, below the handlers, so every feature gets them.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.protocol import LanguageServerProtocol, lsp_method

from lsp.positions import choose_encoding

log = logging.getLogger(__name__)


@dataclass
class _Unparsable:
    """A request whose params did not fit the LSP types: answered with an error, never handled."""

    id: int | str
    error: JsonRpcException
    jsonrpc: str = "2.0"


class InfillProtocol(LanguageServerProtocol):
    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if isinstance(data.get("id"), int | str) and "method" in data:
                return _Unparsable(id=data["id"], error=error)
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Unparsable):
            log.warning("Rejected request %r: invalid params", message.id)
            self._send_response(message.id, error=message.error.to_response_error())
            return
        if not hasattr(message, "jsonrpc"):
            # A JSON value that is not a message object (a number, a list...).
            raise JsonRpcInvalidRequest.of(ValueError("not a JSON-RPC message object"))
        super().handle_message(message)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, types.InitializeResult]:
        general = params.capabilities.general
        offered = general.position_encodings if general is not None else None
        # pygls would take the client's first choice; narrowing the offer to ours makes it agree.
        if general is not None:
            general.position_encodings = [choose_encoding(offered)]
        return (yield from super().lsp_initialize(params))
