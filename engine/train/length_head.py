"""A length head for the probe, measured (session 6) and not shipped.

The length probe reads a single-line fill's length from the trailing run of slots whose argmax is a pad.
That guess is right for about one held-out hole in eight, so the probed hole keeps spare slots, and spare
slots are where unknown-length fills lose to true-length ones. This measures whether a small network over
the same all-mask pass knows the length better, and what that is worth in exact match:

1. features: for single-line holes, the probe pass of the shipped model as the service runs it (int8
   weights, bf16 products, 64 suffix tokens, slots sized by the syntax layer): the final normed hidden
   state and the pad log-probability of each slot, and the true token count. Training holes come from
   files of the local archives that the manifest's hash split puts in training; held-out holes from
   eval_holes_single.jsonl.xz.
2. the head: for each slot i, an MLP over [state i, state i + 1, pad log-prob i, i + 1] scores "the
   fill's last token is in slot i"; softmax over the hole's slots; cross-entropy on the true length,
   with the model frozen.
3. exact match of the service's fill at the head's length (argmax, or the smallest length whose
   cumulative probability reaches q) plus a margin, and the best of the head's k likeliest lengths
   (an oracle: an upper bound for any rule that fills at several of them).

    python -m engine.train.length_head [--train-holes 4000] [--features /tmp/length_head] [--out result.json]

Features are kept in --features (torch tensors, this script's own cache), so a second run only fits and fills.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import torch
from torch import nn

from engine.sampler import right_pad_run
from engine.train.corpus import split_of, unpack_js
from engine.train.evaluate import (
    ARCHIVES,
    SINGLE_LINE_HOLES_FILE,
    Hole,
    _lines,
    _single_line_span,
    fill_all,
    language_of,
    load_holes,
    sample,
    score,
)


class LengthHead(nn.Module):
    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim + 2, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, states: torch.Tensor, pad_logp: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """states (B, S, D), pad_logp (B, S), zero past each row's `slots` (B,) -> (B, S) logits over the
        slot holding the fill's last token."""
        after = torch.zeros_like(states[:, :1])  # past the hole: no state, and log 1 = certainly no text
        features = torch.cat((states, torch.cat((states[:, 1:], after), 1), pad_logp[..., None],
                              torch.cat((pad_logp[:, 1:], torch.zeros_like(pad_logp[:, :1])), 1)[..., None]), -1)
        inside = torch.arange(states.shape[1])[None] < slots[:, None]
        return self.net(features)[..., 0].masked_fill(~inside, -torch.inf)


def training_holes(count: int, seed: int = 7) -> list[Hole]:
    """Two single-line holes per training file of the local archives, as the evaluation cuts them."""
    files = [(file.path, language, file.text)
             for name in ARCHIVES if (Path(".device") / name).is_file()
             for file in unpack_js(Path(".device") / name)
             if (language := language_of(file.path, file.language)) and split_of(file.sha256) == "train"
             and len(file.text) < 200_000]
    rng = random.Random(seed)
    rng.shuffle(files)
    holes: list[Hole] = []
    for path, language, text in files:
        lines, starts, candidates = _lines(text)
        if len(candidates) < 10:
            continue
        for index in range(2):
            begin, end = _single_line_span(rng, lines, starts, rng.choice(candidates))
            holes.append(Hole(f"{path}#train{index}", language, "single_line", text[:begin], text[begin:end], text[end:]))
        if len(holes) >= count:
            break
    return holes


