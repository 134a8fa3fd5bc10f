"""A language server that answers every inline completion with the same scripted refinements, slowly.

The VS Code test uses it to check the client's mechanics that the real model is too fast (and too
random) to pin down: every refinement is drawn in turn, and accepting a word keeps the rest on screen.
Run: python scripted_server.py   (stdio)
"""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from infill_server.protocol import REFINEMENT_NOTIFICATION

FRAMES = ["r___r___ ___", "re__rn__ +__", "ret_rn _ + _", "return a + b"]
STEP_S = 0.25

server = LanguageServer("dgem-infill-scripted", "0")


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(
    ls: LanguageServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    document = ls.workspace.get_text_document(params.text_document.uri)
    at = types.Range(start=params.position, end=params.position)
    request_id = ls.protocol.msg_id
    position = {"line": params.position.line, "character": params.position.character}
    for step, text in enumerate(FRAMES):
        ls.protocol.notify(
            REFINEMENT_NOTIFICATION,
            {
                "uri": document.uri,
                "version": document.version,
                "requestId": request_id,
                "step": step,
                "text": text,
                "range": {"start": position, "end": position},
                "done": step == len(FRAMES) - 1,
            },
        )
        if step < len(FRAMES) - 1:
            await asyncio.sleep(STEP_S)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=FRAMES[-1], range=at)])


if __name__ == "__main__":
    server.start_io()
