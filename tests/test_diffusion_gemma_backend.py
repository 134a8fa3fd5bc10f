"""The diffusion_gemma backend against transformers' own DiffusionGemma, on a tiny random model (CPU)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from engine.backends import load_backend
from engine.backends.diffusion_gemma import COMPILE_ENV, DiffusionGemmaBackend, DiffusionGemmaKV, soft_cap_
from engine.testing import write_tiny_diffusion_gemma
from engine.types import ModelLoadError

WINDOW = 8  # the tiny model's sliding window: prefixes longer than this exercise the window mask


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_diffusion_gemma(tmp_path_factory.mktemp("tiny_dgem"))


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> DiffusionGemmaBackend:
    # float32 whatever this CPU would choose: the exact path, compared with transformers' float32 forward
    return DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.float32)  # CPU: fused


@pytest.fixture(scope="module")
def unfused(backend: DiffusionGemmaBackend) -> DiffusionGemmaBackend:
    """The same model through its unfused submodules (the path other devices take)."""
    return DiffusionGemmaBackend(backend.model, torch.device("cpu"), fuse=False)


@pytest.fixture(scope="module", params=[True, False], ids=["fused", "unfused"])
def deep(request: pytest.FixtureRequest) -> DiffusionGemmaBackend:
    """Three layers, full / sliding / full: the encoder runs causal attention in a full-attention layer too
    (in the two-layer model the full layer is the last one, whose keys and values alone are computed)."""
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion, DiffusionGemmaTextConfig

    from engine.testing import tiny_diffusion_gemma_config

    base = tiny_diffusion_gemma_config()
    text = DiffusionGemmaTextConfig(
        vocab_size=base.text_config.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        layer_types=["full_attention", "sliding_attention", "full_attention"],
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        global_head_dim=32,
        num_global_key_value_heads=1,
        sliding_window=WINDOW,
        max_position_embeddings=4096,
        num_experts=4,
        top_k_experts=2,
        moe_intermediate_size=16,
        initializer_range=0.1,
    )
    config = DiffusionGemmaConfig(
        text_config=text,
        vision_config=base.vision_config,
        canvas_length=32,
        boi_token_id=base.boi_token_id,
        eoi_token_id=base.eoi_token_id,
        image_token_id=base.image_token_id,
    )
    torch.manual_seed(3)
    model = DiffusionGemmaForBlockDiffusion(config).eval()
    return DiffusionGemmaBackend(model, torch.device("cpu"), fuse=request.param)


def tokens(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, 300, (count,), generator=generator)  # (count,), no special ids


def encoded(backend: DiffusionGemmaBackend, *pieces: torch.Tensor) -> DiffusionGemmaKV:
    cache = backend.new_cache()
    for piece in pieces:
        backend.extend(cache, piece, cache.length)
    return cache


def reference_logits(
    backend: DiffusionGemmaBackend,
    prefix: torch.Tensor,
    canvas: torch.Tensor,
    hole: int,
    self_condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """transformers' public forward over prefix + canvas (its own cache and masks), cut to the hole slots.

    Self-conditioning over the whole canvas: the given hole logits, then for each suffix slot a
    distribution certain of its own token (the backend's documented choice for clamped slots).
    """
    B, C = canvas.shape
    full = None
    if self_condition is not None:
        certain = torch.full((B, C - hole, backend.vocab_size), float("-inf"))  # (B, C - hole, V)
        certain.scatter_(-1, canvas[:, hole:, None], 0.0)
        full = torch.cat((self_condition, certain), dim=1)  # (B, C, V)
    with torch.no_grad():
        out = backend.model(
            input_ids=prefix[None].expand(B, -1),
            decoder_input_ids=canvas,
            self_conditioning_logits=full,
        )
    return out.logits[:, :hole]  # (B, hole, V), soft-capped by the model


@pytest.mark.parametrize("prefix_len", [5, 23])  # inside and beyond the sliding window
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_denoise_matches_transformers_forward(
    backend: DiffusionGemmaBackend,
    unfused: DiffusionGemmaBackend,
    prefix_len: int,
    batch: int,
    conditioned: bool,
    fused: bool,
) -> None:
    backend = backend if fused else unfused
    prefix = tokens(prefix_len, seed=1)
    canvas = torch.stack([tokens(12, seed=10 + row) for row in range(batch)])  # (B, 12)
    hole = 5
    self_condition = torch.randn(batch, hole, backend.vocab_size) * 3 if conditioned else None
    cache = encoded(backend, prefix)
    ours = backend.denoise(cache, canvas, hole, self_condition)
    theirs = reference_logits(backend, prefix, canvas, hole, self_condition)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_soft_capping_through_a_sigmoid_equals_tanh() -> None:
    logits = torch.linspace(-300, 300, 60001)  # zero, the linear part, and both saturated ends
    exact = torch.tanh(logits.double() / 30) * 30
    ours = soft_cap_(logits.clone(), 30.0)
    assert (ours.double() - exact).abs().max() < 1e-5  # measured: 7e-6 (tanh in float32: 2.4e-6)
    assert ours.abs().max() <= 30


@pytest.fixture(scope="module")
def compiled(backend: DiffusionGemmaBackend) -> DiffusionGemmaBackend:
    """The same model with its canvas pass under torch.compile (fused projections, as on the CPU)."""
    return DiffusionGemmaBackend(backend.model, torch.device("cpu"), compiled=True)


def test_compiled_canvas_pass_matches_transformers_forward(compiled: DiffusionGemmaBackend) -> None:
    """One compiled backend through new shapes (prefix inside and beyond the window, batch, first step or
    conditioned): each recompiles or reuses a graph, and every result is still transformers' forward."""
    for prefix_len, batch, conditioned in [(23, 1, False), (23, 1, True), (5, 3, True)]:
        prefix = tokens(prefix_len, seed=40 + prefix_len)
        canvas = torch.stack([tokens(12, seed=50 + row) for row in range(batch)])  # (B, 12)
        self_condition = torch.randn(batch, 5, compiled.vocab_size) * 3 if conditioned else None
        ours = compiled.denoise(encoded(compiled, prefix), canvas, 5, self_condition)
        theirs = reference_logits(compiled, prefix, canvas, 5, self_condition)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_passes_are_compiled_by_default_on_a_cpu_and_the_switch_says_otherwise(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = torch.device("cpu")
    for value, expected in [(None, True), ("auto", True), ("on", True), ("off", False)]:
        if value is None:
            monkeypatch.delenv(COMPILE_ENV, raising=False)
        else:
            monkeypatch.setenv(COMPILE_ENV, value)
        assert DiffusionGemmaBackend.load(str(model_dir), cpu, torch.float32).compiled is expected
    assert DiffusionGemmaBackend.load(str(model_dir), cpu, torch.float32, compiled=False).compiled is False
    monkeypatch.setenv(COMPILE_ENV, "sometimes")
    with pytest.raises(ModelLoadError, match=COMPILE_ENV):
        DiffusionGemmaBackend.load(str(model_dir), cpu, torch.float32)


def test_after_warm_up_no_fill_compiles_and_every_result_is_transformers_forward(model_dir: Path) -> None:
    """Prefix lengths, canvases, holes and keystrokes the warm-up never saw reuse its graphs."""
    warmed = DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.float32, compiled=True)
    warmed.warm_up()
    compiled_frames = torch._dynamo.utils.counters["frames"]["ok"]
    prefix = tokens(40, seed=60)
    cache = warmed.new_cache()
    for size in (30, 1, 2, 1):  # a new document, then keystrokes
        warmed.extend(cache, prefix[cache.length : cache.length + size], cache.length)
        for length, hole in [(12, 5), (21, 13)]:
            canvas = tokens(length, seed=61 + length)[None]
            first = warmed.denoise(cache, canvas, hole)
            signal = first * 0.5  # what the sampler feeds back: a normal tensor, not an inference one
            conditioned = warmed.denoise(cache, canvas, hole, signal)
            seen = prefix[: cache.length]
            torch.testing.assert_close(first, reference_logits(warmed, seen, canvas, hole), rtol=1e-4, atol=1e-5)
            theirs = reference_logits(warmed, seen, canvas, hole, signal)
            torch.testing.assert_close(conditioned, theirs, rtol=1e-4, atol=1e-5)
    assert torch._dynamo.utils.counters["frames"]["ok"] == compiled_frames


def test_a_warm_up_for_whole_canvases_serves_new_prefixes_and_whole_canvases_without_a_compile(
    model_dir: Path,
) -> None:
    """The bench's warm-up (`editor_shapes=False`): what generate() fills (a new prefix, the whole canvas as
    the hole, first step and self-conditioned) reuses its graphs."""
    warmed = DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.float32, compiled=True)
    warmed.warm_up(editor_shapes=False)
    compiled_frames = torch._dynamo.utils.counters["frames"]["ok"]
    for prefix_len in (33, 47):  # new documents of lengths the warm-up never saw
        prefix = tokens(prefix_len, seed=70 + prefix_len)
        cache = encoded(warmed, prefix)
        canvas = tokens(warmed.canvas_length, seed=71)[None]
        first = warmed.denoise(cache, canvas, warmed.canvas_length)
        conditioned = warmed.denoise(cache, canvas, warmed.canvas_length, first * 0.5)
        theirs = reference_logits(warmed, prefix, canvas, warmed.canvas_length, first * 0.5)
        torch.testing.assert_close(conditioned, theirs, rtol=1e-4, atol=1e-5)
    assert torch._dynamo.utils.counters["frames"]["ok"] == compiled_frames


