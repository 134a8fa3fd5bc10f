"""What one fill costs, part by part, measured on the engine's own pieces.

Parts: tokenising the prefix, encoding it (per token), one denoising step (network layers + LM head),
the LM head alone, the sampler's update, decoding the hole text, and the service's post-processing
(tree-sitter analysis + filters). Variants timed inside the same run, as ratios: the decoding shortcuts
(suffix-head keys kept, confidence commits) against the exact computation, suffix-head length on the
canvas, the number of CPU threads, and float32 against bf16 matrix products.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from engine import Engine
from infill_server.bench.latency import Document, service_request, timed_fill
from infill_server.bench.timing import Budget, Samples, repeat
from infill_server.syntax import analyze, postprocess


def _median_ms(fn, budget: Budget) -> float:
    return round(repeat(fn, budget).p50, 3)


def cost_breakdown(engine: Engine, doc: Document, slots: int, budget: Budget) -> dict:
    """p50 ms of each part of a fill of `slots` slots after `doc.prefix`, and what a real fill spends on each."""
    backend = engine.backend
    prefix_ids = engine.prefix_ids(doc.prefix)
    suffix_ids = engine.suffix_ids(doc.suffix)
    device = backend.device
    ids = torch.tensor(prefix_ids, dtype=torch.long)  # (P,)

    def encode() -> None:
        backend.extend(backend.new_cache(), ids, 0)

    cache = backend.new_cache()
    backend.extend(cache, ids, 0)
    sampler = engine.make_sampler(slots, None, 0)
    state = sampler.start(1, slots, device)
    canvas = torch.cat((state.tokens, torch.tensor([suffix_ids], dtype=torch.long, device=device)), dim=1)  # (1, C)
    logits = backend.denoise(cache, canvas, slots)  # (1, slots, V)
    suffix = canvas[0, slots:]
    kept = engine.canvas_denoiser(cache, suffix, engine.new_tail(suffix))  # keeps the head's keys if the defaults do
    kept(state.tokens, None)  # the first, full pass
    model = backend.model
    width = getattr(getattr(model, "cfg", None), "dim", None)
    hidden = torch.randn(1, slots, width or 1, device=device)  # (1, slots, D)
    text = engine.tokenizer.decode(logits.argmax(-1)[0].tolist())
    context = analyze(doc.prefix + doc.suffix, len(doc.prefix), "python")
    warm = service_request(engine, doc.prefix, doc.suffix, slots, None, "breakdown")
    engine.complete(warm)
    steps = timed_fill(engine, warm)[2]  # refinements of a real warm fill (the length probe included)

    parts = {
        "tokenize_prefix_ms": _median_ms(lambda: engine.prefix_ids(doc.prefix), budget),
        "encode_prefix_ms": _median_ms(encode, budget),
        "denoise_step_ms": _median_ms(lambda: backend.denoise(cache, canvas, slots), budget),
        "later_step_ms": _median_ms(lambda: kept(state.tokens, None), budget),
        "lm_head_ms": _median_ms(lambda: model.logits(hidden), budget) if width else None,
        "sampler_update_ms": _median_ms(lambda: sampler.update(state, logits), budget),
        "decode_text_ms": _median_ms(lambda: engine.tokenizer.decode(logits.argmax(-1)[0].tolist()), budget),
        "postprocess_ms": _median_ms(lambda: postprocess(text, doc.prefix, doc.suffix, context), budget),
        "analyze_ms": _median_ms(lambda: analyze(doc.prefix + doc.suffix, len(doc.prefix), "python"), budget),
    }
    parts["encode_per_token_ms"] = round(parts["encode_prefix_ms"] / len(prefix_ids), 4)
    parts["prefix_tokens_encoded"] = len(prefix_ids)
    parts["canvas_tokens"] = canvas.shape[1]
    parts["steps"] = steps
    head = parts["lm_head_ms"] or 0
    per_fill = {
        "encode (cold only)": parts["tokenize_prefix_ms"] + parts["encode_prefix_ms"],
        "first pass (hole + suffix head)": parts["denoise_step_ms"] - head,
        "later steps' layers": (steps - 1) * (parts["later_step_ms"] - head),
        "LM head": steps * head,
        "sampler": steps * parts["sampler_update_ms"],
        "decode text": steps * parts["decode_text_ms"],
        "post-processing": steps * parts["postprocess_ms"] + parts["analyze_ms"],
    }
    parts["per_fill_ms"] = {name: round(ms, 2) for name, ms in per_fill.items()}
    return parts


def suffix_head_variants(engine: Engine, doc: Document, slots: int, budget: Budget,
                         heads: tuple[int, ...] = (0, 16, 64)) -> dict:
    """Denoising-step time with 0/16/64 suffix tokens on the canvas, interleaved so load hits all alike."""
    backend = engine.backend
    cache = backend.new_cache()
    backend.extend(cache, torch.tensor(engine.prefix_ids(doc.prefix), dtype=torch.long), 0)
    suffix = engine.suffix_ids(doc.suffix)
    mask = engine.tokenizer.special.mask or 0
    canvases = {
        head: torch.tensor([[mask] * slots + suffix[:head]], dtype=torch.long, device=backend.device)  # (1, C)
        for head in heads
    }
    samples = {head: Samples() for head in heads}
    another = budget.runs()
    for head in heads:
        backend.denoise(cache, canvases[head], slots)  # warm-up
    while another():
        for head in heads:
            samples[head].add(repeat(lambda h=head: backend.denoise(cache, canvases[h], slots), Budget(1, 1, 0), 0).p50)
    base = samples[heads[-1]].p50
    return {f"suffix_head_{head}": {"step_ms_p50": round(samples[head].p50, 2),
                                    "ratio_to_longest": round(samples[head].p50 / base, 3)} for head in heads}


def thread_variants(engine: Engine, doc: Document, slots: dict[str, int], budget: Budget) -> dict:
    """Warm-cache final latency of fills with the passes wholly on one thread and with the products on all of
    torch's threads, interleaved, and which way the backend took at load (NativeBackend.warm_up); {} where
    the backend has no such choice (a GPU, another backend)."""
    backend = engine.backend
    if engine.info.device != "cpu" or not hasattr(backend, "passes_on_one_thread"):
        return {}
    chosen = backend.passes_on_one_thread
    ways = {"one_thread": True, "products_on_all_threads": False}
    samples = {(way, kind): Samples() for way in ways for kind in slots}
    another = budget.runs()
    try:
        while another():
            for (way, kind), bucket in samples.items():
                backend.passes_on_one_thread = ways[way]
                request = service_request(engine, doc.prefix, doc.suffix, slots[kind], None, "threads")
                bucket.add(timed_fill(engine, request)[1])
    finally:
        backend.passes_on_one_thread = chosen
    out: dict = {"chosen_at_load": "one_thread" if chosen else "products_on_all_threads",
                 "threads": torch.get_num_threads()}
    for kind in slots:
        one, split = samples[("one_thread", kind)].p50, samples[("products_on_all_threads", kind)].p50
        out[kind] = {"one_thread_ms_p50": round(one, 1), "products_on_all_threads_ms_p50": round(split, 1),
                     "speedup_one_thread": round(split / one, 3)}
    return out


DECODING_VARIANTS = {
    # suffix head every step, k slots a step anywhere in the hole
    "exact": {"suffix_refresh_steps": 1, "commit_confidence": 1.0, "commit_window": 0},
    "suffix head kept": {"suffix_refresh_steps": 0, "commit_confidence": 1.0, "suffix_head_across_fills": False,
                         "commit_window": 0},
    "kept within a fill": {"suffix_head_across_fills": False},  # the shipped defaults but for the next one
    # session 2's defaults: every hole slot runs every step, the LM head over all of them
    "hole every step": {"masked_rows_only": False, "hole_refresh_steps": 1, "commit_window": 0},
    "no commit window": {"commit_window": 0},  # the shipped defaults before session 14
    "shipped": {},  # generation_config.json as it is (the suffix head also kept across a document's fills)
}


def decoding_variants(engine: Engine, doc: Document, slots: dict[str, int], budget: Budget) -> dict:
    """Warm-cache final latency of fills per decoding variant, interleaved; slots: {"single_line": 16, ...}."""
    shipped = engine.defaults
    settings = {name: replace(shipped, **values) for name, values in DECODING_VARIANTS.items()}
    samples = {(name, kind): Samples() for name in settings for kind in slots}
    steps: dict[tuple[str, str], int] = {}
    another = budget.runs()
    try:
        while another():
            for (name, kind), bucket in samples.items():
                engine.defaults = settings[name]
                request = service_request(engine, doc.prefix, doc.suffix, slots[kind], None, "variants")
                _, final, steps[(name, kind)] = timed_fill(engine, request)
                bucket.add(final)
    finally:
        engine.defaults = shipped
    out: dict = {}
    for (name, kind), bucket in samples.items():
        exact = samples[("exact", kind)].p50
        out.setdefault(kind, {})[name] = {"final_ms_p50": round(bucket.p50, 1), "steps": steps[(name, kind)],
                                          "speedup_vs_exact": round(exact / bucket.p50, 3)}
    return out


MATMUL_DTYPES = ("float32", "float16", "bfloat16")  # float16: float16 weights, float32 products


def dtype_variants(engine: Engine, doc: Document, slots: dict[str, int], budget: Budget) -> dict:
    """Warm fills with float32, float16-weight and bf16 matrix products (the model loaded again in each dtype
    `engine` lacks), interleaved: first and final p50 per kind and dtype, and each one's final-text speedup
    over float32 (`speedup_final`); slots: {"single_line": 16, "multi_line": 64}."""
    engines = {dtype: engine if engine.info.dtype == dtype else Engine.load(engine.info.source, engine.info.device,
                                                                          dtype=dtype)
               for dtype in MATMUL_DTYPES}
    samples = {(dtype, kind): (Samples(), Samples()) for kind in slots for dtype in MATMUL_DTYPES}

    def fill(dtype: str, kind: str) -> tuple[float, float, int]:
        chosen = engines[dtype]
        return timed_fill(chosen, service_request(chosen, doc.prefix, doc.suffix, slots[kind], None, "dtypes"))

    for dtype, kind in samples:
        fill(dtype, kind)  # warm-up: fills each engine's prefix cache
    steps: dict[tuple[str, str], int] = {}
    another = budget.runs()
    while another():
        for (dtype, kind), (first, final) in samples.items():
            first_ms, final_ms, steps[(dtype, kind)] = fill(dtype, kind)
            first.add(first_ms)
            final.add(final_ms)
    out: dict = {}
    for (dtype, kind), (first, final) in samples.items():
        out.setdefault(kind, {})[dtype] = {"first_ms_p50": round(first.p50, 1), "final_ms_p50": round(final.p50, 1),
                                           "steps": steps[(dtype, kind)]}
    for by_dtype in out.values():
        float32 = by_dtype["float32"]["final_ms_p50"]
        by_dtype["speedup_final"] = {dtype: round(float32 / by_dtype[dtype]["final_ms_p50"], 3)
                                     for dtype in MATMUL_DTYPES if dtype != "float32"}
    return out
