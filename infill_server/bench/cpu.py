"""The CPU benchmark run behind `dgem-infill bench`: plan, cases, ratios, report."""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tokenizers import Tokenizer

from engine import Engine
from infill_server.bench import compare
from infill_server.bench.breakdown import (
    cost_breakdown,
    decoding_variants,
    dtype_variants,
    suffix_head_variants,
    thread_variants,
)
from infill_server.bench.latency import CaseResult, code_corpus, cut_document, held_out_case, run_case
from infill_server.bench.models import shipped_model_present, write_reference_model, write_shaped_native_model
from infill_server.bench.report import print_table, write_plots
from infill_server.bench.timing import Budget, peak_rss_mb
from infill_server.config import ServiceConfig

QUICK_SECONDS = 80.0  # measuring stops short of two minutes: what is left is the last cases' single runs
FULL_SECONDS = 720.0


@dataclass(frozen=True)
class Plan:
    """What one run measures and how often."""

    prefixes: tuple[int, ...]
    multiline_prefixes: tuple[int, ...]
    caches: tuple[str, ...]
    single: Budget
    multi: Budget
    parts: Budget
    ratio: Budget
    reference_size: str
    reference_steps: int
    variants: bool
    accuracy_holes: int
    dtypes: bool = True  # float32, float16-weight and bf16 matrix products (the native model on a CPU), interleaved
    other_passes: bool = True  # (a) also with the DiffusionGemma backend's other passes (eager or compiled)
    held_out_holes: int = 30  # warm single-line fills of this many held-out holes, sized as the service does

    def until(self, deadline: float) -> Plan:
        """The same plan, each case cut to one run once `deadline` has passed."""
        budgets = {name: replace(getattr(self, name), deadline=deadline) for name in ("single", "multi", "parts", "ratio")}
        return replace(self, **budgets)

    @classmethod
    def choose(cls, quick: bool, smoke: bool, accuracy_holes: int | None) -> Plan:
        if smoke:  # tests: mechanics only, tiny models, one or two runs
            tiny = Budget(1, 2, 1.0)
            return cls((256,), (256,), ("cold", "warm", "keystroke"), tiny, tiny, tiny, tiny, "tiny", 2, True,
                       accuracy_holes or 0, other_passes=False, held_out_holes=2)
        if quick:
            # no dtype variants: loading and timing two more engines would not leave room for the reference's
            # compile on a machine with no compiled kernels on disk yet (80 s of two minutes)
            return cls((1024,), (1024,), ("cold", "warm", "keystroke"), Budget(3, 7, 10.0), Budget(5, 9, 10.0),
                       Budget(3, 7, 1.5), Budget(2, 4, 10.0), "small", 8, False, accuracy_holes or 0, dtypes=False,
                       held_out_holes=12)
        return cls((256, 1024, 4096), (256, 1024, 4096), ("cold", "warm", "keystroke"), Budget(5, 11, 12.0),
                   Budget(3, 5, 15.0), Budget(5, 11, 3.0), Budget(5, 9, 40.0), "small", 8, True,
                   100 if accuracy_holes is None else accuracy_holes)


