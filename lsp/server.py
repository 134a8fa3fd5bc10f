"""The language server object: the state every handler shares, and how protocol-level errors are met.

Handlers live one feature per module (inline_completion, rewrite, lifecycle) and are wired to this
server in lsp.main; they reach the model only through `host` (the InfillService and its settings).
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcException, JsonRpcInvalidRequest, JsonRpcParseError
from pygls.lsp.server import LanguageServer

from infill_server.config import ServiceConfig
from lsp.jsonrpc import InfillProtocol
from lsp.open_documents import OpenDocuments
from lsp.positions import UTF16
from lsp.service_host import ServiceHost

log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _package_version

    VERSION = _package_version("dgem-infill")
except Exception:  # noqa: BLE001 - running from a source tree that was never installed
    VERSION = "0+unknown"


class InfillLanguageServer(LanguageServer):
    def __init__(self, config: ServiceConfig):
        super().__init__(
            "dgem-infill",
            VERSION,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=InfillProtocol,
        )
        self.host = ServiceHost(self, config)
        self.open_documents = OpenDocuments()

    @property
    def position_encoding(self) -> str:
        return self.workspace.position_encoding or UTF16

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside any request. Malformed input gets a JSON-RPC parse error and a log line, not a
        pop-up: a stray bad message is the client's bug, and the server carries on."""
        if source is FeatureRequestError:
            return
        if source is JsonRpcException:
            log.warning("unreadable message: %s", error)
            if isinstance(error, ValueError):  # json.JSONDecodeError, UnicodeDecodeError
                error = JsonRpcParseError.of(error)
            if isinstance(error, JsonRpcParseError | JsonRpcInvalidRequest):
                # JSON-RPC answers a message it cannot read with id null.
                self.protocol._send_data(types.ResponseErrorMessage(id=None, error=error.to_response_error()))
            return
        log.error("internal error: %s", error)
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Error, message=str(error)))
