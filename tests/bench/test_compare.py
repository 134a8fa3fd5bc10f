"""The bench's side-by-side (b) on the tiny random model: which fills are timed and counted. Mechanics only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine import Engine
from infill_server.bench import compare
from infill_server.bench.latency import Document
from infill_server.bench.timing import Budget

DOC = Document("def add(a, b):\n    total = a + b\n    return to", "tal\n\n\nprint(add(1, 2))\n", 20)


def test_b_times_one_fill_and_where_the_model_fills_several_sizes_the_default_too(tiny_model_dir: Path) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu")
    one_size = compare.versus_autoregressive(engine, DOC, 8, Budget(1, 1, 0.0))
    assert "speedup_final_default_length" not in one_size, "the default is one fill: nothing more to time"
    engine.defaults = replace(engine.defaults, fit_length=True, length_offsets=(-1, 0, 1), length_choice="likelihood")
    filled: list[tuple[int, ...] | None] = []
    infill = engine.infill
    engine.infill = lambda request, *args: filled.append(request.length_offsets) or infill(request, *args)
    several = compare.versus_autoregressive(engine, DOC, 8, Budget(1, 1, 0.0))
    assert several["speedup_final_default_length"] > 0 and several["speedup_final"] > 0
    assert set(several["ms"]) >= {"diffusion_final", "diffusion_default_length_final", "autoregressive_final"}
    assert {(), None} <= set(filled), "one fill at the probed length, and the model's own length rule"


def test_accuracy_counts_the_default_fill_and_one_fill(tiny_model_dir: Path) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu")
    result = compare.accuracy(engine, 2)
    assert set(result["exact_match"]) == {"diffusion", "diffusion_one_fill", "autoregressive"}
    assert result["holes"] == 2