def run_cpu_bench(args: argparse.Namespace, config: ServiceConfig) -> int:
    started = time.perf_counter()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    plan = Plan.choose(getattr(args, "quick", False), getattr(args, "smoke", False), getattr(args, "accuracy", None))
    plan = plan.until(started + (QUICK_SECONDS if getattr(args, "quick", False) else FULL_SECONDS))
    output = Path(args.output) if getattr(args, "output", None) else None
    scratch = tempfile.TemporaryDirectory(prefix="dgem-bench-")
    work = Path(scratch.name)

    shipped = config.model is None and shipped_model_present()
    if config.model is not None:
        model_source = config.model
    elif shipped:
        model_source = None
    else:
        model_source = str(write_shaped_native_model(work / "shaped-native"))
    engine = Engine.load(model_source, config.device)
    one_thread = getattr(engine.backend, "passes_on_one_thread", None)  # the native backend's, timed at load
    model_label = "shipped model" if shipped else ("--model " + str(config.model) if config.model else
                                                    "random weights of the shipped shape (NativeConfig())")
    steps = getattr(args, "steps", None)
    single_slots = getattr(args, "max_tokens", None) or engine.defaults.default_slots
    multi_slots = engine.defaults.multiline_slots
    results: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "device": engine.info.device, "dtype": engine.info.dtype,
                    "small_passes_on_one_thread": one_thread if engine.info.device == "cpu" else None},
        "model": {"label": model_label, "parameters": engine.info.parameters,
                  "max_prefix_tokens": engine.info.max_prefix_tokens, "canvas_length": engine.info.canvas_length},
        "mode": "smoke" if getattr(args, "smoke", False) else ("quick" if getattr(args, "quick", False) else "full"),
    }

    # 1. latency of real fills
    tokenizer = Tokenizer.from_file(str(Path(engine.info.source) / "tokenizer.json"))
    corpus = code_corpus()
    cases: list[CaseResult] = []
    for prefix_tokens in plan.prefixes:
        doc = cut_document(tokenizer, corpus, prefix_tokens)
        for cache in plan.caches:
            cases.append(run_case(engine, doc, "single-line", single_slots, cache, plan.single, steps))
    if plan.held_out_holes:
        holes = compare.single_line_holes(engine, plan.held_out_holes)
        cases.append(held_out_case(engine, holes, single_slots, replace(plan.single, max_runs=plan.held_out_holes)))
    for prefix_tokens in plan.multiline_prefixes:
        doc = cut_document(tokenizer, corpus, prefix_tokens)
        for cache in ("warm",) if getattr(args, "quick", False) else plan.caches:
            cases.append(run_case(engine, doc, "multi-line", multi_slots, cache, plan.multi, steps))
    results["latency"] = [case.row() for case in cases]

    # 2. what each part costs
    doc = cut_document(tokenizer, corpus, 1024 if 1024 in plan.prefixes else plan.prefixes[0])
    results["breakdown"] = {"single_line": cost_breakdown(engine, doc, single_slots, plan.parts)}
    if plan.variants:
        results["breakdown"]["multi_line"] = cost_breakdown(engine, doc, multi_slots, plan.parts)
        results["variants"] = {
            "decoding": decoding_variants(engine, doc, {"single_line": single_slots, "multi_line": multi_slots},
                                          plan.ratio),
            "suffix_head": suffix_head_variants(engine, doc, single_slots, plan.parts),
            "threads": thread_variants(engine, doc, {"single_line": single_slots, "multi_line": multi_slots},
                                       plan.ratio),
        }
    if plan.dtypes and engine.info.backend == "dgem_native" and engine.info.device == "cpu":
        results["dtypes"] = dtype_variants(engine, doc, {"single_line": single_slots, "multi_line": multi_slots},
                                           plan.ratio)

    # 3. side by side: (a) transformers' generate(), (b) autoregressive decoding
    reference_dir = write_reference_model(work / "reference", plan.reference_size, plan.reference_steps)
    loading = time.perf_counter()
    reference_engine = Engine.load(reference_dir, engine.info.device, warm_up=False)  # where the engine runs
    # compiles its passes (unless $DGEM_INFILL_COMPILE=off) for the shapes measured: a prefix, whole canvases
    reference_engine.backend.warm_up(editor_shapes=False)
    load_s = time.perf_counter() - loading
    results["vs_reference"] = compare.versus_reference(reference_engine, doc.prefix[-2000:], plan.ratio,
                                                       other_passes=plan.other_passes)
    results["vs_reference"]["load_s"] = round(load_s, 1)
    del reference_engine
    results["vs_autoregressive"] = {"single_line": compare.versus_autoregressive(engine, doc, single_slots, plan.ratio)}
    if plan.variants:
        results["vs_autoregressive"]["multi_line"] = compare.versus_autoregressive(engine, doc, multi_slots,
                                                                                   plan.ratio)
    if engine.backend.noise == "mask" and plan.accuracy_holes and shipped:
        results["accuracy"] = compare.accuracy(engine, plan.accuracy_holes)
    else:
        results["accuracy"] = {"skipped": "needs the shipped model in engine/weights/ (run without --quick)"}

    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    results["seconds"] = round(time.perf_counter() - started, 1)
    headline = _headline(cases, results)
    results["headline"] = headline
    print_table(results, cases)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        write_plots(results, output)
    scratch.cleanup()
    print(json.dumps(headline))
    return 0


def _headline(cases: list[CaseResult], results: dict) -> dict:
    """The JSON line: warm single-line first/final p50, warm multi-line final p50, the two speedups."""
    def warm(single: bool) -> CaseResult:
        chosen = [c for c in cases if c.cache == "warm" and c.name.startswith("single") == single
                  and "held-out" not in c.name]  # the goals' cases: a 16-slot hole in the cut document
        return max(chosen, key=lambda c: c.prefix_tokens == 1024)  # the 1K prefix when measured

    single, multi = warm(True), warm(False)
    return {
        "first_ms_p50": round(single.first.p50, 1),
        "final_ms_p50": round(single.final.p50, 1),
        "multiline_ms_p50": round(multi.final.p50, 1),
        "speedup_vs_reference": results["vs_reference"]["speedup_cold"],
        "speedup_vs_autoregressive": results["vs_autoregressive"]["single_line"]["speedup_final"],
    }
