"""The standard path: capabilities, inline completion items and their ranges, streamed refinements."""

from __future__ import annotations

import pytest
from lsp_harness import initialize_params, inline_completion, open_document
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOURCE = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"


async def test_initialize_advertises_inline_completion_incremental_sync_and_encoding(
    fresh_client: LanguageClient, tiny_model
):
    result = await fresh_client.initialize_session(
        initialize_params("visual-studio-code", {"model": str(tiny_model)})
    )
    capabilities = result.capabilities
    assert capabilities.inline_completion_provider is not None
    sync = capabilities.text_document_sync
    assert sync.change == types.TextDocumentSyncKind.Incremental
    assert capabilities.position_encoding == types.PositionEncodingKind.Utf16


async def test_utf8_is_chosen_when_the_client_offers_it_even_second(fresh_client: LanguageClient, tiny_model):
    params = initialize_params("visual-studio-code", {"model": str(tiny_model)})
    params.capabilities.general = types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf32, types.PositionEncodingKind.Utf8]
    )
    result = await fresh_client.initialize_session(params)
    assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf8


async def test_utf16_is_chosen_when_the_client_offers_only_utf32_and_utf16(
    fresh_client: LanguageClient, tiny_model
):
    params = initialize_params("visual-studio-code", {"model": str(tiny_model)})
    params.capabilities.general = types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf32, types.PositionEncodingKind.Utf16]
    )
    result = await fresh_client.initialize_session(params)
    assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf16


async def test_completion_item_range_is_the_cursor_and_text_is_the_fill(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE)
    result = await inline_completion(client, uri, 1, 11)
    for item in result.items:
        assert item.range == types.Range(start=types.Position(1, 11), end=types.Position(1, 11))
        assert isinstance(item.insert_text, str) and item.insert_text


async def test_invoked_returns_at_most_three_alternatives_and_automatic_one(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE)
    invoked = await inline_completion(client, uri, 1, 11, types.InlineCompletionTriggerKind.Invoked)
    automatic = await inline_completion(client, uri, 1, 11, types.InlineCompletionTriggerKind.Automatic)
    assert 1 <= len(invoked.items) <= 3
    assert len(automatic.items) == 1


async def test_refinements_stream_per_step_and_the_last_equals_the_response(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE, version=7)
    result = await inline_completion(client, uri, 1, 11)
    mine = [r for r in client.refinements if r.uri == uri]
    assert len(mine) >= 2, "expected one notification per denoising step plus the final one"
    request_ids = {r.requestId for r in mine}
    assert len(request_ids) == 1 and None not in request_ids
    assert [r.done for r in mine] == [False] * (len(mine) - 1) + [True]
    assert [r.step for r in mine] == sorted(r.step for r in mine)
    assert all(r.version == 7 for r in mine)
    assert mine[-1].text == result.items[0].insert_text
    cursor = {"line": 1, "character": 11}
    assert all(
        (r.range.start.line, r.range.start.character, r.range.end.line, r.range.end.character)
        == (cursor["line"], cursor["character"], cursor["line"], cursor["character"])
        for r in mine
    )


async def test_incremental_edits_move_the_completion_to_the_edited_text(client: LanguageClient, uri: str):
    open_document(client, uri, SOURCE)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(1, 11), end=types.Position(1, 11)), text="a + "
                )
            ],
        )
    )
    result = await inline_completion(client, uri, 1, 15)
    assert all(item.range.start == types.Position(1, 15) for item in result.items)
    assert [r for r in client.refinements if r.uri == uri][-1].version == 2


async def test_unopened_document_gets_an_empty_answer(client: LanguageClient, uri: str):
    result = await inline_completion(client, uri, 0, 0)
    assert list(result.items) == []


BLANK_LINES = {  # name -> (source, the blank line's row and column)
    "in a block": ("import os\n\n\ndef read_config(path):\n    if not os.path.exists(path):\n        return {}\n"
                   "    \n    return json.loads(text)\n", 6, 4),
    "in brackets": ("import os\n\n\ndef read_config(path):\n    parts = os.path.join(\n        path,\n"
                    "        \n    )\n    return parts\n", 6, 8),
}


