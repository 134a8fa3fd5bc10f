"""The other documents open in the editor, for the document lookup (infill_server/syntax/recall.py).

A sibling module's imports, a test file's setup, the call written in the file beside this one: the line
the cursor needs is often in another open tab. Their text goes to the local service only.
"""

from __future__ import annotations

from collections import OrderedDict

from pygls.workspace import Workspace

from infill_server.syntax import language_for
from infill_server.syntax.recall import MAX_OTHER_DOCUMENTS

REMEMBERED_URIS = 64


class OpenDocuments:
    """Which documents the user asked for fills in, most recent last, to order the others by."""

    def __init__(self) -> None:
        self._recent: OrderedDict[str, None] = OrderedDict()

    def touch(self, uri: str) -> None:
        self._recent.pop(uri, None)
        self._recent[uri] = None
        while len(self._recent) > REMEMBERED_URIS:
            self._recent.popitem(last=False)

    def others(self, workspace: Workspace, uri: str, language: str | None) -> tuple[str, ...]:
        """The text of up to MAX_OTHER_DOCUMENTS open documents of `language` other than `uri`: those the
        user asked for fills in most recently first, then the most recently opened."""
        documents = workspace.text_documents
        ordered = [*reversed(self._recent), *(u for u in reversed(list(documents)) if u not in self._recent)]
        texts: list[str] = []
        for other in ordered:
            document = documents.get(other)
            if other == uri or document is None or language_for(document.language_id, document.path) != language:
                continue
            texts.append(document.source)
            if len(texts) == MAX_OTHER_DOCUMENTS:
                break
        return tuple(texts)
