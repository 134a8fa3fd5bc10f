"""GPU benchmarks in one script: run from the repository root on a CUDA machine (no internet needed).

    python3 -m infill_server.bench.gpu --out DIR           the full run, under 9 minutes
    python3 -m infill_server.bench.gpu --out DIR --smoke   tiny shapes on CPU (tests the mechanics)

Parts, in order (each is skipped with a printed reason when the time budget or the machine says so):
1. peaks: the measured bf16 matmul throughput and device-copy bandwidth (the roofline's ceilings);
2. native: the engine with a network of the shipped shape (random bf16 weights), hole tokens/s for one
   request through `Engine.infill`, and for batches of 1-32 concurrent fills of the same length;
3. DiffusionGemma 26B-A4B: the published configuration with random bf16 weights, built on the meta device
   and materialised on the GPU, one tensor per distinct (tied) parameter (never in host memory); through the engine's diffusion_gemma backend:
   prefix encode per token, one 256-token denoising step, the implied tokens/s at 3-17 steps per canvas
   against the published 1,000 tokens/s, and a roofline (FLOPs and bytes per step over the peaks), for
   the MoE experts run eagerly, as grouped matmuls, with each decoder layer's feed-forward part
   (the backend's `after_attention`) under torch.compile, with the whole denoising step captured
   once as a CUDA graph and replayed (no per-kernel launch from Python), and through the engine's own
   CUDA graphs (engine/backends/cuda_graphs.py: the prefix padded and masked, a new canvas and
   self-conditioning copied in at every step, as a fill runs them); `--variants` picks some of them.
Writes DIR/gpu_results.json and DIR/bench-gpu-*.png, and prints a short table last.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

PUBLISHED_TOKENS_PER_S = 1000.0  # Google's figure for DiffusionGemma 26B-A4B on one H100
STEP_RANGE = (3, 5, 8, 12, 17)  # denoising steps per 256-token canvas (published range 3-17)

# google/diffusiongemma-26B-A4B-it text model (Gemma 4 26B-A4B): the published config.json numbers
GEMMA_26B_A4B_TEXT = {
    "vocab_size": 262144,
    "hidden_size": 2816,
    "intermediate_size": 2112,  # the dense MLP that runs beside the experts in every layer
    "num_hidden_layers": 30,
    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 5,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "global_head_dim": 512,
    "num_global_key_value_heads": 2,
    "sliding_window": 1024,
    "num_experts": 128,
    "top_k_experts": 8,
    "moe_intermediate_size": 704,
    "max_position_embeddings": 262144,
    "final_logit_softcapping": 30.0,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
TINY_TEXT = {  # --smoke: the same layout at toy sizes
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
    "layer_types": ["sliding_attention", "full_attention"], "num_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": 32, "global_head_dim": 64, "num_global_key_value_heads": 1, "sliding_window": 64,
    "num_experts": 8, "top_k_experts": 2, "moe_intermediate_size": 32, "max_position_embeddings": 4096,
    "final_logit_softcapping": 30.0,
}


class Clock:
    """A wall-clock budget for the whole script; parts ask before they start."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """p50/p90/min of `repeats` timed calls (each synchronised), after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    values = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync(device)
        values.append((time.perf_counter() - started) * 1000)
    values.sort()
    pick = lambda q: values[min(len(values) - 1, int(round(q * (len(values) - 1))))]  # noqa: E731
    return {"p50": round(pick(0.5), 3), "p90": round(pick(0.9), 3), "min": round(values[0], 3), "runs": repeats}


# ---- 1. peaks ----------------------------------------------------------------------------------------