@pytest.mark.parametrize("name", BLANK_LINES)
async def test_invoked_on_a_blank_line_offers_the_block_and_one_line_from_the_shipped_model(
    fresh_client: LanguageClient, name: str
):
    await fresh_client.initialize_session(initialize_params("visual-studio-code", {"device": "cpu"}))
    uri = "file:///project/blank_line.py"
    source, row, column = BLANK_LINES[name]
    open_document(fresh_client, uri, source)
    invoked = await inline_completion(fresh_client, uri, row, column, types.InlineCompletionTriggerKind.Invoked)
    automatic = await inline_completion(fresh_client, uri, row, column, types.InlineCompletionTriggerKind.Automatic)
    texts = [item.insert_text for item in invoked.items]
    assert len(texts) >= 2 and len(set(texts)) == len(texts)
    assert texts[1].strip() and "\n" not in texts[1]  # the one-line reading, second
    assert [item.insert_text for item in automatic.items] == texts[:1]  # typing: the block alone


async def test_a_call_written_beyond_the_models_context_is_recalled_from_the_document(fresh_client: LanguageClient):
    """The shipped model reads 512 tokens before the cursor; the call it needs is written some 900 tokens up.
    The document candidate, found after the same three lines, is the fill the user gets, typing or asking."""
    await fresh_client.initialize_session(initialize_params("visual-studio-code", {"device": "cpu"}))
    uri = "file:///project/recall.py"
    call = "    configure(verbose=options.verbose, colour=options.colour)\n"
    body = '    """Read the options and configure the run."""\n    options = parse_options()\n'
    helpers = "".join(f"def helper_{i}(value):\n    return value * {i} + {i * 7}\n\n\n" for i in range(60))
    source = f"def run_cli():\n{body}{call}    return run(options)\n\n\n{helpers}def main():\n{body}"
    line = source.count("\n")
    source += "    configure()\n    return run(options)\n"
    open_document(fresh_client, uri, source)
    typed = await inline_completion(fresh_client, uri, line, len("    configure("),
                                    types.InlineCompletionTriggerKind.Automatic)
    assert [item.insert_text for item in typed.items] == ["verbose=options.verbose, colour=options.colour"]
    invoked = await inline_completion(fresh_client, uri, line, len("    configure("))
    texts = [item.insert_text for item in invoked.items]
    assert len(texts) >= 2 and texts[0] == "verbose=options.verbose, colour=options.colour", "alternatives: first"


async def test_a_call_written_in_another_open_document_of_the_language_is_recalled(fresh_client: LanguageClient):
    """The same three lines, then the call, in a sibling module open beside this one: its call is the ghost
    text. The same module opened as another language is not read."""
    await fresh_client.initialize_session(initialize_params("visual-studio-code", {"device": "cpu"}))
    lines = ('def main():\n    """Read the options and configure the run."""\n    options = parse_options()\n'
             "    configure(")
    sibling = lines + "verbose=options.verbose, colour=options.colour)\n    return run(options)\n"
    source = lines + ")\n    return run(options)\n"
    cursor = (3, len("    configure("))
    open_document(fresh_client, "file:///project/cli_other.js", sibling, language="javascript")
    open_document(fresh_client, "file:///project/alone.py", source)
    alone = await inline_completion(fresh_client, "file:///project/alone.py", *cursor,
                                    types.InlineCompletionTriggerKind.Automatic)
    assert [item.insert_text for item in alone.items] != ["verbose=options.verbose, colour=options.colour"]
    open_document(fresh_client, "file:///project/cli_old.py", sibling)
    open_document(fresh_client, "file:///project/cli.py", source)
    typed = await inline_completion(fresh_client, "file:///project/cli.py", *cursor,
                                    types.InlineCompletionTriggerKind.Automatic)
    assert [item.insert_text for item in typed.items] == ["verbose=options.verbose, colour=options.colour"]