@pytest.mark.parametrize("pieces", [(23,), (5, 17, 1)])
def test_compiled_prefix_pass_matches_transformers_forward(
    compiled: DiffusionGemmaBackend, pieces: tuple[int, ...]
) -> None:
    """The compiled prefix pass (dynamic length: a new document, an edit, a keystroke of one token), with
    dense experts on every row, against transformers' forward over the whole prefix."""
    prefix = tokens(sum(pieces), seed=45)
    cache = compiled.new_cache()
    for size in pieces:
        compiled.extend(cache, prefix[cache.length : cache.length + size], cache.length)
    canvas = tokens(12, seed=46)[None]
    ours = compiled.denoise(cache, canvas, 5)
    torch.testing.assert_close(ours, reference_logits(compiled, prefix, canvas, 5), rtol=1e-4, atol=1e-5)


# a new document, edits, keystrokes
@pytest.mark.parametrize("pieces", [(23,), (5, 18), (14, 1, 8), (1, 1, 21)])
def test_deeper_model_matches_transformers_forward(
    deep: DiffusionGemmaBackend, pieces: tuple[int, ...]
) -> None:
    """Prefixes encoded whole or in pieces (causal attention at an offset, in full and sliding layers)."""
    prefix = tokens(sum(pieces), seed=13)
    cache = deep.new_cache()
    for size in pieces:
        deep.extend(cache, prefix[cache.length : cache.length + size], cache.length)
    canvas = torch.stack([tokens(12, seed=30), tokens(12, seed=31)])  # (2, 12)
    self_condition = torch.randn(2, 5, deep.vocab_size) * 3
    for given in (None, self_condition):
        ours = deep.denoise(cache, canvas, 5, given)
        torch.testing.assert_close(
            ours, reference_logits(deep, prefix, canvas, 5, given), rtol=1e-4, atol=1e-5
        )


