"""CUDA graphs of the DiffusionGemma canvas pass: the padded, masked inputs on any device; the graphs on a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.backends.cuda_graphs import GraphedCanvasPasses, ShapeBuffers
from engine.backends.diffusion_gemma import DiffusionGemmaBackend, DiffusionGemmaKV
from engine.testing import write_tiny_diffusion_gemma

WINDOW = 8  # the tiny model's sliding window
BUCKET = 16
on_a_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_diffusion_gemma(tmp_path_factory.mktemp("tiny_dgem"))


@pytest.fixture(scope="module")
def cpu_backend(model_dir: Path) -> DiffusionGemmaBackend:
    return DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.float32)


def tokens(count: int, seed: int) -> torch.Tensor:
    return torch.randint(3, 300, (count,), generator=torch.Generator().manual_seed(seed))


def encoded(backend: DiffusionGemmaBackend, ids: torch.Tensor) -> DiffusionGemmaKV:
    cache = backend.new_cache()
    backend.extend(cache, ids, 0)
    return cache


def padded_pass(
    backend: DiffusionGemmaBackend,
    buffers: ShapeBuffers | None,
    cache: DiffusionGemmaKV,
    canvas: torch.Tensor,
    hole: int,
    condition: torch.Tensor | None,
) -> tuple[torch.Tensor, ShapeBuffers]:
    """The canvas pass as a graph runs it: over buffers padded to BUCKET prefix tokens and their masks."""
    prefix, rotary = backend.canvas_inputs(cache, canvas.shape[1])
    if buffers is None:
        padded = tuple(GraphedCanvasPasses(backend._canvas_pass, backend.device, bucket=BUCKET).padded(k.shape[1])
                       for k, _ in prefix)
        buffers = ShapeBuffers(canvas, prefix, padded, rotary)
    buffers.load(canvas, condition, prefix, rotary, cache.version)
    conditioned = buffers.condition if condition is not None else None
    logits = backend._canvas_pass(buffers.canvas, hole, conditioned, buffers.prefix, buffers.rotary, buffers.masks)
    return logits, buffers


@pytest.mark.parametrize("conditioned", [False, True])
def test_padded_masked_prefix_buffers_give_the_plain_pass_through_edits(
    cpu_backend: DiffusionGemmaBackend, conditioned: bool
) -> None:
    """One shape's buffers serve a longer prefix (a keystroke), a shorter one (stale keys in the padding) and
    a new canvas; each time the logits are those of the unpadded pass. Sliding layers see their window."""
    backend = cpu_backend
    canvas = torch.stack([tokens(12, seed=10), tokens(12, seed=11)])  # (2, 12)
    hole = 5
    condition = torch.randn(2, hole, backend.vocab_size) * 3 if conditioned else None
    cache = encoded(backend, tokens(20, seed=1))  # beyond the window, inside one bucket (16 < 20 <= 32)
    logits, buffers = padded_pass(backend, None, cache, canvas, hole, condition)
    torch.testing.assert_close(logits, backend.denoise(cache, canvas, hole, condition))
    # the sliding layer's 7 keys in 16 slots, the full layer's 20 in 32
    assert sorted(keys.shape[1] for keys, _ in buffers.prefix) == [BUCKET, 2 * BUCKET]

    backend.extend(cache, tokens(3, seed=2), cache.length)  # a keystroke: 23 tokens, the same buckets
    logits, _ = padded_pass(backend, buffers, cache, canvas, hole, condition)
    torch.testing.assert_close(logits, backend.denoise(cache, canvas, hole, condition))

    cache.truncate(17)  # shorter, with other tokens after it: the padding holds stale keys
    backend.extend(cache, tokens(2, seed=3), cache.length)
    other = torch.stack([tokens(12, seed=12), tokens(12, seed=13)])
    logits, _ = padded_pass(backend, buffers, cache, other, hole, condition)
    torch.testing.assert_close(logits, backend.denoise(cache, other, hole, condition))


def test_a_cache_edit_gives_the_cache_a_new_version(cpu_backend: DiffusionGemmaBackend) -> None:
    cache = encoded(cpu_backend, tokens(6, seed=4))
    seen = {cache.version}
    cpu_backend.extend(cache, tokens(1, seed=5), cache.length)
    seen.add(cache.version)
    cache.truncate(4)
    seen.add(cache.version)
    cache.truncate(9)  # nothing to cut: the same keys, the same version
    seen.add(cache.version)
    assert len(seen) == 3 and cpu_backend.new_cache().version not in seen


def test_graphs_are_for_gpus_only(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not DiffusionGemmaBackend.load(str(model_dir), torch.device("cpu"), torch.float32).cuda_graphs
    if torch.cuda.is_available():
        monkeypatch.setenv("DGEM_INFILL_CUDA_GRAPHS", "off")
        assert not DiffusionGemmaBackend.load(str(model_dir), torch.device("cuda"), torch.float32).cuda_graphs


class EagerCapture(GraphedCanvasPasses):
    """The bookkeeping of GraphedCanvasPasses on a CPU: a "graph" whose replay runs the recorded pass again
    over the same buffers into the same output tensor, as a CUDA graph's replay does."""

    def _capture(self, run):  # type: ignore[no-untyped-def]
        class Replay:
            output = run()

            def replay(self) -> None:
                self.output.copy_(run())

        return Replay(), Replay.output


