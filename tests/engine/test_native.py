"""The native network's suffix-head cache (TailKV): exact where it should be, and really skipping work.

The tests given `model_and_cache` run twice: float32 and bf16 matrix products (engine/backends/native.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import Engine
from engine.native import HoleKV, NativeModel, TailKV


@pytest.fixture(params=["float32", "bfloat16"])
def model_and_cache(tiny_model_dir: Path, request: pytest.FixtureRequest) -> tuple[NativeModel, object, Engine]:
    engine = Engine.load(tiny_model_dir, device="cpu", dtype=request.param)
    cache = engine.backend.new_cache()
    prefix = torch.tensor(engine.prefix_ids("def add(a, b):\n    return "), dtype=torch.long)
    engine.backend.extend(cache, prefix, 0)
    return engine.backend.model, cache, engine


def same_pass(model: NativeModel) -> dict:
    """Tolerance between a pass over fewer rows and the full pass: float32's reordered sums, or two bf16
    rounding steps at the logits' scale (kernels may block fewer rows differently)."""
    return {"rtol": 1e-4, "atol": 1e-4} if model.embed.weight.dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1e-3}


def canvas_of(engine: Engine, hole: list[int]) -> torch.Tensor:
    suffix = engine.tokenizer.encode("\n\nprint(add(1, 2))\n")
    return torch.tensor([hole + suffix], dtype=torch.long)  # (1, C)


