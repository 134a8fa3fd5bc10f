"""The bench's printed table and its PNG plots (matplotlib, imported only when plots are written)."""

from __future__ import annotations

import sys
from pathlib import Path

from infill_server.bench.latency import CaseResult


def print_table(results: dict, cases: list[CaseResult]) -> None:
    machine, model = results["machine"], results["model"]
    print(
        f"dgem-infill bench ({results['mode']}): {model['label']}, {model['parameters'] / 1e6:.1f}M parameters, "
        f"{machine['device']} with {machine['threads']} threads, torch {machine['torch']}, "
        f"{machine.get('dtype', 'float32')} matrix products"
        + {True: ", small passes on one thread", False: ", small passes' products on every thread", None: ""}[
            machine.get("small_passes_on_one_thread")]
    )
    print(
        f"{'case':<28} {'first p50':>10} {'first p90':>10} {'final p50':>10} {'final p90':>10} "
        f"{'steps':>6} {'encoded':>8} {'runs':>5}"
    )
    for case in cases:
        print(
            f"{case.name:<28} {case.first.p50:>8.1f}ms {case.first.p90:>8.1f}ms {case.final.p50:>8.1f}ms "
            f"{case.final.p90:>8.1f}ms {case.steps:>6} {case.encoded:>8} {len(case.final.values):>5}"
        )
    parts = results["breakdown"]["single_line"]
    print(
        f"single-line cost per fill ({parts['steps']} steps, canvas {parts['canvas_tokens']} tokens, "
        f"prefix {parts['prefix_tokens_encoded']} tokens): "
        + ", ".join(f"{name} {ms:.1f}ms" for name, ms in parts["per_fill_ms"].items())
    )
    print(
        f"  a full pass {parts['denoise_step_ms']:.1f}ms, a later step {parts['later_step_ms']:.1f}ms "
        f"(LM head {parts['lm_head_ms']}ms), prefix encode {parts['encode_per_token_ms']:.3f}ms/token"
    )
    variants = dict(results.get("variants", {}))
    for kind, by_name in variants.pop("decoding", {}).items():
        print(
            f"  decoding ({kind}): "
            + ", ".join(
                f"{name} {v['final_ms_p50']:.1f}ms/{v['steps']} steps (x{v['speedup_vs_exact']:.2f})"
                for name, v in by_name.items()
            )
        )
    threads = variants.pop("threads", {})
    for kind in ("single_line", "multi_line"):
        if kind in threads:
            way = threads[kind]
            print(f"  threads ({kind}, warm, interleaved): passes on one thread {way['one_thread_ms_p50']:.1f}ms, "
                  f"products on {threads['threads']} threads {way['products_on_all_threads_ms_p50']:.1f}ms "
                  f"(one thread x{way['speedup_one_thread']:.2f}; chosen at load: {threads['chosen_at_load']})")
    for name, variant in variants.items():
        print(
            f"  {name}: "
            + ", ".join(f"{key} {value['step_ms_p50']:.1f}ms/step" for key, value in variant.items())
        )
    for kind, by_dtype in results.get("dtypes", {}).items():
        print(
            f"  matrix products ({kind}, warm, interleaved): "
            + ", ".join(
                f"{dtype} first {v['first_ms_p50']:.1f}ms final {v['final_ms_p50']:.1f}ms/{v['steps']} steps"
                for dtype, v in by_dtype.items()
                if "first_ms_p50" in v
            )
            + " (" + ", ".join(f"{dtype} x{x:.2f}" for dtype, x in by_dtype["speedup_final"].items()) + ")"
        )
    ref = results["vs_reference"]
    passes = ref.get("passes", "eager")
    loaded = f", loaded and compiled for the shapes measured in {ref['load_s']:.0f}s" if "load_s" in ref else ""
    print(
        f"(a) vs transformers generate(): {ref['canvas_tokens']} tokens, steps {ref['steps']}, "
        f"{ref.get('dtype', 'float32')} both, reference {ref['ms']['reference']['p50']:.1f}ms, "
        f"engine ({passes} passes{loaded if passes == 'compiled' else ''}) "
        f"cold {ref['ms']['engine_cold']['p50']:.1f}ms (x{ref['speedup_cold']:.2f}), "
        f"warm {ref['ms']['engine_warm']['p50']:.1f}ms (x{ref['speedup_warm']:.2f})"
    )
    for other in ("eager", "compiled"):
        if f"speedup_{other}_cold" in ref:
            compiled_in = f" (compiled in {ref['compile_s']:.0f}s, untimed)" if "compile_s" in ref else ""
            print(
                f"    {other} passes{compiled_in}: "
                f"cold {ref['ms'][f'engine_{other}_cold']['p50']:.1f}ms (x{ref[f'speedup_{other}_cold']:.2f}), "
                f"warm {ref['ms'][f'engine_{other}_warm']['p50']:.1f}ms (x{ref[f'speedup_{other}_warm']:.2f})"
            )
    for name, ar in results["vs_autoregressive"].items():
        ms = ar["ms"]
        print(
            f"(b) {name} vs autoregressive, {ar['tokens']} tokens: one diffusion fill "
            f"{ms['diffusion_final']['p50']:.1f}ms ({ar['diffusion_steps']} steps), without suffix "
            f"{ms['diffusion_no_suffix_final']['p50']:.1f}ms, greedy {ms['autoregressive_final']['p50']:.1f}ms: "
            f"x{ar['speedup_final']:.2f} (x{ar['speedup_final_no_suffix']:.2f} without suffix)"
        )
        if "speedup_final_default_length" in ar:
            print(f"    the service's default fill (the model's length rule: several sizes, one kept) "
                  f"{ms['diffusion_default_length_final']['p50']:.1f}ms: x{ar['speedup_final_default_length']:.2f}")
    accuracy = results["accuracy"]
    if "exact_match" in accuracy:
        em = accuracy["exact_match"]
        print(
            f"accuracy ({accuracy['holes']} held-out single-line holes): diffusion {em['diffusion']:.1%} "
            f"(one fill at the probed length {em['diffusion_one_fill']:.1%}), autoregressive {em['autoregressive']:.1%}"
        )
    else:
        print(f"accuracy: skipped ({accuracy['skipped']})")
    print(f"peak RSS {results['peak_rss_mb']:.0f} MB, {results['seconds']:.0f}s")