def test_fused_and_unfused_caches_agree(
    backend: DiffusionGemmaBackend, unfused: DiffusionGemmaBackend
) -> None:
    prefix = tokens(23, seed=14)
    for ours, theirs in zip(
        encoded(backend, prefix).kv.layers, encoded(unfused, prefix).kv.layers, strict=True
    ):
        torch.testing.assert_close(ours.keys, theirs.keys)
        torch.testing.assert_close(ours.values, theirs.values)


def test_extend_in_two_pieces_equals_one_piece(backend: DiffusionGemmaBackend) -> None:
    prefix = tokens(21, seed=2)
    whole = encoded(backend, prefix)
    pieces = encoded(backend, prefix[:13], prefix[13:])
    assert whole.length == pieces.length == 21
    for a, b in zip(whole.kv.layers, pieces.kv.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys)
        torch.testing.assert_close(a.values, b.values)
    canvas = tokens(10, seed=3)[None]
    torch.testing.assert_close(backend.denoise(whole, canvas, 4), backend.denoise(pieces, canvas, 4))


@pytest.mark.parametrize("keep", [0, 4, 15])  # empty, inside the window, beyond the window
def test_truncate_then_extend_equals_fresh_cache(backend: DiffusionGemmaBackend, keep: int) -> None:
    old, new = tokens(24, seed=4), tokens(9, seed=5)
    edited = encoded(backend, old)
    edited.truncate(keep)
    assert edited.length == keep
    backend.extend(edited, new, keep)
    fresh = encoded(backend, torch.cat((old[:keep], new)))
    assert edited.length == fresh.length == keep + 9
    canvas = tokens(10, seed=6)[None]
    torch.testing.assert_close(backend.denoise(edited, canvas, 6), backend.denoise(fresh, canvas, 6))


