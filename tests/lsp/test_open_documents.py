"""Which other open documents a fill's document lookup reads, and in what order."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace import Workspace

from infill_server.syntax.recall import MAX_OTHER_DOCUMENTS
from lsp.open_documents import OpenDocuments


def opened(*documents: tuple[str, str]) -> Workspace:
    workspace = Workspace(None)
    for uri, language in documents:
        workspace.put_text_document(types.TextDocumentItem(uri=uri, language_id=language, version=1, text=f"<{uri}>"))
    return workspace


def test_documents_asked_in_come_first_then_the_latest_opened_of_the_same_language() -> None:
    workspace = opened(("file:///a.py", "python"), ("file:///b.py", "python"), ("file:///c.js", "javascript"),
                       ("file:///d.py", "python"), ("file:///e.py", "python"))
    documents = OpenDocuments()
    assert documents.others(workspace, "file:///a.py", "python") == ("<file:///e.py>", "<file:///d.py>", "<file:///b.py>")
    documents.touch("file:///b.py")
    documents.touch("file:///a.py")
    assert documents.others(workspace, "file:///a.py", "python") == ("<file:///b.py>", "<file:///e.py>", "<file:///d.py>")
    assert documents.others(workspace, "file:///a.py", "javascript") == ("<file:///c.js>",)
    workspace.remove_text_document("file:///b.py")
    assert documents.others(workspace, "file:///a.py", "python") == ("<file:///e.py>", "<file:///d.py>"), "closed"


def test_at_most_the_lookups_number_of_documents() -> None:
    workspace = opened(*((f"file:///m{index}.py", "python") for index in range(MAX_OTHER_DOCUMENTS + 3)))
    assert len(OpenDocuments().others(workspace, "file:///m0.py", "python")) == MAX_OTHER_DOCUMENTS
