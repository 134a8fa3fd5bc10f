"""Side-by-side runs, reported as ratios measured inside one run.

(a) reference: the engine against transformers' own `DiffusionGemmaForBlockDiffusion.generate()` on the same
    DiffusionGemma-format checkpoint (one module object, same prefix ids, same steps, same output length);
(b) autoregressive: diffusion infill against greedy next-token decoding of the same number of tokens with the
    same native network's causal pass (`NativeModel.extend`, one token at a time), both from a warm prefix
    cache; plus exact match of both on held-out single-line holes when the shipped model is present.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import sysconfig
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from engine import Engine, InfillRequest
from engine.native import NativeModel
from infill_server.bench.latency import Document, service_request, timed_fill
from infill_server.bench.timing import Budget, Samples, time_ms

_fresh = itertools.count()


# ---- (a) the engine against transformers' generate() ----------------------------------------------------


def versus_reference(engine: Engine, prefix: str, budget: Budget, other_passes: bool = True) -> dict:
    """Fill one canvas after `prefix` both ways; the checkpoint's sampler runs exactly max_steps steps.

    Both sides use one module object, so the same checkpoint in the same dtype (the engine's choice at load:
    bf16 on a CPU with fast bf16 matrix products, see engine/backends/precision.py; reported as `dtype`), the
    same prefix ids, the same steps (counted: the decoder passes of generate(), the refinements of the engine)
    and output length (reported); generate() is given token ids, the engine text (its tokenising is timed).
    Cold: a new document, so the engine encodes the prefix, as generate() does on every call; warm: the
    engine's prefix cache holds it. generate() runs as a user calls it: its default dynamic cache, which
    leaves it uncompiled.

    The engine runs as loaded (`speedup_cold` is the headline): on a CPU its passes are compiled at load by
    default (engine/backends/diffusion_gemma.py, `warm_up`; the load is not timed), on a GPU its canvas passes
    are replayed as CUDA graphs. With `other_passes`, the same engine is also timed with the other kind of
    passes (`eager_*` where they were compiled or graphed, else `compiled_*`; a compile for it happens untimed
    and is reported as `compile_s`); the tests' smoke runs skip that.
    """
    model = engine.backend.model
    canvas = engine.info.canvas_length
    steps = engine.defaults.max_steps
    ids = torch.tensor([engine.prefix_ids(prefix)], device=engine.backend.device)  # (1, P)
    passes = [0]
    hook = model.model.decoder.register_forward_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    backend = engine.backend
    # the switch between the loaded passes and the other kind: CUDA graphs on a GPU, torch.compile elsewhere
    switch = "cuda_graphs" if getattr(backend, "cuda_graphs", False) else "compiled"
    loaded_on = bool(getattr(backend, switch, False))
    loaded = ("graphed" if switch == "cuda_graphs" else "compiled") if loaded_on else "eager"
    other = ("eager" if loaded_on else "compiled") if other_passes and hasattr(backend, "compiled") else None

    def reference() -> int:
        """New tokens generated (generate()'s sequences are the prompt and the new tokens)."""
        out = model.generate(ids, max_new_tokens=canvas)
        if ids.device.type == "cuda":  # its last kernels may still run; the engine's fill reads its tokens back
            torch.cuda.synchronize(ids.device)
        return getattr(out, "sequences", out).shape[1] - ids.shape[1]

    def ours_cold() -> int:
        request = InfillRequest(prefix, "", max_tokens=canvas, steps=steps, cache_key=f"ref-{next(_fresh)}")
        return timed_fill(engine, request)[2]

    warm_request = InfillRequest(prefix, "", max_tokens=canvas, steps=steps, cache_key="ref-warm")

    def with_other_passes(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            setattr(backend, switch, not loaded_on)
            try:
                return fn()
            finally:
                setattr(backend, switch, loaded_on)

        return run

    sides: dict[str, Callable[[], object]] = {
        "reference": reference,
        "engine_cold": ours_cold,
        "engine_warm": lambda: engine.complete(warm_request),
    }
    compile_s = None
    if other is not None:
        sides[f"engine_{other}_cold"] = with_other_passes(ours_cold)
        sides[f"engine_{other}_warm"] = with_other_passes(lambda: engine.complete(warm_request))
        if other == "compiled":  # compiled here, as a load would have compiled them
            started = time.perf_counter()
            with_other_passes(backend.warm_up)()
            compile_s = time.perf_counter() - started
    try:
        reference_tokens = reference()
        reference_steps = passes[0]
        our_steps = ours_cold()
        warm = engine.complete(warm_request)
        our_tokens = warm.slots if warm is not None else 0
        samples = {name: Samples() for name in sides}
        another = budget.runs()
        while another():  # interleaved, so a busy neighbour slows every side alike
            for name, side in sides.items():
                samples[name].add(time_ms(side))
    finally:
        hook.remove()
    result = {
        "dtype": str(model.dtype).removeprefix("torch."),  # generate()'s and the engine's: one module
        "passes": loaded,  # the engine's, as loaded
        "prefix_tokens": ids.shape[1],
        "canvas_tokens": canvas,
        "steps": {"reference": reference_steps, "engine": our_steps},  # decoder passes of each
        "output_tokens": {"reference": reference_tokens, "engine": our_tokens},
        "ms": {name: s.summary() for name, s in samples.items()},
    }
    for name in ("cold", "warm") + ((f"{other}_cold", f"{other}_warm") if other else ()):
        result[f"speedup_{name}"] = round(samples["reference"].p50 / samples[f"engine_{name}"].p50, 3)
    if compile_s is not None:
        result["compile_s"] = round(compile_s, 1)
    return result


# ---- (b) diffusion against autoregressive decoding -----------------------------------------------------


class GreedyDecoder:
    """Next-token decoding with the native network's causal pass, from a cached prefix."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.model: NativeModel = engine.backend.model
        self.cache = engine.backend.new_cache()
        self.prefix_length = 0
        self.last_hidden: torch.Tensor | None = None  # (1, 1, D) of the prefix's last token

    def set_prefix(self, ids: list[int]) -> None:
        self.cache.truncate(0)
        prefix = torch.tensor(ids, device=self.engine.backend.device)  # (P,)
        hidden = self.model.extend(self.cache, prefix, 0)  # (1, P, D)
        self.prefix_length = len(ids)
        self.last_hidden = hidden[:, -1:]

    @torch.inference_mode()
    def decode(self, tokens: int, stop_at_newline: bool = False) -> tuple[list[int], float]:
        """Greedy tokens after the cached prefix -> (ids, ms to the first token). Each token's pass takes the
        threads of the engine's own small passes (NativeBackend.pass_threads): both sides on the same footing."""
        self.cache.truncate(self.prefix_length)
        special = self.engine.tokenizer.special
        forbidden = torch.tensor([t for t in (special.mask, special.bos, special.pad) if t is not None])
        hidden = self.last_hidden
        out: list[int] = []
        first_ms = 0.0
        begin = time.perf_counter()
        with self.engine.backend.pass_threads():
            for position in range(self.prefix_length, self.prefix_length + tokens):
                logits = self.model.logits(hidden[:, -1]).float()  # (1, V)
                logits[:, forbidden] = -torch.inf
                token = int(logits.argmax(-1))
                if not out:
                    first_ms = (time.perf_counter() - begin) * 1000
                out.append(token)
                if token == special.eos or (stop_at_newline and "\n" in self.engine.tokenizer.decode([token])):
                    break
                if len(out) < tokens:
                    ids = torch.tensor([token], device=self.engine.backend.device)  # (1,)
                    hidden = self.model.extend(self.cache, ids, position)  # (1, 1, D)
        return out, first_ms


def versus_autoregressive(engine: Engine, doc: Document, slots: int, budget: Budget) -> dict:
    """Warm-cache latency of one `slots`-token diffusion fill, sized as the service sizes it (a multi-line hole
    takes `multiline_tokens_per_step` tokens a step and no probe) but filled once, and of `slots` greedy tokens.

    One fill decodes as many tokens as greedy decoding does: that is the comparison (`speedup_final`). Where
    the model's length rule fills a single line at several sizes and keeps one (generation_config's
    `length_offsets`), the service's default fill is timed too (`speedup_final_default_length`): more exact
    lines (see `accuracy`) for several fills' work."""
    decoder = GreedyDecoder(engine)
    decoder.set_prefix(engine.prefix_ids(doc.prefix))
    key = "ar-warm"
    default = service_request(engine, doc.prefix, doc.suffix, slots, None, key)
    diffusion = replace(default, length_offsets=())  # one fill at the probed length
    no_suffix = replace(service_request(engine, doc.prefix, "", slots, None, key), length_offsets=())
    several_sizes = bool(engine.defaults.length_offsets) and slots <= engine.defaults.length_offsets_max_slots
    engine.complete(diffusion)
    decoder.decode(slots)
    names = ["diffusion_first", "diffusion_final", "diffusion_no_suffix_final", "autoregressive_first",
             "autoregressive_final"] + (["diffusion_default_length_final"] if several_sizes else [])
    samples = {name: Samples() for name in names}
    another = budget.runs()
    while another():
        first, final, steps = timed_fill(engine, diffusion)
        samples["diffusion_first"].add(first)
        samples["diffusion_final"].add(final)
        samples["diffusion_no_suffix_final"].add(timed_fill(engine, no_suffix)[1])
        if several_sizes:
            samples["diffusion_default_length_final"].add(timed_fill(engine, default)[1])
        begin = time.perf_counter()
        first_ar = decoder.decode(slots)[1]
        samples["autoregressive_final"].add((time.perf_counter() - begin) * 1000)
        samples["autoregressive_first"].add(first_ar)
    greedy = samples["autoregressive_final"].p50
    result = {
        "tokens": slots,
        "diffusion_steps": steps,
        "ms": {name: s.summary() for name, s in samples.items()},
        "speedup_final": round(greedy / samples["diffusion_final"].p50, 3),
        "speedup_final_no_suffix": round(greedy / samples["diffusion_no_suffix_final"].p50, 3),
    }
    if several_sizes:
        result["speedup_final_default_length"] = round(greedy / samples["diffusion_default_length_final"].p50, 3)
    return result


# ---- accuracy on held-out code (shipped model only) ----------------------------------------------------


def held_out_files(limit: int = 400) -> list[str]:
    """Standard-library files of this Python that the training split rule holds out (by content hash)."""
    from engine.train.corpus import split_of  # the same rule that split the training corpus

    root = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if split_of(hashlib.sha256(text.encode("utf-8")).hexdigest()) == "eval":
            texts.append(text)
            if len(texts) >= limit:
                break
    return texts


def single_line_holes(
    engine: Engine, count: int, max_tokens: int = 16, seed: int = 0
) -> list[tuple[str, str, str]]:
    """(prefix, middle, suffix): the cursor inside a line, the hole to the line's end (1..max_tokens tokens)."""
    rng = random.Random(seed)
    files = held_out_files()
    holes: list[tuple[str, str, str]] = []
    while files and len(holes) < count:
        text = rng.choice(files)
        lines = text.split("\n")
        index = rng.randrange(len(lines))
        line = lines[index]
        body = line.lstrip()
        if len(body) < 4 or body.startswith("#"):
            continue
        start = len(line) - len(body) + rng.randrange(1, len(body))
        middle = line[start:]
        if not middle.strip() or len(engine.tokenizer.encode(middle)) > max_tokens:
            continue
        offset = sum(len(x) + 1 for x in lines[:index]) + start
        holes.append((text[:offset], middle, text[offset + len(middle) :]))
    return holes


def accuracy(engine: Engine, count: int) -> dict:
    """Exact match (first line, trailing space ignored) of 16-slot diffusion fills (as the service fills them,
    and one fill at the probed length) and of greedy decoding."""
    holes = single_line_holes(engine, count)
    decoder = GreedyDecoder(engine)
    hits = {"diffusion": 0, "diffusion_one_fill": 0, "autoregressive": 0}
    for prefix, middle, suffix in holes:
        want = middle.rstrip()
        for name, offsets in (("diffusion", None), ("diffusion_one_fill", ())):
            result = engine.complete(InfillRequest(prefix, suffix, max_tokens=16, length_offsets=offsets))
            if result is not None and result.text.split("\n")[0].rstrip() == want:
                hits[name] += 1
        decoder.set_prefix(engine.prefix_ids(prefix))
        ids, _ = decoder.decode(16, stop_at_newline=True)
        if engine.tokenizer.decode(ids).split("\n")[0].rstrip() == want:
            hits["autoregressive"] += 1
    n = max(len(holes), 1)
    return {
        "holes": len(holes),
        "source": "held-out CPython stdlib files (split by content hash)",
        "exact_match": {name: round(h / n, 4) for name, h in hits.items()},
    }
