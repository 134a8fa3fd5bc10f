"""The length head experiment's mechanics: masking past the hole, and a fit that learns a visible length."""

from __future__ import annotations

import random

import torch

from engine.train.length_head import LengthHead, fit, stacked


def synthetic_rows(count: int, dim: int = 8, seed: int = 0) -> list[dict]:
    """Holes of 4..12 slots whose pad log-probability jumps to ~0 right after the true length."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        slots = rng.randint(4, 12)
        true = rng.randint(1, slots)
        pad_logp = torch.full((slots,), -6.0)
        pad_logp[true:] = -0.01
        rows.append({"states": torch.randn(slots, dim).to(torch.bfloat16), "pad_logp": pad_logp, "slots": slots,
                     "true": true, "pad_run": true})
    return rows


def test_slots_past_a_hole_are_never_chosen() -> None:
    states, pad_logp, slots, _ = stacked(synthetic_rows(6))
    scores = LengthHead(states.shape[-1]).eval()(states, pad_logp, slots)
    for row, size in enumerate(slots.tolist()):
        assert torch.isinf(scores[row, size:]).all() and torch.isfinite(scores[row, :size]).all()


def test_fit_learns_a_length_the_features_show() -> None:
    head = fit(synthetic_rows(600), epochs=15)
    states, pad_logp, slots, target = stacked(synthetic_rows(100, seed=1))
    with torch.no_grad():
        right = (head(states, pad_logp, slots).argmax(-1) == target).float().mean()
    assert right > 0.9
