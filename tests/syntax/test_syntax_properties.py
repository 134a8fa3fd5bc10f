"""Properties over arbitrary text: the syntax layer never raises, and single-line ghosts stay on one line."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import infill_server.syntax as package
from infill_server.syntax import LANGUAGES, Mode, analyze, postprocess

CODE_CHARS = st.sampled_from(list("abc xy_01(){}[]:;,.=+-'\"`#/*\\\n\t    é👋"))
TEXT = st.text(CODE_CHARS, max_size=200)


@settings(max_examples=300, deadline=None)
@given(
    document=TEXT,
    completion=TEXT,
    where=st.floats(0, 1),
    language=st.sampled_from([*LANGUAGES, None]),
)
def test_analyze_and_postprocess_accept_any_text(
    document: str, completion: str, where: float, language: str | None
) -> None:
    offset = int(where * len(document))
    context = analyze(document, offset, language)
    ghost = postprocess(completion, document[:offset], document[offset:], context)
    assert isinstance(ghost, str)
    if context.mode is Mode.SINGLE_LINE:
        assert "\n" not in ghost
    assert ghost == "" or ghost.strip()


def test_the_true_continuation_is_never_corrupted_only_shortened() -> None:
    # A perfect model would output what really follows the cursor; every filter may cut it,
    # none may change it. This package's own source serves as the document.

    for path in sorted(Path(package.__file__).parent.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for offset in range(0, len(text), 53):
            for length in (15, 120):
                end = text.find("\n", offset + length)
                end = len(text) if end == -1 else end
                truth = text[offset:end]
                context = analyze(text, offset, "python")
                ghost = postprocess(truth, text[:offset], text[end:], context)
                assert truth.startswith(ghost), (path.name, offset, truth, ghost)
