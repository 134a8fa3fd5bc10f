"""Every filter's golden cases, run through the whole pipeline the service uses: analyze, then postprocess."""

from __future__ import annotations

import pytest

from infill_server.syntax import FILTERS, analyze, postprocess

from .golden import GOLDEN_DIR, GoldenCase, all_cases, load

CASES = all_cases()
LANGUAGES_TO_COVER = {"python", "javascript", "typescript", "go", "rust"}


def _filter_name(keep: object) -> str:
    return keep.__module__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_ghost_text_matches_golden_case(case: GoldenCase) -> None:
    context = analyze(case.document, case.offset, case.language)
    ghost = postprocess(case.model, case.document[: case.offset], case.document[case.offset :], context)
    shown = case.document[: case.offset] + "├" + ghost + "┤" + case.document[case.offset :]
    expected = case.document[: case.offset] + "├" + case.ghost + "┤" + case.document[case.offset :]
    assert shown == expected


@pytest.mark.parametrize("keep", FILTERS, ids=_filter_name)
def test_every_filter_has_golden_cases_in_every_language(keep: object) -> None:
    path = GOLDEN_DIR / f"{_filter_name(keep)}.md"
    assert path.exists(), f"no golden file for filter {_filter_name(keep)}"
    assert {case.language for case in load(path)} >= LANGUAGES_TO_COVER


def test_golden_files_name_only_existing_filters() -> None:
    names = {_filter_name(keep) for keep in FILTERS}
    assert {path.stem for path in GOLDEN_DIR.glob("*.md")} <= names
