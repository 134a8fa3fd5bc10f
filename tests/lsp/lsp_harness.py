"""Helpers shared by the language-server tests: the server command, traffic recording, requests."""

from __future__ import annotations

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