def measure_peaks(device: torch.device, smoke: bool) -> dict:
    """Dense bf16 matmul FLOP/s and device-to-device copy bandwidth (read + write bytes)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = 256 if smoke else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    b = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    mm = time_ms(lambda: a @ b, device, 5 if smoke else 20, warmup=2)
    flops = 2 * n**3 / (mm["min"] / 1000)
    elements = (1 << 20) if smoke else (1 << 30)  # 2 GiB of bf16 on the GPU
    source = torch.empty(elements, device=device, dtype=dtype)
    target = torch.empty_like(source)
    copy = time_ms(lambda: target.copy_(source), device, 5 if smoke else 20, warmup=2)
    bandwidth = 2 * source.numel() * source.element_size() / (copy["min"] / 1000)
    return {"matmul_flops_s": flops, "copy_bytes_s": bandwidth, "matmul_tflops": round(flops / 1e12, 2),
            "matmul_shape": n, "copy_gb_s": round(bandwidth / 1e9, 1), "dtype": str(dtype).replace("torch.", "")}


# ---- 2. the native engine -------------------------------------------------------------------------------


def native_part(device: torch.device, smoke: bool, clock: Clock, work: Path) -> dict:
    from engine import Engine, InfillRequest
    from engine.native import NativeConfig
    from engine.sampler import denoise_hole
    from infill_server.bench.models import write_shaped_native_model

    cfg = NativeConfig(dim=64, n_layers=2, n_heads=2, ffn_dim=128) if smoke else NativeConfig()
    engine = Engine.load(write_shaped_native_model(work / "native", cfg), "cuda" if device.type == "cuda" else "cpu")
    backend = engine.backend
    code = (Path(__file__).resolve().parents[2] / "engine" / "engine.py").read_text() * 40
    ids = engine.tokenizer.encode(code)
    prefix_ids = ids[: engine.info.max_prefix_tokens - 1]
    prefix = engine.tokenizer.decode(prefix_ids)  # text whose prefix window is ~1K tokens
    suffix = code[-3000:]
    result: dict = {"parameters": engine.info.parameters, "dtype": str(backend.dtype).replace("torch.", ""),
                    "prefix_tokens": len(engine.prefix_ids(prefix)), "single_request": {}, "batched": []}
    repeats = 1 if smoke else 10
    batches = (1, 2) if smoke else (1, 2, 4, 8, 16, 32)

    # one request through the whole engine (tokenising, sampling, decoding every step), warm prefix cache
    for slots in (16, 64):
        request = InfillRequest(prefix, suffix, max_tokens=slots, cache_key="gpu-bench")
        timing = time_ms(lambda r=request: engine.complete(r), device, repeats, warmup=2)
        steps = engine.complete(request).step
        result["single_request"][str(slots)] = {"final_ms": timing, "steps": steps,
                                                "hole_tokens_per_s": round(slots / (timing["p50"] / 1000), 1)}
    cold = time_ms(lambda: engine.prefix_cache.sync(f"cold-{time.perf_counter()}", engine.prefix_ids(prefix)),
                   device, repeats)
    result["prefix_encode_ms"] = cold

    # B concurrent fills of the same document and length: one batched denoising loop over B rows
    cache = engine.prefix_cache.sync("gpu-bench", engine.prefix_ids(prefix))
    tail = torch.tensor(engine.suffix_ids(suffix), dtype=torch.long, device=backend.device)  # (suffix,)
    for slots in (16, 64):
        for batch in batches:
            if clock.left() < 300 and not smoke:  # keep time for the 26B part
                result["batched_note"] = "stopped early to keep time for part 3"
                break

            def fill(batch: int = batch, slots: int = slots) -> None:
                # B independent greedy fills (the rows of concurrent requests, not sampled alternatives)
                sampler = engine.make_sampler(slots, None, 0, independent_rows=True)
                denoiser = engine.canvas_denoiser(cache, tail, engine.new_tail(tail))
                for _ in denoise_hole(denoiser, sampler, sampler.start(batch, slots, backend.device)):
                    pass

            timing = time_ms(fill, device, repeats, warmup=1)
            result["batched"].append({"slots": slots, "batch": batch, "fill_ms": timing,
                                      "hole_tokens_per_s": round(batch * slots / (timing["p50"] / 1000), 1)})
    return result


# ---- 3. DiffusionGemma 26B-A4B -----------------------------------------------------------------------------


def diffusion_gemma_available() -> str | None:
    """None when transformers can build DiffusionGemma, else the reason it cannot."""
    try:
        import transformers
    except ImportError:
        return "transformers is not installed"
    if not hasattr(transformers, "DiffusionGemmaForBlockDiffusion"):
        return f"transformers {transformers.__version__} has no DiffusionGemmaForBlockDiffusion"
    return None


def build_diffusion_gemma(text: dict, device: torch.device, dtype: torch.dtype, canvas: int):
    """Random weights of the given shape, allocated straight on `device` (never in host memory).

    The encoder and decoder share one weight stack (25.4B unique parameters at full size). Built directly
    on the GPU, both stacks exist before they are tied (102 GB); `to_empty` unties them again. So: build on
    the meta device, where they are tied at no cost, then give each distinct parameter one GPU tensor."""
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion, Gemma4VisionConfig

    # the vision tower's default shape, named: older transformers (5.17) leave it None and cannot build
    config = DiffusionGemmaConfig(text_config=dict(text), vision_config=Gemma4VisionConfig(), canvas_length=canvas)
    config.text_config.initializer_range = 0.02
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = DiffusionGemmaForBlockDiffusion(config)
    finally:
        torch.set_default_dtype(previous)
    materialised: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, parameter in list(module._parameters.items()):
            if parameter is None:
                continue
            if id(parameter) not in materialised:
                empty = torch.empty_like(parameter, device=device)
                materialised[id(parameter)] = torch.nn.Parameter(empty, requires_grad=False)
            module._parameters[name] = materialised[id(parameter)]
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_meta:
                module._buffers[name] = torch.empty_like(buffer, device=device)
    with torch.no_grad():
        model.init_weights()  # fills every parameter and buffer (rotary tables, scales) on the device
        for parameter in model.parameters():
            if not torch.isfinite(parameter).all():  # anything init_weights left uninitialised
                parameter.normal_(0.0, 0.02)
    return model.to(dtype).eval()


def flops_and_bytes(model, text: dict, prefix: int, canvas: int, hole: int, self_conditioning: bool) -> dict:
    """Work of one denoising step over a canvas after `prefix` cached tokens (decoder only).

    FLOPs: 2 x tokens x active weights (experts at top_k/num_experts), attention scores and values, the LM
    head and the self-conditioning product on the hole slots. Bytes: every decoder weight that the step
    touches (with 256 tokens x top-8 routing nearly every expert is hit), the prefix keys/values read, and
    the float32 hole logits written.
    """
    decoder = model.model.decoder
    expert_params = sum(p.numel() for n, p in decoder.named_parameters() if ".experts." in n)
    embed_params = decoder.embed_tokens.weight.numel()
    other_params = sum(p.numel() for p in decoder.parameters()) - expert_params - embed_params
    experts, top_k = text["num_experts"], text["top_k_experts"]
    share = top_k / experts
    hit = 1 - (1 - share) ** canvas  # expected share of experts that at least one token routes to
    width = text["hidden_size"]
    vocab = text["vocab_size"]
    attention = 0
    kv_bytes = 0
    for kind in text["layer_types"]:
        full = kind == "full_attention"
        heads_dim = text["num_attention_heads"] * (text["global_head_dim"] if full else text["head_dim"])
        kv_dim = (text["num_global_key_value_heads"] if full else text["num_key_value_heads"]) * (
            text["global_head_dim"] if full else text["head_dim"])
        seen = prefix if full else min(prefix, text["sliding_window"] - 1)
        attention += 4 * canvas * (seen + canvas) * heads_dim
        kv_bytes += 2 * seen * kv_dim * 2  # keys and values, bf16
    head = 2 * hole * width * vocab * (2 if self_conditioning else 1)
    flops = 2 * canvas * (other_params + expert_params * share) + attention + head
    weight_bytes = 2 * (other_params + expert_params * hit + embed_params)
    total_bytes = weight_bytes + kv_bytes + 4 * hole * vocab * (2 if self_conditioning else 1)
    return {"flops": flops, "bytes": total_bytes, "weight_bytes": weight_bytes, "experts_hit_share": round(hit, 4),
            "decoder_parameters": expert_params + embed_params + other_params}


DIFFUSION_GEMMA_VARIANTS = [  # name, experts implementation, mode (see run_variant)
    ("eager experts", "eager", "eager"),
    ("grouped_mm experts", "grouped_mm", "eager"),
    ("grouped_mm + torch.compile", "grouped_mm", "compile"),
    ("grouped_mm + CUDA graph", "grouped_mm", "graph"),
    ("grouped_mm + torch.compile + CUDA graph", "grouped_mm", "compile+graph"),
    ("grouped_mm + the engine's CUDA graphs", "grouped_mm", "engine graphs"),
]


def diffusion_gemma_part(device: torch.device, smoke: bool, clock: Clock, peaks: dict,
                         names: list[str] | None = None) -> dict:
    """`names`: the variants to run (all when None)."""
    from engine.backends.diffusion_gemma import DiffusionGemmaBackend

    text = TINY_TEXT if smoke else GEMMA_26B_A4B_TEXT
    canvas = 32 if smoke else 256
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    started = time.perf_counter()
    model = build_diffusion_gemma(text, device, dtype, canvas)
    result: dict = {"config": "tiny (smoke)" if smoke else "google/diffusiongemma-26B-A4B-it (published numbers)",
                    "parameters": sum(p.numel() for p in model.parameters()), "canvas": canvas,
                    "build_s": round(time.perf_counter() - started, 1), "variants": {}}
    if device.type == "cuda":
        result["gpu_memory_gb"] = round(torch.cuda.memory_allocated(device) / 1e9, 1)
    backend = DiffusionGemmaBackend(model, device, cuda_graphs=False)  # eager: the variants choose their own
    prefix_tokens = 256 if smoke else 2048
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, text["vocab_size"] - 8, (prefix_tokens,), generator=generator)  # (P,)
    canvas_ids = torch.randint(3, text["vocab_size"] - 8, (1, canvas), generator=generator).to(device)  # (1, C)
    repeats = 1 if smoke else 5

    def encode() -> None:
        backend.extend(backend.new_cache(), ids, 0)

    cache = backend.new_cache()
    backend.extend(cache, ids, 0)
    previous = backend.denoise(cache, canvas_ids, canvas)  # (1, C, V) float32: self-conditioning input
    work = flops_and_bytes(model, text, prefix_tokens, canvas, canvas, self_conditioning=True)
    result["roofline"] = {
        "flops_per_step": work["flops"], "bytes_per_step": work["bytes"], "experts_hit_share": work["experts_hit_share"],
        "compute_bound_ms": round(work["flops"] / peaks["matmul_flops_s"] * 1000, 3),
        "memory_bound_ms": round(work["bytes"] / peaks["copy_bytes_s"] * 1000, 3),
    }
    floor_ms = max(result["roofline"]["compute_bound_ms"], result["roofline"]["memory_bound_ms"])
    result["roofline"]["floor_ms"] = floor_ms

    variants = [v for v in DIFFUSION_GEMMA_VARIANTS if names is None or v[0] in names]
    for name, experts, mode in variants:
        if "graph" in mode and device.type != "cuda":
            result["variants"][name] = {"skipped": "CUDA graphs need a CUDA device"}
            continue
        if clock.left() < (150 if mode.startswith("compile") else 60) and not smoke:
            result["variants"][name] = {"skipped": f"{clock.left():.0f}s left in the time budget"}
            continue
        try:
            result["variants"][name] = run_variant(model, backend, experts, mode, cache, canvas_ids, previous,
                                                   encode, prefix_tokens, canvas, device, repeats)
        except Exception as error:  # one variant failing (an old torch, a compile error) must not end the run
            result["variants"][name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
            traceback.print_exc(limit=3, file=sys.stderr)
    for row in result["variants"].values():
        if "step_ms" in row:
            row["roofline_share"] = round(floor_ms / row["step_ms"]["p50"], 3)
    return result


def run_variant(model, backend, experts: str, mode: str, cache, canvas_ids: torch.Tensor,
                previous: torch.Tensor, encode: Callable[[], None], prefix_tokens: int, canvas: int,
                device: torch.device, repeats: int) -> dict:
    """mode: "eager", "compile" (each layer's after_attention under torch.compile), "graph" (the whole
    step captured as one CUDA graph: same inputs every replay, so only launch overhead is saved),
    "compile+graph" (both: the compiled kernels captured), or "engine graphs" (a backend with the engine's
    CUDA graphs, as a fill runs it: the canvas and self-conditioning copied in and the logits copied out
    at every step, which "graph" does not pay)."""
    if hasattr(model, "set_experts_implementation"):
        model.set_experts_implementation(experts)
    elif experts != "eager":
        raise RuntimeError("this transformers has no set_experts_implementation")
    # the backend runs each decoder layer's submodules itself: compile its per-layer step after attention
    # (output projection, dense MLP, router, experts), the part that dominates a step
    layers = backend._decoder_layers
    originals = [layer.after_attention for layer in layers]

    eager_backend = backend
    if mode == "engine graphs":
        from engine.backends.diffusion_gemma import DiffusionGemmaBackend

        backend = DiffusionGemmaBackend(model, device, cuda_graphs=True)

    def step() -> torch.Tensor:
        return backend.denoise(cache, canvas_ids, canvas, previous)

    run: Callable[[], object] = step
    row: dict = {}
    started = time.perf_counter()
    if mode.startswith("compile"):
        for layer in layers:
            layer.after_attention = torch.compile(layer.after_attention, dynamic=False)
        step()  # compiles here
        sync(device)
        row["compile_s"] = round(time.perf_counter() - started, 1)
    if mode.endswith("graph"):
        started = time.perf_counter()
        expected = step().argmax(-1)
        run, output = capture_cuda_graph(step, device)
        run()
        sync(device)
        row["capture_s"] = round(time.perf_counter() - started, 1)
        row["same_argmax_as_eager"] = round((output.argmax(-1) == expected).float().mean().item(), 4)
    if mode == "engine graphs":
        started = time.perf_counter()
        expected = eager_backend.denoise(cache, canvas_ids, canvas, previous).argmax(-1)
        for _ in range(2):  # two fills' first steps: a shape's graphs are recorded at its second fill
            backend.denoise(cache, canvas_ids, canvas)
        output = step()  # records the self-conditioned pass and replays it
        sync(device)
        row["capture_s"] = round(time.perf_counter() - started, 1)
        row["same_argmax_as_eager"] = round((output.argmax(-1) == expected).float().mean().item(), 4)
        if backend.graphs_recorded != 2:
            raise RuntimeError("the engine's CUDA graphs did not record this step (see the log)")
    try:
        row["step_ms"] = time_ms(run, device, repeats, warmup=1)
        step_ms = row["step_ms"]
        enc = time_ms(encode, device, max(2, repeats // 2), warmup=1)  # the encoder is never compiled here
        row["prefix_encode_ms"] = enc
        row["prefix_encode_ms_per_token"] = round(enc["p50"] / prefix_tokens, 4)
        # a canvas of `canvas` tokens costs `steps` denoising steps, then one encode of the finished canvas
        canvas_encode_ms = row["prefix_encode_ms_per_token"] * canvas
        row["implied_tokens_per_s"] = {
            str(steps): round(canvas / ((steps * step_ms["p50"] + canvas_encode_ms) / 1000), 1) for steps in STEP_RANGE
        }
        return row
    finally:
        for layer, after_attention in zip(layers, originals, strict=True):
            layer.after_attention = after_attention


def capture_cuda_graph(step: Callable[[], torch.Tensor], device: torch.device) -> tuple[Callable[[], object], torch.Tensor]:
    """Record `step` once into a CUDA graph: its replay, and the tensor each replay writes its result to.
    The step must not synchronise with the host (no .item(), no data-dependent shapes); capture raises if
    it does, and the variant reports that."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires (allocator, lazy init)
        for _ in range(2):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = step()
    return graph.replay, output


