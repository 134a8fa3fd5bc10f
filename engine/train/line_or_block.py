"""A blank line's two readings: one statement or a block (session 17).

The syntax layer fills a blank line as a block (48 slots, multi-line decoding), yet the single-line
held-out set cuts whole lines too, and their cursor looks the same as a multi-line hole's. For every
blank-line hole of both sets this fills the block as the service does and the line as a single-line hole
is filled (24 slots, probe), then scores each as the causal pass's log-probability of the fill followed by
the suffix's next k lines (the likelihood chooser's measure), and reports exact match / edit similarity
for the block, the line and the likelier of the two, with a per-token bonus that favours the longer.

    python -m engine.train.line_or_block [--model DIR] [--out rows.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.train.evaluate import edit_similarity, load_holes, sample

SETS = (  # (name, holes file, per group, kind): the service's evaluation sets
    ("single", "engine/train/eval_holes_single.jsonl.xz", 300, "single_line"),
    ("multi", "engine/train/eval_holes.jsonl.xz", 100, "multi_line"),
)
SUFFIX_LINES = (2, 3, 4)  # the first is the rest of the blank line: empty
BONUSES = (0.0, 0.5, 1.0, 2.0, 3.0)


def fill_both(engine, hole) -> dict | None:
    """The hole's block and line fills and their scores, or None if it is not a blank-line hole."""
    import torch

    from engine import InfillRequest
    from engine.engine import suffix_lines
    from infill_server.syntax import analyze, one_statement, postprocess

    block_context = analyze(hole.prefix + hole.suffix, len(hole.prefix), hole.language)
    line_context = one_statement(block_context)
    if line_context is None:
        return None
    slots = block_context.max_tokens
    block = engine.complete(InfillRequest(hole.prefix, hole.suffix, max_tokens=slots,
                                          steps=round(slots / engine.defaults.multiline_tokens_per_step),
                                          fit_length=False, pad_logit_bias=engine.defaults.multiline_pad_logit_bias))
    line = engine.complete(InfillRequest(hole.prefix, hole.suffix, max_tokens=line_context.max_tokens, fit_length=True))
    texts = {"block": postprocess(block.text, hole.prefix, hole.suffix, block_context),
             "line": postprocess(line.text, hole.prefix, hole.suffix, line_context)}
    prefix = engine.prefix_ids(hole.prefix)
    cache = engine.prefix_cache.sync("\0line_or_block", prefix)
    row = {"id": hole.id, "language": hole.language, "middle": hole.middle, **texts}
    for name, text in texts.items():
        row[f"tokens_{name}"] = len(engine.tokenizer.encode(text))
        for k in SUFFIX_LINES:
            ids = engine.tokenizer.encode(text + suffix_lines(hole.suffix, k))
            row[f"logprob_{name}_{k}"] = float(engine.backend.continuation_logprobs(
                cache, prefix[-1], torch.tensor([ids])).sum()) if ids else 0.0  # nothing left: the file's end
    return row


def summary(rows: list[dict]) -> list[dict]:
    """Exact matches and mean edit similarity of the block, the line and the chooser per (k, bonus)."""
    def scores(picks: list[str]) -> dict:
        return {"exact": sum(text.strip() == r["middle"].strip() for r, text in zip(rows, picks, strict=True)),
                "similarity": round(sum(edit_similarity(text.strip(), r["middle"].strip())
                                        for r, text in zip(rows, picks, strict=True)) / max(1, len(rows)), 3)}

    out = [{"pick": name, **scores([r[name] for r in rows])} for name in ("block", "line")]
    for k in SUFFIX_LINES:
        for bonus in BONUSES:
            picks = [r["line"] if r[f"logprob_line_{k}"] + bonus * r["tokens_line"]
                     >= r[f"logprob_block_{k}"] + bonus * r["tokens_block"] else r["block"] for r in rows]
            out.append({"pick": f"likelier, {k} suffix lines, bonus {bonus}",
                        "line_picked": sum(p is r["line"] for r, p in zip(rows, picks, strict=True)), **scores(picks)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many blank-line holes per set")
    parser.add_argument("--out", type=Path, default=None, help="per-hole rows, JSON lines")
    args = parser.parse_args()
    from engine import Engine

    engine = Engine.load(args.model)
    rows: list[dict] = []
    for name, path, per_group, kind in SETS:
        found = []
        for hole in sample(load_holes(Path(path)), per_group):
            if hole.kind != kind or (args.limit is not None and len(found) >= args.limit):
                continue
            row = fill_both(engine, hole)
            if row is not None:
                found.append({"set": name, **row})
        for line in summary(found):
            print(json.dumps({"set": name, "holes": len(found), **line}))
        rows += found
    if args.out is not None:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
