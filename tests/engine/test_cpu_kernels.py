"""The CPU kernels of the native network (engine/backends/cpu_kernels.py): the same logits within bf16 noise,
the same parameters, and the caller's thread count for the products only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import Engine
from engine.backends.cpu_kernels import packing_works
from engine.backends.cpu_threads import (
    all_threads,
    cheaper_on_one_thread,
    one_thread,
    one_thread_between_products,
)
from engine.native import NativeModel


def eager_copy(model: NativeModel) -> NativeModel:
    """The same weights without the swapped-in kernels."""
    eager = NativeModel(model.cfg)
    eager.load_state_dict(model.state_dict())
    return eager.matmuls_in(model.embed.weight.dtype).eval()


def canvas_pass(engine: Engine, model: NativeModel) -> torch.Tensor:
    """A full pass of `model` over a half-masked hole after a short prefix -> logits (1, hole, V)."""
    cache = engine.backend.new_cache()
    model.extend(cache, torch.tensor(engine.prefix_ids("def add(a, b):\n    return ")), 0)
    mask = engine.tokenizer.special.mask
    hole = engine.tokenizer.encode("a +") + [mask] * 4
    canvas = torch.tensor([hole + engine.tokenizer.encode("\n\nprint(add(1, 2))\n")])  # (1, C)
    return model.denoise(cache, canvas, len(hole)).float()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_the_kernels_give_the_eager_logits_within_bf16_noise(tiny_model_dir: Path, dtype: str) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu", dtype=dtype)
    model = engine.backend.model
    fast, eager = canvas_pass(engine, model), canvas_pass(engine, eager_copy(model))
    # bf16: the SwiGLU's fused SiLU and product skip one bf16 rounding; float16: float32 F.linear on the
    # weights float16 rounds; float32 products are F.linear's own
    tolerance = {"float32": {"rtol": 0, "atol": 0}, "bfloat16": {"rtol": 1.6e-2, "atol": 1e-3},
                 "float16": {"rtol": 2e-3, "atol": 2e-4}}[dtype]
    torch.testing.assert_close(fast, eager, **tolerance)
    if dtype == "float16":
        assert not torch.equal(fast, eager)  # the float16 kernel ran


def test_the_kernels_leave_parameters_and_state_dict_as_they_were(tiny_model_dir: Path) -> None:
    model = Engine.load(tiny_model_dir, device="cpu", dtype="bfloat16").backend.model
    eager = eager_copy(model)
    assert model.state_dict().keys() == eager.state_dict().keys()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in eager.parameters())


def test_only_bf16_weights_are_packed() -> None:
    assert not packing_works(torch.float32)


def test_products_get_the_callers_threads_and_the_rest_one() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        count = all_threads(torch.get_num_threads)
        with one_thread_between_products():
            inside = torch.get_num_threads()
            in_product = count()
            assert torch.get_num_threads() == 1  # back to one after the product
        assert (inside, in_product, torch.get_num_threads(), count()) == (1, 2, 2, 2)
    finally:
        torch.set_num_threads(before)


def test_one_thread_keeps_products_there_too_and_restores_the_count_and_the_split() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        count = all_threads(torch.get_num_threads)
        with one_thread():
            assert (torch.get_num_threads(), count()) == (1, 1)
        with one_thread_between_products():
            with one_thread():  # nested in the split: wholly on one thread, then the split as it was
                assert count() == 1
            assert count() == 2
        assert (torch.get_num_threads(), count()) == (2, 2)
    finally:
        torch.set_num_threads(before)


def test_the_backend_times_its_passes_at_load_and_either_choice_gives_the_same_logits(tiny_model_dir: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        engine = Engine.load(tiny_model_dir, device="cpu", dtype="float32")  # warm_up times both
        backend = engine.backend
        assert isinstance(backend.passes_on_one_thread, bool) and torch.get_num_threads() == 2
        logits = {}
        for flag in (False, True):
            backend.passes_on_one_thread = flag
            cache = backend.new_cache()
            backend.extend(cache, torch.tensor(engine.prefix_ids("def add(a, b):\n    return ")), 0)
            canvas = torch.tensor([[engine.tokenizer.special.mask] * 4 + engine.tokenizer.encode("\n")])
            logits[flag] = backend.denoise(cache, canvas, 4)
            assert torch.get_num_threads() == 2
        torch.testing.assert_close(logits[True], logits[False], rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_a_pass_is_timed_on_one_thread_and_on_the_callers_then_the_count_restored() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []
        choice = cheaper_on_one_thread(lambda: seen.append(torch.get_num_threads()), repeats=3)
        assert isinstance(choice, bool)
        assert sorted(set(seen)) == [1, 2] and seen.count(1) == seen.count(2) == 4  # an untimed round each
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert cheaper_on_one_thread(lambda: seen.append(-1)) and seen[-1] != -1  # one thread: nothing to time
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prefix_length", [0, 7])
def test_attention_after_a_shared_prefix_equals_each_row_attending_its_copy(dtype: torch.dtype,
                                                                            prefix_length: int) -> None:
    from engine.backends.cpu_kernels import attend_after_shared_prefix, shared_prefix_attention_works
    from engine.native import Attention, NativeConfig

    assert shared_prefix_attention_works()
    generic = Attention(NativeConfig(dim=32, n_heads=2)).attend_after_prefix  # the per-row copies
    torch.manual_seed(0)
    q = torch.randn(3, 2, 4, 16).to(dtype)  # (B, H, T, E): three rows
    prefix_keys, prefix_values = torch.randn(2, 1, 2, prefix_length, 16).to(dtype)
    keys, values = torch.randn(2, 3, 2, 5, 16).to(dtype)  # each row's own
    alive = torch.tensor([[1, 1, 0, 0, 1], [1, 1, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)[:, None, None]
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-5}
    for mask in (None, alive):  # (B, 1, 1, C): dead slots per row, as fills at several sizes have
        got = attend_after_shared_prefix(q, prefix_keys, prefix_values, keys, values, mask)
        want = generic(q, prefix_keys, prefix_values, keys, values, mask)
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want.float(), **tolerance)


def test_the_cpu_backend_attends_a_shared_prefix_once(tiny_model_dir: Path) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu", dtype="float32")
    block = engine.backend.model.blocks[0]
    assert getattr(block.attn.attend_after_prefix, "all_threads", None) is not None, "swapped in, on all threads"