def write_plots(results: dict, folder: Path) -> list[Path]:
    """The latency and variant plots as PNGs; none (and a line saying why) without matplotlib."""
    try:
        import matplotlib
    except ImportError:  # a test extra: the runtime install has no plotting library
        print("plots skipped: matplotlib is not installed (pip install matplotlib); results.json is written",
              file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    rows = results["latency"]
    labels = [row["case"] for row in rows]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
    y = range(len(rows))
    ax.barh(
        [i + 0.2 for i in y], [row["final_ms"]["p50"] for row in rows], height=0.4, label="final text p50"
    )
    ax.barh(
        [i - 0.2 for i in y],
        [row["first_ms"]["p50"] for row in rows],
        height=0.4,
        label="first refinement p50",
    )
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms (log scale)")
    ax.set_title(f"Fill latency on {results['machine']['device']} ({results['machine']['threads']} threads)")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, folder / "bench-latency.png"))

    fig, ax = plt.subplots(figsize=(8, 3))
    parts = results["breakdown"]["single_line"]["per_fill_ms"]
    ax.barh(list(parts), list(parts.values()))
    ax.invert_yaxis()
    ax.set_xlabel("ms per single-line fill")
    ax.set_title("Where a single-line fill's time goes")
    fig.tight_layout()
    written.append(_save(fig, folder / "bench-breakdown.png"))

    fig, ax = plt.subplots(figsize=(7, 3))
    ratios = {
        "vs generate() (cold)": results["vs_reference"]["speedup_cold"],
        "vs generate() (warm)": results["vs_reference"]["speedup_warm"],
    }
    for name, ar in results["vs_autoregressive"].items():
        ratios[f"vs autoregressive ({name})"] = ar["speedup_final"]
    ax.barh(list(ratios), list(ratios.values()))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvline(3.0, color="grey", linestyle="--", linewidth=0.8, label="goal 3x")
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of the engine (x)")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, folder / "bench-ratios.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