# ---- report --------------------------------------------------------------------------------------------------


def write_plots(results: dict, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plots", file=sys.stderr)
        return
    device = results["device"]
    native = results.get("native", {})
    if native.get("batched"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for slots in sorted({row["slots"] for row in native["batched"]}):
            rows = [row for row in native["batched"] if row["slots"] == slots]
            ax.plot([r["batch"] for r in rows], [r["hole_tokens_per_s"] for r in rows], marker="o",
                    label=f"{slots}-slot fills")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent fills (batch)")
        ax.set_ylabel("hole tokens / s")
        ax.set_title(f"Native engine on {device}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "bench-gpu-native.png", dpi=110)
        plt.close(fig)
    dg = results.get("diffusion_gemma", {})
    measured = {name: row for name, row in dg.get("variants", {}).items() if "implied_tokens_per_s" in row}
    if measured:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, row in measured.items():
            points = row["implied_tokens_per_s"]
            ax.plot([int(s) for s in points], list(points.values()), marker="o", label=name)
        floor = dg["roofline"]["floor_ms"]
        steps = list(STEP_RANGE)
        ax.plot(steps, [dg["canvas"] / (s * floor / 1000) for s in steps], linestyle=":", color="black",
                label="roofline bound")
        ax.axhline(PUBLISHED_TOKENS_PER_S, color="grey", linestyle="--", label="published 1,000 tokens/s")
        ax.set_yscale("log")
        ax.set_xlabel("denoising steps per 256-token canvas")
        ax.set_ylabel("tokens / s (one request)")
        ax.set_title(f"DiffusionGemma 26B-A4B, random bf16 weights, {device}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "bench-gpu-diffusion-gemma.png", dpi=110)
        plt.close(fig)


def print_table(results: dict) -> None:
    print(f"\n== dgem-infill GPU bench: {results['device']}, torch {results['torch']}, "
          f"transformers {results.get('transformers', '-')} ==")
    peaks = results.get("peaks", {})
    if peaks:
        print(f"peaks: {peaks['dtype']} matmul {peaks['matmul_tflops']} TFLOP/s, device copy {peaks['copy_gb_s']} GB/s")
    native = results.get("native", {})
    for slots, row in native.get("single_request", {}).items():
        print(f"native, one request, {slots} slots: {row['final_ms']['p50']:.1f} ms ({row['steps']} steps), "
              f"{row['hole_tokens_per_s']:.0f} hole tokens/s")
    for row in native.get("batched", []):
        print(f"native, batch {row['batch']:>2} x {row['slots']} slots: {row['fill_ms']['p50']:.1f} ms per fill, "
              f"{row['hole_tokens_per_s']:.0f} hole tokens/s")
    if "error" in native:
        print(f"native: {native['error']}")
    dg = results.get("diffusion_gemma", {})
    if "skipped" in dg or "error" in dg:
        print(f"DiffusionGemma 26B-A4B: {dg.get('skipped') or dg.get('error')}")
    elif dg:
        roof = dg["roofline"]
        print(f"DiffusionGemma 26B-A4B ({dg['parameters'] / 1e9:.1f}B parameters): roofline floor "
              f"{roof['floor_ms']:.1f} ms/step (compute {roof['compute_bound_ms']:.1f}, memory {roof['memory_bound_ms']:.1f})")
        for name, row in dg["variants"].items():
            if "step_ms" not in row:
                print(f"  {name}: {row.get('skipped') or row.get('error')}")
                continue
            implied = ", ".join(f"{s} steps {v:.0f}" for s, v in row["implied_tokens_per_s"].items())
            encode = f", encode {row['prefix_encode_ms_per_token']:.3f} ms/token" if "prefix_encode_ms_per_token" in row else ""
            print(f"  {name}: step {row['step_ms']['p50']:.1f} ms ({row['roofline_share']:.0%} of roofline){encode}; "
                  f"tokens/s: {implied} (published {PUBLISHED_TOKENS_PER_S:.0f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_results.json and plots")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, CPU allowed: tests the mechanics")
    parser.add_argument("--budget-s", type=float, default=500.0, help="wall-clock budget (default 500)")
    parser.add_argument("--skip-native", action="store_true")
    parser.add_argument("--skip-gemma", action="store_true")
    parser.add_argument("--variants", nargs="+", metavar="NAME", help="DiffusionGemma variants to run (default: all): "
                        + "; ".join(name for name, _, _ in DIFFUSION_GEMMA_VARIANTS))
    args = parser.parse_args(argv)
    clock = Clock(args.budget_s)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("no CUDA device: run on a GPU machine, or pass --smoke for a tiny CPU run", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.machine()})",
                     "torch": torch.__version__, "python": platform.python_version(), "smoke": args.smoke}
    try:
        import transformers

        results["transformers"] = transformers.__version__
    except ImportError:
        pass
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True

    def save() -> None:
        (args.out / "gpu_results.json").write_text(json.dumps(results, indent=1) + "\n")

    print(f"[gpu bench] {results['device']}: peaks", flush=True)
    results["peaks"] = measure_peaks(device, args.smoke)
    save()
    with tempfile.TemporaryDirectory(prefix="dgem-gpu-bench-") as scratch:
        if not args.skip_native:
            print(f"[gpu bench] native engine ({clock.left():.0f}s left)", flush=True)
            try:
                results["native"] = native_part(device, args.smoke, clock, Path(scratch))
            except Exception as error:
                results["native"] = {"error": f"{type(error).__name__}: {error}"}
                traceback.print_exc(file=sys.stderr)
            save()
    if cuda:
        torch.cuda.empty_cache()  # the native part's tensors are gone with its frame
    if not args.skip_gemma:
        reason = diffusion_gemma_available()
        if reason is not None:
            print(f"[gpu bench] SKIPPING DiffusionGemma 26B-A4B: {reason}", flush=True)
            results["diffusion_gemma"] = {"skipped": reason}
        else:
            print(f"[gpu bench] DiffusionGemma 26B-A4B ({clock.left():.0f}s left)", flush=True)
            try:
                results["diffusion_gemma"] = diffusion_gemma_part(device, args.smoke, clock, results["peaks"],
                                                                  args.variants)
            except Exception as error:
                results["diffusion_gemma"] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
                traceback.print_exc(file=sys.stderr)
        save()
    write_plots(results, args.out)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
