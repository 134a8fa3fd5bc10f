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
