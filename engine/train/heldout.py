"""Measurements on held-out files (never trained on): losses, and exact match of single-line fills.

Exact match uses a deliberately plain decoder (commit the 2 most confident masked slots per step, pads
allowed anywhere), so it measures the network, not the engine's sampler:
- `true_length`: the hole has exactly the middle's token count;
- `slots16`: 16 slots for middles of at most 16 tokens; the fill is read up to the first <pad>.
"""

from __future__ import annotations

import random
from dataclasses import replace

import torch

from engine.native import NativeModel
from engine.train.examples import Batch, Layout, Texts, cut_hole, pack
from engine.train.objective import draw_noise, losses
from engine.train.tokenizer import MASK, PAD


@torch.no_grad()
def held_out_losses(model: NativeModel, batches: list[Batch], hole_slots: int, device: torch.device) -> dict:
    """Mean losses at stratified noise levels with a fixed generator: comparable across runs."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(0)
    totals = {"diffusion": 0.0, "next_token": 0.0}
    for batch in batches:
        batch = batch.to(device)
        t, noise, forced = draw_noise(batch, generator, stratified=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            diffusion, next_token, _ = losses(model, batch, hole_slots, t, noise, forced)
        totals["diffusion"] += float(diffusion) / len(batches)
        totals["next_token"] += float(next_token) / len(batches)
    model.train(was_training)
    return totals


def single_line_batch(tok, texts: Texts, layout: Layout, count: int, max_middle: int, seed: int) -> Batch:
    """Single-line holes (cursor to end of line) whose middle has 1..max_middle tokens, true length."""
    rng = random.Random(seed)
    exact = replace(layout, true_length_share=1.0)
    pieces: list[tuple[str, str, str]] = []
    while len(pieces) < count:
        text = texts.sample(rng)
        start, end = cut_hole(text, "line", rng)
        middle = text[start:end]
        if middle.strip() and len(tok.encode(middle, add_special_tokens=False).ids) <= max_middle:
            pieces.append((text[max(0, start - layout.prefix_chars) : start], middle, text[end:]))
    return pack(tok, pieces, exact, rng)


def with_slots(batch: Batch, slots: int) -> Batch:
    """The same examples with `slots` hole slots: [middle][pads up to slots][suffix head]."""
    canvas = torch.full_like(batch.canvas, PAD)
    canvas_len = batch.canvas_len.clone()
    for b in range(canvas.shape[0]):
        m, end = int(batch.middle_len[b]), int(batch.canvas_len[b])
        canvas[b, :m] = batch.canvas[b, :m]
        head = batch.canvas[b, m:end]
        canvas[b, slots : slots + len(head)] = head
        canvas_len[b] = slots + len(head)
    hole = torch.full_like(batch.hole, slots)
    return Batch(batch.prefix, canvas, hole, canvas_len, batch.middle_len)


@torch.no_grad()
def greedy_fill(model: NativeModel, batch: Batch, per_step: int = 2) -> torch.Tensor:
    """Unmask the hole, `per_step` most confident slots per step -> filled canvas (B, C)."""
    B, C = batch.canvas.shape
    device = batch.canvas.device
    slots = torch.arange(C, device=device)[None] < batch.hole[:, None]  # (B, C)
    canvas = torch.where(slots, torch.full_like(batch.canvas, MASK), batch.canvas)
    prefix_valid = batch.prefix != PAD
    canvas_valid = torch.arange(C, device=device)[None] < batch.canvas_len[:, None]
    hole_max = int(batch.hole.max())
    while bool((canvas == MASK).any()):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, hidden = model.forward_train(batch.prefix, prefix_valid, canvas, canvas_valid)
            logits = model.logits(hidden[:, :hole_max]).float()  # (B, S, V)
        logits[..., MASK] = -float("inf")
        confidence, token = logits.softmax(-1).max(-1)  # (B, S)
        still = canvas[:, :hole_max] == MASK
        confidence = torch.where(still, confidence, torch.full_like(confidence, -1.0))
        top = confidence.topk(min(per_step, hole_max), dim=1).indices  # (B, k)
        pick = torch.zeros_like(still).scatter_(1, top, True) & still
        canvas[:, :hole_max] = torch.where(pick, token, canvas[:, :hole_max])
    return canvas


def _matches(filled: torch.Tensor, batch: Batch) -> list[bool]:
    out = []
    for b in range(filled.shape[0]):
        m, S = int(batch.middle_len[b]), int(batch.hole[b])
        fill = filled[b, :S].tolist()
        fill = fill[: fill.index(PAD)] if PAD in fill else fill
        out.append(fill == batch.canvas[b, :m].tolist())
    return out


@torch.no_grad()
def exact_match(model: NativeModel, tok, texts: Texts, layout: Layout, device: torch.device,
                count: int = 512, seed: int = 99) -> dict:
    was_training = model.training
    model.eval()
    base = single_line_batch(tok, texts, layout, count, 16, seed)
    result = {"examples": count}
    for name, batch in (("true_length", base), ("slots16", with_slots(base, 16))):
        hits = []
        for start in range(0, count, 128):
            part = Batch(*(t[start : start + 128] for t in (batch.prefix, batch.canvas, batch.hole,
                                                             batch.canvas_len, batch.middle_len))).to(device)
            hits += _matches(greedy_fill(model, part), part)
        result[name] = sum(hits) / len(hits)
    model.train(was_training)
    return result
