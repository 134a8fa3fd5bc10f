"""The training objective: masked diffusion on the hole plus next-token prediction on the prefix.

Masked (absorbing-state) diffusion: draw t ~ U(0, 1] per example, replace each hole slot (middle and
filler pads) by <mask> with probability t (at least one slot), and score the model's cross-entropy on
the masked slots only. The suffix head is never masked. The prefix pass is causal, so a next-token loss
on it trains the prefix path (the KV cache at inference) at no extra forward cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.native import NativeModel
from engine.train.examples import Batch
from engine.train.tokenizer import EXPAND, MASK, PAD


class TableRotary(nn.Module):
    """Training-only rotary table of fixed size: the same angles as `native.Rotary`, without its
    data-dependent growth check (a host sync that also breaks torch.compile graphs)."""

    def __init__(self, head_dim: int, theta: float, size: int = 2048):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(size).float(), inv_freq)  # (size, E/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)  # (B, 1, T, E/2)


def use_table_rotary(model: NativeModel) -> NativeModel:
    """Swap the rotary module for training; state_dict keys do not change (both tables are buffers
    that are not saved)."""
    model.rotary = TableRotary(model.cfg.head_dim, model.cfg.rope_theta).to(model.embed.weight.device)
    return model


def mask_hole(canvas: torch.Tensor, hole: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
              forced: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """canvas (B, C), hole (B,), t (B,), noise (B, C) in [0, 1), forced (B,) in [0, 1)
    -> masked canvas (B, C), masked (B, C) bool. `forced` picks the one slot that is always masked, and
    <expand> slots (examples.merge_pairs) are always masked: they are targets, never shown."""
    B, C = canvas.shape
    slots = torch.arange(C, device=canvas.device)[None] < hole[:, None]  # (B, C)
    masked = ((noise < t[:, None]) | (canvas == EXPAND)) & slots
    first = (forced * hole).long().clamp(max=C - 1)  # (B,)
    masked = masked | (torch.arange(C, device=canvas.device)[None] == first[:, None])
    return torch.where(masked, torch.full_like(canvas, MASK), canvas), masked


def losses(model: NativeModel, batch: Batch, hole_slots: int, t: torch.Tensor, noise: torch.Tensor,
           forced: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (diffusion loss, next-token loss on the prefix, masked-slot count), losses as means."""
    prefix, canvas = batch.prefix, batch.canvas
    C = canvas.shape[1]
    prefix_valid = prefix != PAD
    canvas_valid = torch.arange(C, device=canvas.device)[None] < batch.canvas_len[:, None]
    noisy, masked = mask_hole(canvas, batch.hole, t, noise, forced)
    hp, hc = model.forward_train(prefix, prefix_valid, noisy, canvas_valid)  # (B, P, D), (B, C, D)

    # hole slots never pass hole_slots, so the LM head runs on that slice of the canvas only
    hole_logits = model.logits(hc[:, :hole_slots]).float()  # (B, S, V)
    ce = F.cross_entropy(hole_logits.flatten(0, 1), canvas[:, :hole_slots].flatten(), reduction="none")
    weight = masked[:, :hole_slots].flatten().float()
    diffusion = (ce * weight).sum() / weight.sum()

    prefix_logits = model.logits(hp[:, :-1]).float()  # (B, P-1, V)
    ce_prefix = F.cross_entropy(prefix_logits.flatten(0, 1), prefix[:, 1:].flatten(), reduction="none")
    # a target counts when it and the token before it are real (the first real token, <bos>, is not)
    keep = (prefix_valid[:, 1:] & prefix_valid[:, :-1]).flatten().float()
    next_token = (ce_prefix * keep).sum() / keep.sum()
    return diffusion, next_token, weight.sum()


def draw_noise(batch: Batch, generator: torch.Generator | None = None,
               stratified: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """t (B,) in (0, 1], slot noise (B, C) and forced-slot draw (B,). Stratified t spreads an
    evaluation batch evenly over noise levels, so held-out losses are comparable between runs."""
    B, C = batch.canvas.shape
    device = batch.canvas.device
    if stratified:
        t = (torch.arange(B, device=device) + 0.5) / B
    else:
        t = 1.0 - torch.rand(B, device=device, generator=generator)
    noise = torch.rand(B, C, device=device, generator=generator)
    forced = torch.rand(B, device=device, generator=generator)
    return t, noise, forced


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
