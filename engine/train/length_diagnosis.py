"""Where unknown-length single-line fills lose to true-length ones: the probe's length guess or the margin.

For each held-out single-line hole: the real middle's token length, the length probe's raw guess (no
margin), and whether the fill is exact at the true length, at the service's probed length (+ margin),
at the raw probe length, and at the true length + margin (the margin's own cost).

    python -m engine.train.length_diagnosis [--per-group 30] [--out diag.jsonl]

With `--spare 0,1,2,3` it measures instead what spare slots cost: exact match when the hole has the true
length plus each number of spare slots (no probe, the true-length fill's tokens per step).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

from engine.train.evaluate import HOLES_FILE, Hole, load_holes, sample


def raw_probe(engine, hole: Hole, slots: int) -> int:
    """The probe's length guess over `slots` all-mask slots, without the margin."""
    prefix = engine.prefix_ids(hole.prefix)
    suffix_ids = engine.suffix_ids(hole.suffix)
    import torch

    suffix = torch.tensor(suffix_ids, dtype=torch.long, device=engine.backend.device)
    cache = engine.prefix_cache.sync("\0diagnosis", prefix)
    saved = engine.defaults
    engine.defaults = replace(saved, length_margin=0)
    try:
        length, _ = engine.probe_length(engine.canvas_denoiser(cache, suffix), slots)
    finally:
        engine.defaults = saved
    return length


def fill(engine, hole: Hole, slots: int, fit: bool, context) -> str:
    from engine import InfillRequest
    from infill_server.syntax import postprocess

    steps = max(1, math.ceil(slots / 2))
    final = engine.complete(InfillRequest(hole.prefix, hole.suffix, max_tokens=slots, steps=steps, fit_length=fit))
    text = final.text if final is not None else ""
    return text if context is None else postprocess(text, hole.prefix, hole.suffix, context)


def spare_cost(engine, holes: list[Hole], spares: list[int]) -> dict[int, float]:
    """Exact match of fills at the true length + each count of spare slots (no probe, no post-processing)."""
    exact = dict.fromkeys(spares, 0)
    for hole in holes:
        true_length = max(1, len(engine.tokenizer.encode(hole.middle)))
        for spare in spares:
            exact[spare] += fill(engine, hole, true_length + spare, False, None).strip() == hole.middle.strip()
    return {spare: count / len(holes) for spare, count in exact.items()}


def main() -> None:
    from engine import Engine
    from infill_server.syntax import analyze

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-group", type=int, default=30)
    parser.add_argument("--generation", type=json.loads, default={})
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--spare", type=lambda text: [int(v) for v in text.split(",")], default=None,
                        help="spare slot counts, comma-separated: measure their cost (see above)")
    args = parser.parse_args()
    engine = Engine.load(args.model, device="cpu")
    engine.defaults = replace(engine.defaults, **args.generation)
    margin = engine.defaults.length_margin
    holes = sample([h for h in load_holes(HOLES_FILE) if h.kind == "single_line"], args.per_group)
    if args.spare is not None:
        exact = spare_cost(engine, holes, args.spare)
        print(f"{len(holes)} holes, exact match at true length + " + ", ".join(
            f"{spare}: {share:.1%}" for spare, share in exact.items()))
        return
    rows = []
    for hole in holes:
        context = analyze(hole.prefix + hole.suffix, len(hole.prefix), hole.language)
        true_length = max(1, len(engine.tokenizer.encode(hole.middle)))
        probe = raw_probe(engine, hole, context.max_tokens)
        want = hole.middle.strip()
        exact = {
            "true": fill(engine, hole, true_length, False, None).strip() == want,
            "service": fill(engine, hole, context.max_tokens, True, context).strip() == want,
            "at_probe": fill(engine, hole, probe, False, context).strip() == want,
            "true+margin": fill(engine, hole, min(true_length + margin, context.max_tokens), False, context).strip() == want,
        }
        rows.append({"id": hole.id, "true_length": true_length, "probe": probe, "slots": context.max_tokens, **exact})
    counts: Counter = Counter()
    for row in rows:
        side = "short" if row["probe"] < row["true_length"] else "long" if row["probe"] > row["true_length"] else "right"
        counts[(side, "n")] += 1
        for key in ("true", "service", "at_probe", "true+margin"):
            counts[(side, key)] += row[key]
            counts[("all", key)] += row[key]
    print(f"{len(rows)} holes; true length > slots: {sum(r['true_length'] > r['slots'] for r in rows)}")
    for side in ("short", "right", "long", "all"):
        n = counts[(side, "n")] if side != "all" else len(rows)
        print(f"probe {side:<6} n={n:<3} exact: true {counts[(side, 'true')]:<3} service {counts[(side, 'service')]:<3} "
              f"at probe {counts[(side, 'at_probe')]:<3} true+margin {counts[(side, 'true+margin')]}")
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