def test_graphs_are_recorded_at_a_shapes_second_fill_and_give_the_plain_pass(
    cpu_backend: DiffusionGemmaBackend,
) -> None:
    """The first fill of a shape runs eagerly, the second records both passes, a keystroke in the same bucket
    replays them with its new keys, a new bucket starts over; every step gives the plain pass's logits."""
    backend = cpu_backend
    passes = EagerCapture(backend._canvas_pass, backend.device, bucket=BUCKET, max_shapes=2)
    canvas = torch.stack([tokens(12, seed=10), tokens(12, seed=11)])  # (2, 12)
    hole = 5

    def fill(cache: DiffusionGemmaKV, steps: int = 3) -> None:
        condition = None
        for _ in range(steps):
            inputs = backend.canvas_inputs(cache, canvas.shape[1])
            logits = passes(canvas, hole, condition, *inputs, cache.version)
            torch.testing.assert_close(logits, backend.denoise(cache, canvas, hole, condition))
            condition = logits * 2  # a stand-in for the sampler's processed logits

    cache = encoded(backend, tokens(20, seed=1))
    fill(cache)
    assert passes.recorded == 0
    fill(cache)
    assert passes.recorded == 2
    backend.extend(cache, tokens(1, seed=2), cache.length)  # a keystroke: 21 keys, the same buckets
    fill(cache)
    assert passes.recorded == 2
    backend.extend(cache, tokens(20, seed=3), cache.length)  # 41 keys: the full layer's next bucket
    fill(cache)
    assert passes.recorded == 2  # the new shape's first fill
    fill(cache)
    assert passes.recorded == 4
    cache.truncate(18)  # back to the first shape, still kept (two shapes): replayed, stale keys masked
    fill(cache)
    assert passes.recorded == 4


# ---- on a GPU: the graphs themselves -------------------------------------------------------------------------


@on_a_gpu
def test_graphed_steps_match_eager_ones_and_a_keystroke_records_nothing(model_dir: Path) -> None:
    gpu = torch.device("cuda")
    graphed = DiffusionGemmaBackend.load(str(model_dir), gpu, torch.float32, compiled=False)
    eager = DiffusionGemmaBackend(graphed.model, gpu, compiled=False, cuda_graphs=False)
    assert graphed.cuda_graphs
    canvas = tokens(12, seed=10)[None]
    cache = encoded(graphed, tokens(20, seed=1))

    def fill(steps: int = 3) -> list[torch.Tensor]:
        """A fill's passes through the graphed backend, each checked against the eager one."""
        out, condition = [], None
        for _ in range(steps):
            logits = graphed.denoise(cache, canvas, 5, condition)
            torch.testing.assert_close(logits, eager.denoise(cache, canvas, 5, condition), rtol=1e-4, atol=1e-4)
            out.append(logits)
            condition = logits
        return out

    fill()
    assert graphed.graphs_recorded == 0  # a shape's first fill runs eagerly
    first, *_ = fill()
    assert graphed.graphs_recorded == 2
    kept = first.clone()
    fill()
    torch.testing.assert_close(first, kept)  # a replay writes the graph's buffer, not the caller's logits
    graphed.extend(cache, tokens(1, seed=2), cache.length)  # a keystroke: the same graphs, new keys copied
    fill()
    assert graphed.graphs_recorded == 2


@on_a_gpu
def test_a_graphed_engine_fills_like_an_eager_one(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import Engine, InfillRequest

    request = InfillRequest("def f(x):\n    return ", "\n\nprint(f(1))\n", max_tokens=8, seed=3)
    monkeypatch.setenv("DGEM_INFILL_DTYPE", "float32")  # bf16 roundings could tip a near tie either way
    graphed = Engine.load(model_dir, device="cuda")
    monkeypatch.setenv("DGEM_INFILL_CUDA_GRAPHS", "off")
    eager = Engine.load(model_dir, device="cuda")
    assert graphed.backend.cuda_graphs and not eager.backend.cuda_graphs
    ours, theirs = graphed.complete(request), eager.complete(request)
    assert ours is not None and theirs is not None and ours.done
    assert ours.texts == theirs.texts
