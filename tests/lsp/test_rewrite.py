"""Inline edit: a code action and `dgem.rewrite` regenerate a selection; accept applies it, reject drops it."""

from __future__ import annotations

import pytest
from lsp_harness import execute_command, field, open_document, range_json, raw_request, refinements_for
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pytest_lsp import LanguageClient

from infill_server.protocol import ACCEPT_REWRITE_COMMAND, REJECT_REWRITE_COMMAND, REWRITE_COMMAND

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOURCE = "def area(r):\n    return 3.14 * r * r\n\nprint(area(2))\n"
SELECTION = ((1, 11), (1, 23))  # "3.14 * r * r"


async def code_actions(client: LanguageClient, uri: str, start: tuple[int, int], end: tuple[int, int]):
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(*start), end=types.Position(*end)),
        context=types.CodeActionContext(diagnostics=[]),
    )
    return await raw_request(client, types.TEXT_DOCUMENT_CODE_ACTION, params)


async def test_code_action_on_a_selection_carries_the_rewrite_command(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE)
    actions = await code_actions(client, uri, *SELECTION)
    assert len(actions) == 1
    action = actions[0]
    assert field(action, "kind") == types.CodeActionKind.RefactorRewrite.value
    command = field(action, "command")
    assert field(command, "command") == REWRITE_COMMAND
    (argument,) = field(command, "arguments")
    assert field(argument, "uri") == uri
    assert field(field(field(argument, "range"), "start"), "character") == SELECTION[0][1]
    assert field(field(field(argument, "range"), "end"), "character") == SELECTION[1][1]


async def test_no_code_action_without_a_selection(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE)
    assert not await code_actions(client, uri, (1, 11), (1, 11))


async def test_rewrite_streams_then_accept_applies_the_text_over_the_selection(
    client: LanguageClient, uri: str
):
    open_document(client, uri, SOURCE)
    proposal = await execute_command(client, REWRITE_COMMAND, {"uri": uri, "range": range_json(*SELECTION)})
    rewrite_id = field(proposal, "rewriteId")
    streamed = refinements_for(client, rewrite_id)
    assert streamed and streamed[-1].done and streamed[-1].text == field(proposal, "text")
    assert all(r.range.start.character == 11 and r.range.end.character == 23 for r in streamed)
    before = len(client.applied_edits)

    accepted = await execute_command(client, ACCEPT_REWRITE_COMMAND, rewrite_id)

    assert field(accepted, "applied") is True
    (edit_params,) = client.applied_edits[before:]
    edits = (
        edit_params.edit.document_changes[0].edits
        if edit_params.edit.document_changes
        else edit_params.edit.changes[uri]
    )
    assert edits[0].new_text == field(proposal, "text")
    assert edits[0].range == types.Range(start=types.Position(1, 11), end=types.Position(1, 23))


async def test_rejected_rewrite_cannot_be_accepted(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE)
    proposal = await execute_command(client, REWRITE_COMMAND, {"uri": uri, "range": range_json(*SELECTION)})
    rewrite_id = field(proposal, "rewriteId")
    assert field(await execute_command(client, REJECT_REWRITE_COMMAND, rewrite_id), "rejected") is True
    before = len(client.applied_edits)
    assert field(await execute_command(client, ACCEPT_REWRITE_COMMAND, rewrite_id), "applied") is False
    assert len(client.applied_edits) == before


async def test_accept_refuses_when_the_selected_text_changed(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE)
    proposal = await execute_command(client, REWRITE_COMMAND, {"uri": uri, "range": range_json(*SELECTION)})
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(1, 11), end=types.Position(1, 15)), text="PI"
                )
            ],
        )
    )
    accepted = await execute_command(client, ACCEPT_REWRITE_COMMAND, field(proposal, "rewriteId"))
    assert field(accepted, "applied") is False


@pytest.mark.parametrize("arguments", [(), ({"uri": 3},), ({"uri": "file:///x.py", "range": "all"},), (1, 2)])
async def test_rewrite_with_malformed_arguments_is_an_invalid_params_error(client: LanguageClient, arguments):
    with pytest.raises(JsonRpcInvalidParams):
        await execute_command(client, REWRITE_COMMAND, *arguments)
