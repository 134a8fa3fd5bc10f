"""`textDocument/inlineCompletion`: the infill at the cursor, streamed as it denoises.

Invoked (the user asked) returns up to 3 alternatives; Automatic (typing) returns one, because it runs
on every keystroke. A newer request for the same document supersedes this one (answered empty);
`$/cancelRequest` cancels the task, which stops denoising within one step.
"""

from __future__ import annotations

import asyncio

from lsprotocol import types

from infill_server.syntax import language_for
from lsp.context import window
from lsp.positions import offset_at, position_at
from lsp.refinements import RefinementStream
from lsp.server import InfillLanguageServer

INVOKED_ALTERNATIVES = 3

_EMPTY = types.InlineCompletionList(items=[])


def _items(texts: tuple[str, ...] | list[str], at: types.Range) -> types.InlineCompletionList:
    unique = [text for index, text in enumerate(texts) if text and text not in texts[:index]]
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text=t, range=at) for t in unique]
    )


async def inline_completion(
    ls: InfillLanguageServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    uri = params.text_document.uri
    document = ls.workspace.text_documents.get(uri)
    if document is None or not ls.host.config.language_enabled(
        language_for(document.language_id, document.path)
    ):
        return _EMPTY
    ls.open_documents.touch(uri)
    text = document.source
    offset = offset_at(text, params.position, ls.position_encoding)
    cursor = position_at(text, offset, ls.position_encoding)  # clamped: a position past the end moves here
    at = types.Range(start=cursor, end=cursor)
    context = window(text, offset)
    stream = RefinementStream(
        ls.protocol, uri=uri, version=document.version, request_id=ls.protocol.msg_id, range=at
    )

    # Typing the characters of the suggestion on screen keeps it, without a model call. An explicit
    # request (Invoked) always runs the model: the user is asking for alternatives.
    invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    remembered = None if invoked else ls.host.lookup(uri, context.prefix, context.suffix)
    if remembered is not None:
        stream.finish(remembered)
        return _items([remembered], at)

    service = await ls.host.ready()
    if service is None:
        return _EMPTY
    from infill_server.service import InfillJob, ServiceError  # loaded by now; see service_host

    language = language_for(document.language_id, document.path)
    job = InfillJob(
        document=uri,
        prefix=context.prefix,
        suffix=context.suffix,
        language=language,
        alternatives=INVOKED_ALTERNATIVES if invoked else 1,
        open_documents=ls.open_documents.others(ls.workspace, uri, language),
    )
    try:
        result = await service.infill(job, on_update=stream.update)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the client cancelled: pygls answers RequestCancelled
        return _EMPTY  # superseded by a newer request for this document
    except ServiceError as error:
        ls.host.log(f"inline completion failed: {error}")
        return _EMPTY
    stream.finish(result.texts[0], result.steps)
    return _items(result.texts, at)


def register(ls: InfillLanguageServer) -> None:
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(inline_completion)