def test_a_filled_tail_gives_the_full_pass_while_the_hole_is_unchanged(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    canvas = canvas_of(engine, [mask] * 6)
    tail = TailKV(model.rotary)
    exact = model.denoise(cache, canvas, 6)
    recorded = model.denoise(cache, canvas, 6, tail)  # full pass, fills the tail
    reused = model.denoise(cache, canvas, 6, tail)  # hole slots only
    assert tail.filled
    torch.testing.assert_close(recorded, exact)
    torch.testing.assert_close(reused, exact, **same_pass(model))


def test_a_reused_tail_lags_the_hole_and_clear_brings_back_the_exact_pass(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    tail = TailKV(model.rotary)
    model.denoise(cache, canvas_of(engine, [mask] * 6), 6, tail)
    changed = canvas_of(engine, engine.tokenizer.encode("a + b") + [mask] * 3)[:, :]
    hole = changed.shape[1] - canvas_of(engine, []).shape[1]
    exact = model.denoise(cache, changed, hole)
    stale = model.denoise(cache, changed, hole, tail)  # suffix keys still from the all-mask hole
    assert not torch.allclose(stale, exact, atol=1e-4)
    tail.clear()
    torch.testing.assert_close(model.denoise(cache, changed, hole, tail), exact)


def test_a_reusing_pass_runs_only_the_hole_slots(model_and_cache, monkeypatch) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    canvas = canvas_of(engine, [mask] * 4)
    seen: list[int] = []
    embed = model.embed.forward
    monkeypatch.setattr(model.embed, "forward", lambda ids: seen.append(ids.shape[1]) or embed(ids))
    tail = TailKV(model.rotary)
    model.denoise(cache, canvas, 4, tail)
    model.denoise(cache, canvas, 4, tail)
    assert seen == [canvas.shape[1], 4]


@pytest.mark.parametrize("refresh, full_passes", [(1, 6), (0, 1), (4, 2)])
def test_the_engine_runs_the_suffix_head_every_refresh_steps(
    tiny_model_dir: Path, monkeypatch, refresh: int, full_passes: int
) -> None:
    from dataclasses import replace

    from engine import InfillRequest

    engine = Engine.load(tiny_model_dir, device="cpu")
    engine.defaults = replace(engine.defaults, suffix_refresh_steps=refresh, fit_length=False)
    model = engine.backend.model
    seen: list[int] = []
    embed = model.embed.forward
    monkeypatch.setattr(model.embed, "forward", lambda ids: seen.append(ids.shape[1]) or embed(ids))
    steps = list(engine.infill(InfillRequest("x = ", "\nprint(x)\n", max_tokens=6, steps=6)))
    full_canvas = 6 + len(engine.suffix_ids("\nprint(x)\n"))
    assert len(steps) == 6 and steps[-1].done
    assert seen.count(full_canvas) == full_passes
    assert seen.count(6) == 6 - full_passes  # the other steps ran the hole slots alone


@pytest.mark.parametrize("moves", [False, True])
def test_with_the_suffix_head_kept_only_the_probe_and_the_first_step_run_it(
    tiny_model_dir: Path, monkeypatch, moves: bool
) -> None:
    from dataclasses import replace

    from engine import InfillRequest

    engine = Engine.load(tiny_model_dir, device="cpu")
    engine.defaults = replace(engine.defaults, suffix_refresh_steps=0, fit_length=True, probe_moves_suffix_head=moves)
    model = engine.backend.model
    seen: list[int] = []
    embed = model.embed.forward
    monkeypatch.setattr(model.embed, "forward", lambda ids: seen.append(ids.shape[1]) or embed(ids))
    probe = engine.probe_length
    # the random network rarely predicts pads: cut its probed length so the hole shrinks
    monkeypatch.setattr(engine, "probe_length", lambda *args: (3, probe(*args)[1]))
    steps = list(engine.infill(InfillRequest("x = ", "\nprint(x)\n", max_tokens=6)))
    suffix = len(engine.suffix_ids("\nprint(x)\n"))
    fitted = steps[-1].slots
    assert steps[-1].done and fitted == 3
    assert seen.count(6 + suffix) == 1  # the probe
    # the shorter hole moves the suffix head: its first step runs it again, unless the probe's keys are moved
    first_full = 0 if moves else 1
    assert seen.count(fitted + suffix) == first_full
    assert seen.count(fitted) == len(steps) - 1 - first_full


def test_a_moved_tail_equals_a_tail_recorded_at_the_new_positions(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    at_six, at_four = TailKV(model.rotary), TailKV(model.rotary)
    model.denoise(cache, canvas_of(engine, [mask] * 6), 6, at_six)
    model.denoise(cache, canvas_of(engine, [mask] * 4), 4, at_four)
    at_six.move(-2)
    # keys differ only where the hole's content reached them (not at all in the first layer); a moved bf16
    # key is rounded twice, and the turn spreads the rounding of its largest components (up to ~4) to the rest
    bf16 = at_six.keys[0].dtype == torch.bfloat16
    torch.testing.assert_close(at_six.keys[0], at_four.keys[0], rtol=1.6e-2 if bf16 else 1e-4, atol=3e-2 if bf16 else 1e-4)
    torch.testing.assert_close(at_six.values[0], at_four.values[0])


def test_a_tail_moved_per_row_holds_each_row_moved_by_its_own_delta(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    tail = TailKV(model.rotary)
    model.denoise(cache, canvas_of(engine, [mask] * 6), 6, tail)
    deltas = [-2, 0, 1]
    rows = tail.moved_per_row(deltas)
    for row, delta in enumerate(deltas):
        alone = tail.copy()
        alone.move(delta)
        for layer in range(len(tail.keys)):
            keys, values = rows.layer(layer, len(deltas))
            torch.testing.assert_close(keys[row : row + 1], alone.keys[layer])
            torch.testing.assert_close(values[row : row + 1], tail.values[layer])
    assert not TailKV(model.rotary).moved_per_row(deltas).filled


@pytest.mark.parametrize("moves", [True, False])
def test_fills_at_several_sizes_read_the_probes_suffix_head_moved_to_each_size(
    tiny_model_dir: Path, monkeypatch, moves: bool
) -> None:
    """With probe_moves_suffix_head, the batched fill's first pass runs its hole slots only (the suffix head
    comes from the probe), and the row at the probed size is the fill that size alone gives."""
    from dataclasses import replace

    from engine import InfillRequest

    engine = Engine.load(tiny_model_dir, device="cpu")
    engine.defaults = replace(engine.defaults, suffix_refresh_steps=0, fit_length=True, probe_moves_suffix_head=moves)
    model = engine.backend.model
    seen: list[tuple[int, int]] = []
    embed = model.embed.forward
    monkeypatch.setattr(model.embed, "forward", lambda ids: seen.append(tuple(ids.shape)) or embed(ids))
    probe = engine.probe_length
    monkeypatch.setattr(engine, "probe_length", lambda *args: (4, probe(*args)[1]))
    request = InfillRequest("x = ", "\nprint(x)\n", max_tokens=8, steps=4)  # 2 steps at the probed size
    alone = engine.complete(request)  # one fill at the probed size
    seen.clear()
    # keep the probed size's row whatever the causal pass says, to compare it with the fill alone
    monkeypatch.setattr(engine, "_continuation_likelihoods",
                        lambda cache, prefix_ids, fills, suffix: [float(state.tokens.shape[1] == 4) for state in fills])
    kept = engine.complete(replace(request, length_offsets=(-1, 0, 1), length_choice="likelihood"))
    suffix = len(engine.suffix_ids("\nprint(x)\n"))
    batched = [shape for shape in seen if shape[0] == 3]
    assert batched[0] == ((3, 5) if moves else (3, 5 + suffix)), "the first batched pass, widest hole 5"
    assert alone is not None and kept is not None and kept.slots == 4
    if moves:
        assert kept.text == alone.text


def test_a_document_keeps_its_suffix_head_for_the_next_probe_before_the_same_suffix(
    tiny_model_dir: Path, monkeypatch
) -> None:
    from dataclasses import replace

    from engine import InfillRequest

    engine = Engine.load(tiny_model_dir, device="cpu")
    engine.defaults = replace(engine.defaults, suffix_refresh_steps=0, fit_length=True,
                              suffix_head_across_fills=True)
    model = engine.backend.model
    seen: list[int] = []
    embed = model.embed.forward
    monkeypatch.setattr(model.embed, "forward", lambda ids: seen.append(ids.shape[1]) or embed(ids))
    suffix = "\nprint(x)\n"
    full_canvas = 6 + len(engine.suffix_ids(suffix))

    first = engine.complete(InfillRequest("x = ", suffix, max_tokens=6, cache_key="doc"))
    assert seen.count(full_canvas) == 1  # the first probe runs the suffix head
    again = engine.complete(InfillRequest("x = ", suffix, max_tokens=6, cache_key="doc"))
    assert seen.count(full_canvas) == 1  # the second probe ran the hole slots alone
    assert again is not None and first is not None and again.text == first.text  # same context: same keys
    engine.complete(InfillRequest("x = 1", suffix, max_tokens=6, cache_key="doc"))  # a keystroke
    assert seen.count(full_canvas) == 1
    engine.complete(InfillRequest("x = 1", "\nother()\n", max_tokens=6, cache_key="doc"))  # another suffix
    assert seen.count(6 + len(engine.suffix_ids("\nother()\n"))) == 1


def test_an_unprobed_fill_keeps_its_first_pass_suffix_head_for_the_next_fill(tiny_model_dir: Path, monkeypatch) -> None:
    from dataclasses import replace

    from engine import InfillRequest

    engine = Engine.load(tiny_model_dir, device="cpu")
    engine.defaults = replace(engine.defaults, suffix_refresh_steps=0, suffix_head_across_fills=True)
    model = engine.backend.model
    seen: list[int] = []
    embed = model.embed.forward
    monkeypatch.setattr(model.embed, "forward", lambda ids: seen.append(ids.shape[1]) or embed(ids))
    suffix = "\nprint(x)\n"
    full_canvas = 12 + len(engine.suffix_ids(suffix))

    first = engine.complete(InfillRequest("x = ", suffix, max_tokens=12, cache_key="doc", fit_length=False))
    assert seen.count(full_canvas) == 1  # the first fill's first pass runs the suffix head
    again = engine.complete(InfillRequest("x = ", suffix, max_tokens=12, cache_key="doc", fit_length=False))
    assert seen.count(full_canvas) == 1, "the second fill ran its hole slots alone"
    assert again is not None and first is not None and again.text == first.text
    engine.complete(InfillRequest("x = ", suffix, max_tokens=10, cache_key="doc", fit_length=False))
    assert seen.count(10 + len(engine.suffix_ids(suffix))) == 1, "another hole size: the head runs again"


def test_logits_of_chosen_rows_equal_those_rows_of_the_full_pass(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    canvas = canvas_of(engine, engine.tokenizer.encode("a +") + [mask] * 4)
    hole = canvas.shape[1] - canvas_of(engine, []).shape[1]
    rows = torch.tensor([hole - 3, hole - 1])
    torch.testing.assert_close(model.denoise(cache, canvas, hole, rows=rows), model.denoise(cache, canvas, hole)[:, rows])


def test_kept_hole_keys_run_only_changed_and_wanted_slots(model_and_cache, monkeypatch) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    seen: list[int] = []
    embed = model.embed.forward
    monkeypatch.setattr(model.embed, "forward", lambda ids: seen.append(ids.shape[1]) or embed(ids))
    tail, hole_kv = TailKV(model.rotary), HoleKV()
    model.denoise(cache, canvas_of(engine, [mask] * 6), 6, tail, hole_kv=hole_kv)  # full pass, fills both
    assert hole_kv.filled
    word = engine.tokenizer.encode("a")[0]
    committed = canvas_of(engine, [word, word] + [mask] * 4)  # slots 0 and 1 committed this step
    model.denoise(cache, committed, 6, tail, rows=torch.tensor([3, 4, 5]), hole_kv=hole_kv)
    model.denoise(cache, committed, 6, tail, rows=torch.tensor([3, 4, 5]), hole_kv=hole_kv)
    full = canvas_of(engine, [mask] * 6).shape[1]
    # slots 0 and 1 ran once more with their tokens, then their kept keys stood in for them
    assert seen == [full, 5, 3]


def test_kept_hole_keys_give_the_exact_logits_while_the_hole_is_unchanged(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    canvas = canvas_of(engine, engine.tokenizer.encode("a +") + [mask] * 4)
    hole = canvas.shape[1] - canvas_of(engine, []).shape[1]
    tail, hole_kv = TailKV(model.rotary), HoleKV()
    exact = model.denoise(cache, canvas, hole)
    model.denoise(cache, canvas, hole, tail, hole_kv=hole_kv)
    rows = torch.tensor([hole - 1])
    torch.testing.assert_close(model.denoise(cache, canvas, hole, tail, rows, hole_kv), exact[:, rows],
                               **same_pass(model))


def test_kept_hole_keys_lag_and_clear_brings_back_the_hole_pass(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    mask = engine.tokenizer.special.mask
    tail, hole_kv = TailKV(model.rotary), HoleKV()
    model.denoise(cache, canvas_of(engine, [mask] * 6), 6, tail, hole_kv=hole_kv)
    word = engine.tokenizer.encode("a")[0]
    committed = canvas_of(engine, [word] + [mask] * 5)
    rows = torch.tensor([4, 5])
    model.denoise(cache, committed, 6, tail, rows, hole_kv)  # slot 0 runs once more with its token
    changed = canvas_of(engine, [word, word] + [mask] * 4)
    lagging = model.denoise(cache, changed, 6, tail, rows, hole_kv)  # slots 2, 3 keep keys from a hole of masks
    hole_pass = model.denoise(cache, changed, 6, tail, rows)  # every hole slot runs (the suffix still kept)
    assert not torch.allclose(lagging, hole_pass, atol=1e-4)
    hole_kv.clear()
    torch.testing.assert_close(model.denoise(cache, changed, 6, tail, rows, hole_kv), hole_pass)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("generation", [{"masked_rows_only": True}, {"hole_refresh_steps": 0}])
def test_a_backend_without_row_selection_fills_as_one_with_it(
    tiny_model_dir: Path, monkeypatch, generation, dtype: str
) -> None:
    from dataclasses import replace

    from engine import InfillRequest
    from engine.backends.native import NativeBackend

    engine = Engine.load(tiny_model_dir, device="cpu", dtype=dtype)
    engine.defaults = replace(engine.defaults, suffix_refresh_steps=0, fit_length=False, **generation)
    request = InfillRequest("x = ", "\nprint(x)\n", max_tokens=8, steps=4)
    selecting = engine.complete(request)
    monkeypatch.delattr(NativeBackend, "new_hole_cache")  # as DiffusionGemma's backend: every slot, sliced
    sliced = engine.complete(request)
    assert selecting is not None and sliced is not None
    if generation.get("hole_refresh_steps") is None:  # masked rows only: exact, the same text
        assert selecting.text == sliced.text
    assert sliced.done and sliced.step == 4


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_masked_rows_only_fills_the_same_text_and_runs_fewer_rows(tiny_model_dir: Path, monkeypatch, dtype: str) -> None:
    from dataclasses import replace

    from engine import InfillRequest

    engine = Engine.load(tiny_model_dir, device="cpu", dtype=dtype)
    model = engine.backend.model
    heads: list[int] = []
    logits = model.logits
    monkeypatch.setattr(model, "logits", lambda hidden: heads.append(hidden.shape[1]) or logits(hidden))
    request = InfillRequest("x = ", "\nprint(x)\n", max_tokens=8, steps=4, alternatives=2)
    texts = {}
    for rows_only in (False, True):
        engine.defaults = replace(engine.defaults, fit_length=False, masked_rows_only=rows_only)
        heads.clear()
        final = engine.complete(request)
        assert final is not None
        texts[rows_only] = final.texts[0]
        rows_seen = list(heads)
    assert texts[True] == texts[False]  # row 0 (greedy) is the same fill
    assert rows_seen[0] == 8 and rows_seen[-1] < 8 and sorted(rows_seen, reverse=True) == rows_seen


def test_continuation_logprobs_equal_a_causal_pass_over_the_whole_text(model_and_cache) -> None:
    model, cache, engine = model_and_cache
    prefix = engine.prefix_ids("def add(a, b):\n    return ")
    rows = [engine.tokenizer.encode("a + b\n"), engine.tokenizer.encode("a\n")]
    width = max(len(row) for row in rows)
    ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])  # right-padded
    length = cache.length
    scored = engine.backend.continuation_logprobs(cache, prefix[-1], ids)  # (2, T)
    assert cache.length == length, "scoring leaves the prefix cache as it was"
    for index, row in enumerate(rows):
        whole = engine.backend.new_cache()
        hidden = model.extend(whole, torch.tensor(prefix + row), 0)  # (1, P + T, D)
        with torch.no_grad():
            logprobs = torch.log_softmax(model.logits(hidden[0]).float(), dim=-1)
        expected = torch.stack([logprobs[len(prefix) - 1 + t, token] for t, token in enumerate(row)])
        torch.testing.assert_close(scored[index, : len(row)], expected, **same_pass(model))
