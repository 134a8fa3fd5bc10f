"""Settings through initializationOptions and didChangeConfiguration; model loading reports
$/progress; failures reach the user as window/showMessage while the server keeps serving."""

from __future__ import annotations

import asyncio

import pytest
from lsp_harness import initialize_params, inline_completion, open_document
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="session")

URI = "file:///project/config.py"
SOURCE = "def add(a, b):\n    return \n"


async def next_message(client: LanguageClient, seen: int) -> types.ShowMessageParams:
    """The first showMessage after `seen` messages (the notification is the readiness signal)."""
    while len(client.messages) <= seen:
        await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    return client.messages[seen]


async def test_model_loading_reports_progress_begin_report_end(fresh_client: LanguageClient, tiny_model):
    await fresh_client.initialize_session(initialize_params("visual-studio-code", {"model": str(tiny_model)}))
    open_document(fresh_client, URI, SOURCE)
    await inline_completion(fresh_client, URI, 1, 11)  # answered only once the model is loaded
    (reports,) = fresh_client.progress_reports.values()
    kinds = [report.kind for report in reports]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
    assert [r.percentage for r in reports if r.kind == "report"] == sorted(
        r.percentage for r in reports if r.kind == "report"
    )


async def test_a_model_that_will_not_load_is_shown_and_the_server_keeps_serving(
    fresh_client: LanguageClient, tiny_model, tmp_path
):
    missing = tmp_path / "no-such-model"
    await fresh_client.initialize_session(initialize_params("visual-studio-code", {"model": str(missing)}))
    message = await next_message(fresh_client, 0)
    assert message.type == types.MessageType.Error and "model" in message.message
    assert any(log.type == types.MessageType.Error for log in fresh_client.log_messages)

    open_document(fresh_client, URI, SOURCE)
    assert list((await inline_completion(fresh_client, URI, 1, 11)).items) == []

    # A good model path through didChangeConfiguration brings completions back.
    fresh_client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"dgemInfill": {"model": str(tiny_model)}})
    )
    for _ in range(100):  # each round trip is a readiness probe, not a sleep
        await inline_completion(fresh_client, URI, 1, 11)
        if any(r.done for r in fresh_client.refinements):
            break
    assert any(r.done for r in fresh_client.refinements)


async def test_an_unknown_setting_is_shown_by_name(fresh_client: LanguageClient, tiny_model):
    options = {"model": str(tiny_model), "colour": "blue"}
    await fresh_client.initialize_session(initialize_params("neovim", options))
    message = await next_message(fresh_client, 0)
    assert message.type == types.MessageType.Error and "colour" in message.message


async def test_languages_setting_disables_completion_per_language(fresh_client: LanguageClient, tiny_model):
    options = {"model": str(tiny_model), "languages": ["rust"]}
    await fresh_client.initialize_session(initialize_params("visual-studio-code", options))
    open_document(fresh_client, URI, SOURCE)
    open_document(fresh_client, "file:///project/lib.rs", "fn main() {\n    let x = \n}\n", language="rust")
    assert list((await inline_completion(fresh_client, URI, 1, 11)).items) == []
    await inline_completion(fresh_client, "file:///project/lib.rs", 1, 12)
    assert {r.uri for r in fresh_client.refinements} == {"file:///project/lib.rs"}

    fresh_client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"languages": ["python"]})
    )
    await asyncio.wait_for(_until_refined(fresh_client, URI), timeout=60)


async def _until_refined(client: LanguageClient, uri: str) -> None:
    while not any(r.uri == uri for r in client.refinements):
        await inline_completion(client, uri, 1, 11)