class ProbeStates:
    """The probe pass's final normed hidden states, caught where the native model applies its LM head."""

    def __init__(self, engine) -> None:
        model = engine.backend.model
        self.states: torch.Tensor | None = None
        logits = model.logits

        def caught(hidden: torch.Tensor) -> torch.Tensor:
            self.states = model.norm(hidden).float()
            return logits(hidden)

        model.logits = caught

    def probe(self, engine, hole: Hole, slots: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """-> states (S, D), pad log-probabilities (S,) of the all-mask pass over `slots`, and the shipped
        probe's raw length (the slots left of the trailing run of argmax pads)."""
        special = engine.tokenizer.special
        suffix = torch.tensor(engine.suffix_ids(hole.suffix), dtype=torch.long)
        cache = engine.prefix_cache.sync("\0length-head", engine.prefix_ids(hole.prefix))
        masks = torch.full((1, slots), special.mask, dtype=torch.long)
        logits = engine.canvas_denoiser(cache, suffix)(masks, None).float()
        assert self.states is not None
        guess = logits.index_fill(-1, torch.tensor([special.mask]), -math.inf).argmax(-1)  # (1, S)
        pad_run = int(right_pad_run(guess, special.pad).sum())
        return self.states[0], logits.log_softmax(-1)[0, :, special.pad], max(1, slots - pad_run)


def features(engine, catcher: ProbeStates, holes: list[Hole]) -> list[dict]:
    from infill_server.syntax import analyze

    rows = []
    for hole in holes:
        slots = analyze(hole.prefix + hole.suffix, len(hole.prefix), hole.language).max_tokens
        states, pad_logp, pad_run = catcher.probe(engine, hole, slots)
        true_length = max(1, len(engine.tokenizer.encode(hole.middle)))
        rows.append({"states": states.to(torch.bfloat16), "pad_logp": pad_logp, "slots": slots, "true": true_length,
                     "pad_run": pad_run})
    return rows


def stacked(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> states (N, S, D), pad_logp (N, S), slots (N,), last-token slot (N,), zero past each hole."""
    width = max(row["slots"] for row in rows)
    states = torch.zeros(len(rows), width, rows[0]["states"].shape[1])
    pad_logp = torch.zeros(len(rows), width)
    for index, row in enumerate(rows):
        states[index, : row["slots"]] = row["states"].float()
        pad_logp[index, : row["slots"]] = row["pad_logp"]
    slots = torch.tensor([row["slots"] for row in rows])
    return states, pad_logp, slots, torch.minimum(torch.tensor([row["true"] for row in rows]), slots) - 1


def fit(rows: list[dict], epochs: int = 22, seed: int = 0) -> LengthHead:
    torch.manual_seed(seed)
    states, pad_logp, slots, target = stacked(rows)
    head = LengthHead(states.shape[-1])
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.05)
    for _ in range(epochs):
        head.train()
        for batch in torch.randperm(len(rows)).split(64):
            loss = nn.functional.cross_entropy(head(states[batch], pad_logp[batch], slots[batch]), target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head.eval()


def main() -> None:
    from engine import Engine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-holes", type=int, default=4000)
    parser.add_argument("--per-group", type=int, default=120, help="held-out holes per language")
    parser.add_argument("--features", type=Path, default=Path("/tmp/length_head"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    engine = Engine.load(None, device="cpu")
    catcher = ProbeStates(engine)
    held_out = sample([h for h in load_holes(SINGLE_LINE_HOLES_FILE) if h.kind == "single_line"], args.per_group)
    args.features.mkdir(parents=True, exist_ok=True)
    cached: dict[str, list[dict]] = {}
    for name, holes in (("train", lambda: training_holes(args.train_holes)), ("held_out", lambda: held_out)):
        path = args.features / f"{name}.pt"
        cached[name] = torch.load(path, weights_only=True) if path.is_file() else features(engine, catcher, holes())
        torch.save(cached[name], path)
    head = fit(cached["train"])
    states, pad_logp, slots, target = stacked(cached["held_out"])
    with torch.no_grad():
        probabilities = head(states, pad_logp, slots).softmax(-1)  # (N, S)
    result: dict = {"train_holes": len(cached["train"]), "held_out_holes": len(held_out)}
    pad_run = torch.tensor([row["pad_run"] for row in cached["held_out"]]) - 1
    for name, predicted in (("head", probabilities.argmax(-1)), ("pad_run", pad_run)):
        result[f"{name}_length"] = {"right": float((predicted == target).float().mean()),
                                    "within_1": float(((predicted - target).abs() <= 1).float().mean()),
                                    "short": float((predicted < target).float().mean())}
    print(json.dumps(result))

    by_hole = {hole.id: index for index, hole in enumerate(held_out)}
    special = engine.tokenizer.special
    rule: dict = {}

    def head_length(index: int) -> int:
        p = probabilities[index, : int(slots[index])]
        if rule["q"] == "argmax":
            return int(p.argmax()) + 1
        return int((p.cumsum(0) < rule["q"]).sum()) + 1

    current: list[int] = []

    def probe_length(denoiser, hole_slots: int) -> tuple[int, list[int]]:
        length = head_length(current[0])
        logits = denoiser(torch.full((1, hole_slots), special.mask, dtype=torch.long), None)
        guess = logits.index_fill(-1, torch.tensor([special.mask]), -math.inf).argmax(-1)[0, :length].tolist()
        return max(1, min(hole_slots, length + rule["margin"])), guess

    engine.probe_length = probe_length
    result["service_exact"] = {}
    for q, margin in (("argmax", 0), ("argmax", 1), (0.5, 0), (0.7, 0), (0.85, 0), (0.5, 1)):
        rule.update(q=q, margin=margin)
        rows = []
        for hole in held_out:
            current[:] = [by_hole[hole.id]]
            rows += fill_all(engine, [hole], "unknown", 2.0, fit_length=True)
        result["service_exact"][f"{q}+{margin}"] = score(rows).exact
        print(f"head length {q} + margin {margin}: {score(rows).__dict__}", flush=True)

    # the best of the head's k likeliest lengths, each filled at exactly that size (an upper bound)
    top = probabilities.topk(4, dim=-1).indices + 1  # (N, 4) lengths
    best = [0] * 4
    for index, hole in enumerate(held_out):
        hits = [_fill_exact(engine, hole, length) for length in top[index].tolist() if length <= int(slots[index])]
        for k in range(4):
            best[k] += any(hits[: k + 1])
    result["oracle_top_k_exact"] = [count / len(held_out) for count in best]
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


def _fill_exact(engine, hole: Hole, length: int) -> bool:
    from engine import InfillRequest
    from infill_server.syntax import analyze, postprocess

    context = analyze(hole.prefix + hole.suffix, len(hole.prefix), hole.language)
    final = engine.complete(InfillRequest(hole.prefix, hole.suffix, max_tokens=length,
                                          steps=max(1, math.ceil(length / 2)), fit_length=False))
    text = postprocess(final.text if final is not None else "", hole.prefix, hole.suffix, context)
    return text.strip() == hole.middle.strip()


if __name__ == "__main__":
    main()