def test_batched_denoise_follows_cache_edits(backend: DiffusionGemmaBackend) -> None:
    """The batched copy of the prefix made for B > 1 is rebuilt after extend and truncate."""
    canvas = torch.stack([tokens(10, seed=20), tokens(10, seed=21)])  # (2, 10)
    prefix = tokens(18, seed=7)
    cache = encoded(backend, prefix[:10])
    backend.denoise(cache, canvas, 4)
    backend.extend(cache, prefix[10:], 10)
    torch.testing.assert_close(
        backend.denoise(cache, canvas, 4), reference_logits(backend, prefix, canvas, 4)
    )
    cache.truncate(6)
    backend.extend(cache, prefix[6:9], 6)
    torch.testing.assert_close(
        backend.denoise(cache, canvas, 4), reference_logits(backend, prefix[:9], canvas, 4)
    )


def test_self_condition_changes_the_logits(backend: DiffusionGemmaBackend) -> None:
    cache = encoded(backend, tokens(12, seed=8))
    canvas = tokens(10, seed=9)[None]
    first = backend.denoise(cache, canvas, 4)
    sharp = backend.denoise(cache, canvas, 4, first * 10)
    other = backend.denoise(cache, canvas, 4, torch.randn_like(first) * 10)
    assert (first - sharp).abs().max() > 1e-3
    assert (sharp - other).abs().max() > 1e-3


def test_lm_head_runs_on_hole_slots_only(backend: DiffusionGemmaBackend) -> None:
    seen: list[torch.Size] = []
    hook = backend.model.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    try:
        logits = backend.denoise(encoded(backend, tokens(7, seed=11)), torch.randint(3, 300, (2, 20)), 3)
    finally:
        hook.remove()
    assert logits.shape == (2, 3, backend.vocab_size)
    assert seen == [torch.Size([2, 3, backend.model.config.text_config.hidden_size])]


def test_denoise_with_an_empty_prefix(backend: DiffusionGemmaBackend) -> None:
    canvas = tokens(10, seed=12)[None]
    single = backend.denoise(backend.new_cache(), canvas, 4)
    batched = backend.denoise(backend.new_cache(), canvas.expand(2, -1), 4)
    assert single.shape == (1, 4, backend.vocab_size) and torch.isfinite(single).all()
    torch.testing.assert_close(batched, single.expand(2, -1, -1))


def test_checkpoint_defaults_reach_the_sampler(backend: DiffusionGemmaBackend) -> None:
    special = backend.special_tokens()
    assert (special.pad, special.eos, special.bos, special.mask) == (0, 1, 2, None)
    defaults = backend.generation_defaults()
    assert defaults == {
        "max_steps": 16,  # written by write_tiny_diffusion_gemma; transformers' default is 48
        "entropy_bound": 0.1,
        "t_min": 0.4,
        "t_max": 0.8,
        "stability_threshold": 1,
        "confidence_threshold": 0.005,
        "canvas_length": 32,
    }
    assert backend.noise == "uniform"


def test_tiny_model_directory_is_a_diffusion_gemma_checkpoint(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "diffusion_gemma"
    assert config["text_config"]["num_experts"] == 4
    assert (model_dir / "model.safetensors").is_file()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert tokenizer.get_vocab_size() <= config["text_config"]["vocab_size"]
    assert [tokenizer.token_to_id(name) for name in ("<pad>", "<eos>", "<bos>")] == [0, 1, 2]
    text = "def f(x):\n    return x\n"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_load_backend_picks_diffusion_gemma(model_dir: Path) -> None:
    backend = load_backend(str(model_dir), torch.device("cpu"), "diffusion_gemma")
    assert isinstance(backend, DiffusionGemmaBackend)


def test_missing_model_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelLoadError, match=str(missing)) as error:
        DiffusionGemmaBackend.load(str(missing), torch.device("cpu"))
    assert "\n" not in str(error.value)


