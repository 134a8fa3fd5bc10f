"""Properties over arbitrary text: the syntax layer never raises, and single-line ghosts stay on one line."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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
