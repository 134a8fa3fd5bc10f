"""Inline edit: regenerate a selection, stream it, and apply it only when the user accepts.

1. A code action (kind refactor.rewrite) on a non-empty selection carries the `dgem.rewrite` command.
2. `dgem.rewrite [{uri, range}]` makes the selection the hole and denoises it, streaming
   `dgem/refinement` with requestId = this request's id; it answers {rewriteId, uri, version, range,
   text} and keeps the proposal. rewriteId is the request id, so a client can reject (or
   `$/cancelRequest`) a rewrite that is still streaming.
3. `dgem.acceptRewrite [rewriteId]` applies it with `workspace/applyEdit` if the selected text is still
   what was rewritten; `dgem.rejectRewrite [rewriteId]` drops it (and stops it if still running).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams, JsonRpcRequestCancelled

from infill_server.protocol import ACCEPT_REWRITE_COMMAND, REJECT_REWRITE_COMMAND, REWRITE_COMMAND
from infill_server.syntax import language_for
from lsp.context import window
from lsp.positions import offset_at, position_at
from lsp.refinements import RefinementStream
from lsp.server import InfillLanguageServer

TITLE = "Rewrite selection with dgem-infill"
MAX_PENDING = 16
# Rewrites get their own service key, so a keystroke's inline completion does not supersede them.
_JOB_KEY_SUFFIX = "#dgem-rewrite"


@dataclass(frozen=True)
class Proposal:
    uri: str
    range: types.Range
    original: str
    text: str


def _range_json(at: types.Range) -> dict[str, Any]:
    return {
        "start": {"line": at.start.line, "character": at.start.character},
        "end": {"line": at.end.line, "character": at.end.character},
    }


def _position(value: Any) -> types.Position:
    line, character = value["line"], value["character"]
    if not isinstance(line, int) or not isinstance(character, int) or line < 0 or character < 0:
        raise ValueError("line and character must be non-negative integers")
    return types.Position(line=line, character=character)


def _target(arguments: tuple[object, ...]) -> tuple[str, types.Range]:
    try:
        (target,) = arguments
        uri = target["uri"]  # type: ignore[index]
        start, end = target["range"]["start"], target["range"]["end"]  # type: ignore[index]
        if not isinstance(uri, str):
            raise ValueError("uri must be a string")
        return uri, types.Range(start=_position(start), end=_position(end))
    except (ValueError, TypeError, KeyError) as error:
        raise JsonRpcInvalidParams(
            message=f"{REWRITE_COMMAND} takes one argument {{uri, range}}: {error}"
        ) from error


def _rewrite_id(command: str, arguments: tuple[object, ...]) -> str:
    if len(arguments) != 1 or not isinstance(arguments[0], int | str):
        raise JsonRpcInvalidParams(message=f"{command} takes one argument: the rewriteId")
    return str(arguments[0])


class Rewrites:
    """Rewrites still streaming (tasks) and finished proposals awaiting accept/reject (bounded)."""

    def __init__(self, ls: InfillLanguageServer):
        self._ls = ls
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._proposals: OrderedDict[str, Proposal] = OrderedDict()

    def code_action(self, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        selection = params.range
        document = self._ls.workspace.text_documents.get(params.text_document.uri)
        if selection.start == selection.end or document is None:
            return None
        if not self._ls.host.config.language_enabled(language_for(document.language_id, document.path)):
            return None
        only = params.context.only
        if only and not any(types.CodeActionKind.RefactorRewrite.value.startswith(kind) for kind in only):
            return None
        command = types.Command(
            title=TITLE,
            command=REWRITE_COMMAND,
            arguments=[{"uri": document.uri, "range": _range_json(selection)}],
        )
        return [types.CodeAction(title=TITLE, kind=types.CodeActionKind.RefactorRewrite, command=command)]

    async def rewrite(self, *arguments: object) -> dict[str, Any] | None:
        ls = self._ls
        uri, requested = _target(arguments)
        document = ls.workspace.text_documents.get(uri)
        if document is None:
            raise JsonRpcInvalidParams(message=f"document is not open: {uri}")
        text, encoding = document.source, ls.position_encoding
        start, end = sorted(
            (offset_at(text, requested.start, encoding), offset_at(text, requested.end, encoding))
        )
        selection = types.Range(
            start=position_at(text, start, encoding), end=position_at(text, end, encoding)
        )
        rewrite_id = ls.protocol.msg_id
        key = str(rewrite_id)
        task = asyncio.current_task()
        assert task is not None
        self._cancel_with_request(rewrite_id, task)
        self._running[key] = task
        stream = RefinementStream(
            ls.protocol, uri=uri, version=document.version, request_id=rewrite_id, range=selection
        )
        try:
            result = await self._denoise(document, start, end, stream)
        except asyncio.CancelledError as cancelled:
            # pygls cannot answer a command whose task was cancelled; an error response it can send.
            raise JsonRpcRequestCancelled(message=f"rewrite {rewrite_id} was cancelled") from cancelled
        finally:
            self._running.pop(key, None)
        if result is None:
            return None
        stream.finish(result.text, result.steps)
        self._proposals[key] = Proposal(uri=uri, range=selection, original=text[start:end], text=result.text)
        while len(self._proposals) > MAX_PENDING:
            self._proposals.popitem(last=False)
        return {
            "rewriteId": rewrite_id,
            "uri": uri,
            "version": document.version,
            "range": _range_json(selection),
            "text": result.text,
        }

    async def _denoise(self, document: Any, start: int, end: int, stream: RefinementStream) -> Any:
        """The InfillResult for the selection start..end, or None without a model."""
        service = await self._ls.host.ready()
        if service is None:
            return None
        from infill_server.service import InfillJob, ServiceError  # imported by the load; see service_host

        text = document.source
        context = window(text, start, end)
        job = InfillJob(
            document=document.uri + _JOB_KEY_SUFFIX,
            prefix=context.prefix,
            suffix=context.suffix,
            language=language_for(document.language_id, document.path),
            rewrite=True,
            selection=text[start:end],
        )
        try:
            return await service.infill(job, on_update=stream.update)
        except ServiceError as error:
            raise JsonRpcInternalError(message=f"rewrite failed: {error}") from None

    def _cancel_with_request(self, request_id: Any, task: asyncio.Task[Any]) -> None:
        """pygls's `$/cancelRequest` cancels only the outer future of `workspace/executeCommand`, not
        the task running the command; chain the two so denoising stops."""
        outer = self._ls.protocol._request_futures.get(request_id)  # noqa: SLF001 - no public handle
        if outer is not None:
            outer.add_done_callback(lambda future: task.cancel() if future.cancelled() else None)

    async def accept(self, *arguments: object) -> dict[str, Any]:
        key = _rewrite_id(ACCEPT_REWRITE_COMMAND, arguments)
        proposal = self._proposals.pop(key, None)
        if proposal is None:
            return {"applied": False, "reason": "unknown or expired rewriteId"}
        document = self._ls.workspace.text_documents.get(proposal.uri)
        if document is None:
            return {"applied": False, "reason": "document is closed"}
        text, encoding = document.source, self._ls.position_encoding
        start, end = (
            offset_at(text, proposal.range.start, encoding),
            offset_at(text, proposal.range.end, encoding),
        )
        if text[start:end] != proposal.original:
            return {"applied": False, "reason": "the selection changed since the rewrite"}
        edit = types.TextEdit(range=proposal.range, new_text=proposal.text)
        changes = self._ls.client_capabilities.workspace
        if changes and changes.workspace_edit and changes.workspace_edit.document_changes:
            versioned = types.OptionalVersionedTextDocumentIdentifier(
                uri=proposal.uri, version=document.version
            )
            workspace_edit = types.WorkspaceEdit(
                document_changes=[types.TextDocumentEdit(text_document=versioned, edits=[edit])]
            )
        else:
            workspace_edit = types.WorkspaceEdit(changes={proposal.uri: [edit]})
        result = await self._ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=workspace_edit, label="dgem-infill rewrite")
        )
        return {"applied": bool(result.applied), "reason": result.failure_reason}

    def reject(self, *arguments: object) -> dict[str, Any]:
        key = _rewrite_id(REJECT_REWRITE_COMMAND, arguments)
        running = self._running.pop(key, None)
        if running is not None:
            running.cancel()
        known = self._proposals.pop(key, None) is not None or running is not None
        return {"rejected": known}


def register(ls: InfillLanguageServer) -> None:
    rewrites = Rewrites(ls)

    # pygls cannot register bound methods; these adapters take `ls` first, as pygls expects.
    def code_action(
        ls: InfillLanguageServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        return rewrites.code_action(params)

    async def rewrite(ls: InfillLanguageServer, *arguments: object) -> dict[str, Any] | None:
        return await rewrites.rewrite(*arguments)

    async def accept(ls: InfillLanguageServer, *arguments: object) -> dict[str, Any]:
        return await rewrites.accept(*arguments)

    def reject(ls: InfillLanguageServer, *arguments: object) -> dict[str, Any]:
        return rewrites.reject(*arguments)

    options = types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.RefactorRewrite])
    ls.feature(types.TEXT_DOCUMENT_CODE_ACTION, options)(code_action)
    ls.command(REWRITE_COMMAND)(rewrite)
    ls.command(ACCEPT_REWRITE_COMMAND)(accept)
    ls.command(REJECT_REWRITE_COMMAND)(reject)