def test_uncached_hub_id_offline_is_a_one_line_model_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to find, nothing fetched
    with pytest.raises(ModelLoadError, match="dgem-infill-tests/no-such-model") as error:
        DiffusionGemmaBackend.load("dgem-infill-tests/no-such-model", torch.device("cpu"))
    assert "\n" not in str(error.value)


# ---- the whole engine on the diffusion_gemma backend: uniform noise, streaming, cache, cancel ----------


@pytest.fixture(scope="module")
def gemma_engine(model_dir: Path):
    from engine import Engine

    return Engine.load(model_dir, device="cpu")


def test_engine_streams_uniform_noise_steps_until_done(gemma_engine) -> None:
    from engine import InfillRequest

    assert gemma_engine.info.noise == "uniform"
    steps = list(
        gemma_engine.infill(InfillRequest("def f(x):\n    return ", "\n\nprint(f(1))\n", max_tokens=8))
    )
    assert steps and steps[-1].done and not any(r.done for r in steps[:-1])
    assert [r.step for r in steps] == list(range(1, len(steps) + 1))
    assert len(steps) <= gemma_engine.defaults.max_steps


def test_engine_reuses_the_gemma_prefix_cache_on_an_edit(gemma_engine) -> None:
    from engine import InfillRequest

    prefix = "import os\n\ndef read(path):\n    with open(path) as f:\n        return "
    gemma_engine.complete(InfillRequest(prefix, "\n", max_tokens=4, cache_key="doc", steps=2))
    before = gemma_engine.stats.tokens_encoded
    gemma_engine.complete(InfillRequest(prefix + "f", "\n", max_tokens=4, cache_key="doc", steps=2))
    assert gemma_engine.stats.tokens_encoded - before <= 2


def test_engine_cancel_stops_the_gemma_loop_between_steps(gemma_engine) -> None:
    import threading

    from engine import InfillRequest

    cancel = threading.Event()
    seen = []
    for refinement in gemma_engine.infill(InfillRequest("x = ", "\n", max_tokens=8, steps=40), cancel):
        seen.append(refinement)
        cancel.set()
    assert len(seen) == 1 and not seen[0].done


def test_engine_never_changes_the_clamped_suffix(gemma_engine) -> None:
    from engine import InfillRequest

    suffix = "\n\nprint(total)\n"
    seen_canvases: list[torch.Tensor] = []
    original = gemma_engine.backend.denoise

    def spy(cache, canvas, hole, self_condition=None):
        seen_canvases.append(canvas[:, hole:].clone())
        return original(cache, canvas, hole, self_condition)

    gemma_engine.backend.denoise = spy
    try:
        gemma_engine.complete(InfillRequest("total = ", suffix, max_tokens=6, steps=4))
    finally:
        gemma_engine.backend.denoise = original
    expected = torch.tensor(gemma_engine.suffix_ids(suffix))
    assert seen_canvases and all(torch.equal(tail[0], expected) for tail in seen_canvases)


# ---- precision: the whole model in the timed (or named) dtype ---------------------------------------------


def test_auto_dtype_follows_the_timing_and_the_override_wins(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.backends import precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_reports_native_bf16", lambda: False)  # a CPU that asks the timing
    for timed in (torch.bfloat16, torch.float32):
        monkeypatch.setattr(precision, "cpu_matmul_dtype", lambda dim, ffn_dim, timed=timed: timed)
        monkeypatch.delenv(precision.DTYPE_ENV, raising=False)
        assert DiffusionGemmaBackend.load(str(model_dir), cpu).model.dtype == timed
        other = "float32" if timed == torch.bfloat16 else "bfloat16"
        monkeypatch.setenv(precision.DTYPE_ENV, other)
        assert DiffusionGemmaBackend.load(str(model_dir), cpu).model.dtype == precision.DTYPES[other]
        assert DiffusionGemmaBackend.load(str(model_dir), cpu, "auto").model.dtype == timed
    monkeypatch.setattr(precision, "cpu_reports_native_bf16", lambda: True)  # AVX512-BF16 or AMX: no timing
    monkeypatch.delenv(precision.DTYPE_ENV, raising=False)
    assert DiffusionGemmaBackend.load(str(model_dir), cpu).model.dtype == torch.bfloat16


def test_bf16_model_runs_whole_in_bf16_and_returns_float32_logits(model_dir: Path) -> None:
    backend = DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), "bfloat16")
    assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
    cache = encoded(backend, tokens(23, seed=60))
    assert cache.kv.layers[0].keys.dtype == torch.bfloat16
    assert backend.denoise(cache, tokens(12, seed=61)[None], 5).dtype == torch.float32


