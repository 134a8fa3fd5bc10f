"""Helpers shared by the language-server tests: the server command, traffic recording, requests."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities

from infill_server.protocol import REFINEMENT_NOTIFICATION

SERVER_COMMAND = [sys.executable, "-m", "lsp", "--stdio"]
CLIENTS = ["visual-studio-code", "neovim"]


def record_client_traffic(client: LanguageClient) -> None:
    """Keep every refinement and applyEdit the server sends, for the test to inspect."""
    client.refinements = []  # type: ignore[attr-defined]
    client.applied_edits = []  # type: ignore[attr-defined]

    @client.feature(REFINEMENT_NOTIFICATION)
    def _refinement(params: Any) -> None:
        client.refinements.append(params)  # type: ignore[attr-defined]

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def _apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        client.applied_edits.append(params)  # type: ignore[attr-defined]
        return types.ApplyWorkspaceEditResult(applied=True)


def initialize_params(client_name: str, options: dict[str, Any] | None) -> types.InitializeParams:
    return types.InitializeParams(
        capabilities=client_capabilities(client_name),
        initialization_options=options,
        root_uri=None,
    )


def open_document(
    client: LanguageClient, uri: str, text: str, language: str = "python", version: int = 1
) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)
        )
    )


async def inline_completion(
    client: LanguageClient,
    uri: str,
    line: int,
    character: int,
    trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Invoked,
) -> types.InlineCompletionList | list[types.InlineCompletionItem] | None:
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
    )


def field(value: Any, name: str) -> Any:
    """Replies to custom requests come back as attribute objects or dicts, depending on the path."""
    return value[name] if isinstance(value, dict) else getattr(value, name)


def range_json(start: tuple[int, int], end: tuple[int, int]) -> dict[str, Any]:
    return {"start": {"line": start[0], "character": start[1]}, "end": {"line": end[0], "character": end[1]}}


async def execute_command(client: LanguageClient, command: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=list(arguments))
    )


def refinements_for(client: LanguageClient, request_id: Any) -> list[Any]:
    return [r for r in client.refinements if str(r.requestId) == str(request_id)]  # type: ignore[attr-defined]


async def raw_request(client: LanguageClient, method: str, params: Any) -> Any:
    """The reply as plain JSON values. lsprotocol's client-side converter reads a CodeAction in
    `(Command | CodeAction)[]` as a Command, so code actions are checked on the wire form."""
    protocol = client.protocol
    typed = protocol.get_result_type
    protocol.get_result_type = lambda _method: None  # type: ignore[method-assign]
    try:
        reply = await protocol.send_request_async(method, params)
    finally:
        protocol.get_result_type = typed  # type: ignore[method-assign]
    return reply


class RawConnection:
    """A JSON-RPC peer that writes bytes as given: for messages no well-behaved client would send."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.notifications: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, initialization_options: dict[str, Any]) -> RawConnection:
        process = await asyncio.create_subprocess_exec(
            *SERVER_COMMAND, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        connection = cls(process)
        init = {
            "processId": None,
            "rootUri": None,
            "capabilities": {},
            "initializationOptions": initialization_options,
        }
        await connection.request("initialize", init, request_id="init")
        await connection.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        return connection

    async def send_body(self, body: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await self.process.stdin.drain()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_body(json.dumps(message).encode("utf-8"))

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        length = 0
        while (header := await self.process.stdout.readline()) not in (b"\r\n", b""):
            if header.lower().startswith(b"content-length:"):
                length = int(header.split(b":")[1])
        if not length:
            raise EOFError("the server closed its output")
        return json.loads(await self.process.stdout.readexactly(length))

    async def reply(self, request_id: Any) -> dict[str, Any]:
        """Read until the response with `request_id`; notifications on the way are kept."""
        while True:
            message = await self.read()
            if "method" not in message and message.get("id") == request_id:
                return message
            if "method" in message:
                self.notifications.append(message)

    async def request(self, method: str, params: Any, request_id: Any) -> dict[str, Any]:
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return await self.reply(request_id)

    async def close(self) -> None:
        await self.request("shutdown", None, request_id="shutdown")
        await self.send({"jsonrpc": "2.0", "method": "exit"})
        await self.process.wait()
