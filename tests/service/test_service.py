"""InfillService on a tiny random model: streaming, superseding, cancelling, typed-through lookups."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from engine import Engine, InfillRequest
from infill_server.config import ServiceConfig
from infill_server.service import InfillJob, InfillService, ModelLoadError, ServiceError, Update
from infill_server.syntax import analyze, one_statement, postprocess

PREFIX = "def area(width, height):\n    return "
SUFFIX = "\n\nprint(area(2, 3))\n"


@pytest.fixture()
async def service(tiny_model_dir: Path):
    service = InfillService(ServiceConfig(model=str(tiny_model_dir), device="cpu"))
    await service.load()
    yield service
    service.close()


async def test_load_reports_progress_on_the_event_loop(tiny_model_dir: Path) -> None:
    service = InfillService(ServiceConfig(model=str(tiny_model_dir), device="cpu"))
    seen: list[tuple[str, float]] = []
    await service.load(lambda message, fraction: seen.append((message, fraction)))
    assert service.state == "ready"
    assert seen[0][1] == 0.0 and seen[-1] == ("ready", 1.0)
    service.close()


async def test_a_missing_model_fails_to_load_and_the_service_says_why(tmp_path: Path) -> None:
    service = InfillService(ServiceConfig(model=str(tmp_path / "nowhere"), device="cpu"))
    with pytest.raises(ModelLoadError, match="nowhere"):
        await service.load()
    assert service.state == "error"
    with pytest.raises(ServiceError, match="nowhere"):
        await service.infill(InfillJob("doc", PREFIX, SUFFIX))
    service.close()


async def test_updates_stream_one_per_step_and_the_result_equals_the_last(service: InfillService) -> None:
    updates: list[Update] = []
    result = await service.infill(InfillJob("doc", PREFIX, SUFFIX, language="python", steps=4), updates.append)
    await asyncio.sleep(0)  # let the last call_soon_threadsafe callback run
    assert [u.step for u in updates] == list(range(1, len(updates) + 1))
    assert updates[-1].done and updates[-1].text == result.text
    assert result.steps == updates[-1].step and result.ms > 0


async def test_single_line_mode_never_returns_a_newline(service: InfillService) -> None:
    result = await service.infill(InfillJob("doc", "x = compute(", ")\n", language="python", max_tokens=24))
    assert "\n" not in result.text


async def test_a_newer_job_for_the_same_document_supersedes_the_older(service: InfillService) -> None:
    slow = asyncio.create_task(service.infill(InfillJob("doc", PREFIX, SUFFIX, max_tokens=64, steps=64)))
    await asyncio.sleep(0.05)
    fresh = asyncio.create_task(service.infill(InfillJob("doc", PREFIX + "w", SUFFIX, max_tokens=4)))
    results = await asyncio.gather(slow, fresh, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert not isinstance(results[1], BaseException)


async def test_other_documents_are_not_superseded(service: InfillService) -> None:
    first = service.infill(InfillJob("a", PREFIX, SUFFIX, max_tokens=8))
    second = service.infill(InfillJob("b", PREFIX, SUFFIX, max_tokens=8))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert not any(isinstance(r, BaseException) for r in results)


async def test_cancelling_the_task_stops_denoising_within_a_step(service: InfillService) -> None:
    updates: list[Update] = []
    task = asyncio.create_task(service.infill(InfillJob("doc", PREFIX, SUFFIX, max_tokens=64, steps=64), updates.append))
    while not updates:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the worker is free again at once: a new job runs to the end
    await service.infill(InfillJob("other", PREFIX, SUFFIX, max_tokens=2))
    assert len(updates) < 64


async def test_typing_the_shown_suggestion_keeps_the_rest_without_a_model_call(service: InfillService) -> None:
    result = await service.infill(InfillJob("doc", PREFIX, SUFFIX, max_tokens=8))
    if len(result.text) < 2:
        pytest.skip("the random model produced a fill too short to type through")
    typed = result.text[:1]
    assert service.lookup("doc", PREFIX + typed, SUFFIX) == result.text[1:]
    assert service.lookup("doc", PREFIX + "\x00", SUFFIX) is None
    assert service.lookup("doc", PREFIX + typed, SUFFIX + "changed") is None


async def test_alternatives_are_distinct(service: InfillService) -> None:
    result = await service.infill(InfillJob("doc", PREFIX, SUFFIX, max_tokens=8, alternatives=3))
    assert 1 <= len(result.texts) <= 3 and len(set(result.texts)) == len(result.texts)


# a blank line inside a body: one statement or several may be missing
BLANK_PREFIX = "def area(width, height):\n    w = width\n    "
BLANK_SUFFIX = "\n    return w * height\n"


def recorded_requests(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[InfillRequest]:
    """The requests the service sends the engine from now on, in order (the engine still fills them)."""
    asked: list[InfillRequest] = []
    real_infill = engine.infill

    def recording(request, cancel=None):
        asked.append(request)
        return real_infill(request, cancel)

    monkeypatch.setattr(engine, "infill", recording)
    return asked


@pytest.mark.parametrize(
    ("length", "sizes"),
    [("auto", None), ("probe", ()), ("likelihood", (-2, -1, 0, 1, 2))],
)
async def test_the_length_setting_reaches_single_line_requests(
    service: InfillService, monkeypatch: pytest.MonkeyPatch, length: str, sizes: tuple | None
) -> None:
    engine = service.engine
    assert engine is not None
    asked = recorded_requests(engine, monkeypatch)
    await service.reconfigure(service.config.replace(length=length))
    result = await service.infill(InfillJob("doc", PREFIX, SUFFIX))  # a single-line hole, sized by the service
    assert asked[-1].length_offsets == sizes and result.steps >= 1
    assert asked[-1].length_choice == ("likelihood" if length == "likelihood" else None)


async def test_multi_line_holes_take_the_models_multi_line_pad_bias_and_others_keep_its_default(
    service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = service.engine
    assert engine is not None
    engine.defaults = replace(engine.defaults, multiline_pad_logit_bias=-2.0)
    asked = recorded_requests(engine, monkeypatch)
    block = "def area(width, height):\n"  # the cursor on an empty body line: a multi-line hole
    await service.infill(InfillJob("a", block + "    ", "\n\nprint(area(2, 3))\n", language="python"))
    await service.infill(InfillJob("b", PREFIX, SUFFIX, language="python"))  # the rest of one line
    await service.infill(InfillJob("c", block + "    ", "return width\n", language="python", rewrite=True,
                                   selection="return width"))
    assert [request.pad_logit_bias for request in asked] == [-2.0, None, None]
    assert asked[0].fit_length is False and asked[1].fit_length is None


async def test_a_blank_line_inside_brackets_is_a_block_and_its_one_line_reading_an_argument(
    service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = service.engine
    assert engine is not None
    asked = recorded_requests(engine, monkeypatch)
    prefix, suffix = "total = add(\n    1,\n    ", "\n)\n"
    await service.infill(InfillJob("typed", prefix, suffix, language="python"))
    await service.infill(InfillJob("invoked", prefix, suffix, language="python", alternatives=3))
    typed, block, line = asked
    assert (typed.max_tokens, typed.fit_length) == (block.max_tokens, block.fit_length) == (48, False)
    assert (line.max_tokens, line.alternatives, line.fit_length) == (16, 1, None)


async def test_an_invoked_blank_line_gets_a_one_line_fill_beside_the_block(
    service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = service.engine
    assert engine is not None
    asked = recorded_requests(engine, monkeypatch)
    job = InfillJob("doc", BLANK_PREFIX, BLANK_SUFFIX, language="python", alternatives=3)
    result = await service.infill(job)
    block, line = asked
    assert (block.max_tokens, block.alternatives, block.fit_length) == (48, 2, False)
    assert block.pad_logit_bias == engine.defaults.multiline_pad_logit_bias
    assert (line.max_tokens, line.alternatives, line.fit_length, line.pad_logit_bias) == (24, 1, None, None)
    assert 1 <= len(result.texts) <= 3 and len(set(result.texts)) == len(result.texts)
    # the one-line fill, recomputed (greedy), is the second alternative unless it repeats the first or is empty
    one_line = postprocess(engine.complete(line).text, BLANK_PREFIX, BLANK_SUFFIX,
                           one_statement(analyze(BLANK_PREFIX + BLANK_SUFFIX, len(BLANK_PREFIX), "python")))
    assert "\n" not in one_line
    if one_line.strip() and one_line != result.texts[0]:
        assert result.texts[1] == one_line


@pytest.mark.parametrize(
    ("prefix", "suffix", "alternatives"), [(BLANK_PREFIX, BLANK_SUFFIX, 1), (PREFIX, SUFFIX, 3)]
)
async def test_typing_on_a_blank_line_or_asking_elsewhere_runs_one_fill(
    service: InfillService, monkeypatch: pytest.MonkeyPatch, prefix: str, suffix: str, alternatives: int
) -> None:
    engine = service.engine
    assert engine is not None
    asked = recorded_requests(engine, monkeypatch)
    await service.infill(InfillJob("doc", prefix, suffix, language="python", alternatives=alternatives))
    assert [request.alternatives for request in asked] == [alternatives]


async def test_the_configured_largest_hole_caps_both_readings_of_a_blank_line(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = InfillService(ServiceConfig(model=str(tiny_model_dir), device="cpu", max_tokens=16))
    await service.load()
    assert service.engine is not None
    asked = recorded_requests(service.engine, monkeypatch)
    await service.infill(InfillJob("doc", BLANK_PREFIX, BLANK_SUFFIX, language="python", alternatives=3))
    service.close()
    assert [request.max_tokens for request in asked] == [16, 16]


async def test_requests_carry_a_syntax_error_count_of_the_document_with_the_shown_fill(
    service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert service.engine is not None
    asked = recorded_requests(service.engine, monkeypatch)
    call = "def area(width, height):\n    return max(width, "
    await service.infill(InfillJob("a", call, SUFFIX, language="python"))
    await service.infill(InfillJob("b", BLANK_PREFIX, BLANK_SUFFIX, language="python", alternatives=2))
    await service.infill(InfillJob("c", "notes: ", "\n", language=None))
    count = asked[0].syntax_errors
    assert count is not None and count("height)") == 0 and count("height") > 0
    block, line = asked[1:3]
    assert block.syntax_errors is not None and line.syntax_errors is not None
    assert line.syntax_errors("w = w * 2") == 0 and line.syntax_errors("w = (") > 0
    assert asked[3].syntax_errors is None, "plain text: no grammar"


async def test_requests_carry_the_fills_the_document_and_the_open_ones_recall_for_the_cursor(
    service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert service.engine is not None
    asked = recorded_requests(service.engine, monkeypatch)
    prefix = "def area(width, height):\n    return width * height\n\n\nprint(area(3, 4))\nprint(area("
    jobs = [InfillJob("a", prefix, ")\n", language="python"),
            InfillJob("b", "notes: see area(3, 4)\nthen see area(", ")\n", language=None),
            InfillJob("c", "print(area(", ")\n", language="python", open_documents=("x = 1\nprint(area(5, 6))\n",))]
    for job in jobs:
        await service.infill(job)
    recalled = [[text for text, _ in request.document_candidates] for request in asked]
    assert recalled == [["3, 4)"], ["3, 4"], ["5, 6)"]], "plain text too: the lookup reads text, not syntax"


async def test_requests_ask_which_fills_finish_the_cursors_word_into_one_no_open_document_spells(
    service: InfillService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert service.engine is not None
    asked = recorded_requests(service.engine, monkeypatch)
    prefix = "day_period = 1\nx = day_p"
    await service.infill(InfillJob("a", prefix, "\n", language="python"))
    await service.infill(InfillJob("b", prefix, "\n", language="python", open_documents=("day_pace = 2\n",)))
    await service.infill(InfillJob("c", "x = ", "\n", language="python"))
    first, opened, blank = (request.word_completion for request in asked)
    assert first is not None and first("ace") == "eriod" and first("eriod") == ""
    assert opened is not None and opened("ace") == "", "another open document spells day_pace"
    assert blank is None, "no word at the cursor"