@pytest.mark.parametrize("conditioned", [False, True])
def test_bf16_logits_are_close_to_float32_ones_and_to_transformers_bf16(
    model_dir: Path, backend: DiffusionGemmaBackend, conditioned: bool
) -> None:
    bf16 = DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.bfloat16)
    prefix, canvas = tokens(23, seed=62), torch.stack([tokens(12, seed=63), tokens(12, seed=64)])  # (2, 12)
    self_condition = torch.randn(2, 5, backend.vocab_size) * 3 if conditioned else None
    exact = backend.denoise(encoded(backend, prefix), canvas, 5, self_condition)
    ours = bf16.denoise(encoded(bf16, prefix), canvas, 5, self_condition)
    # transformers, same bf16 model
    theirs = reference_logits(bf16, prefix, canvas, 5, self_condition).float()
    gap, gap_theirs = (ours - exact).abs().max(), (theirs - exact).abs().max()
    # measured: 0.011 against a logit spread of 0.11 (transformers' bf16 forward: 0.010), ours to theirs 0.004
    assert 0 < gap < 0.2 * exact.std()  # nonzero: bf16 really ran
    assert gap <= 1.5 * gap_theirs  # no further from float32 than transformers' own bf16 forward
    assert (ours - theirs).abs().max() < 0.5 * gap_theirs
    # 10 of 10 hole slots
    assert (ours.argmax(-1) == exact.argmax(-1)).float().mean() >= 0.8


def test_compiled_bf16_canvas_pass_is_as_close_to_float32_as_transformers_bf16(
    model_dir: Path, backend: DiffusionGemmaBackend
) -> None:
    """The bench times the compiled pass in the dtype chosen at load: bf16 on a CPU with fast bf16."""
    bf16 = DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.bfloat16)
    bf16.compiled = True
    prefix, canvas = tokens(23, seed=65), torch.stack([tokens(12, seed=66)])  # (1, 12)
    self_condition = torch.randn(1, 5, backend.vocab_size) * 3
    exact = backend.denoise(encoded(backend, prefix), canvas, 5, self_condition)
    ours = bf16.denoise(encoded(bf16, prefix), canvas, 5, self_condition)
    theirs = reference_logits(bf16, prefix, canvas, 5, self_condition).float()
    gap, gap_theirs = (ours - exact).abs().max(), (theirs - exact).abs().max()
    assert 0 < gap <= 1.5 * gap_theirs  # measured: 0.014 against transformers' 0.019


def test_cpu_passes_run_one_thread_between_products_with_the_same_logits(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU the products get the caller's threads and the rest one (engine/backends/cpu_threads.py):
    the same bf16 logits as the backend without it, the same parameters, and the thread count restored."""
    split = DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.bfloat16)
    with monkeypatch.context() as patch:  # a second copy of the model, without the split
        patch.setattr(DiffusionGemmaBackend, "_products_on_all_threads", lambda self: None)
        plain = DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.bfloat16)
    plain._between_products = nullcontext  # type: ignore[method-assign]
    linears = [m for m in split.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(hasattr(m.forward, "all_threads") for m in linears)
    assert not any(hasattr(m.forward, "all_threads") for m in plain.model.modules())
    assert split.model.state_dict().keys() == plain.model.state_dict().keys()
    seen: list[int] = []  # threads of a norm between the products
    split.decoder.norm.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    prefix, canvas = tokens(23, seed=67), torch.stack([tokens(12, seed=68), tokens(12, seed=69)])  # (2, 12)
    self_condition = torch.randn(2, 5, split.vocab_size) * 3
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours = split.denoise(encoded(split, prefix), canvas, 5, self_condition)
        assert torch.get_num_threads() == 2
        theirs = plain.denoise(encoded(plain, prefix), canvas, 5, self_condition)
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
    torch.testing.assert_close(ours, theirs, rtol=1.6e-2, atol=1e-3)  # bf16 noise (measured: identical)
