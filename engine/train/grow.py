"""Function-preserving depth growth: a trained model gains blocks and computes exactly what it did.

Each new block is a copy of the block before it with its two residual outputs (the attention's `out`
and the FFN's `down` projection) set to zero, so at the start it adds nothing to the residual stream;
its copied input projections give it useful features to start from. Training then only has to learn
what the extra depth adds, instead of relearning what the smaller model knew (the question of issue 3:
does more model, not more steps, make better fills?).
"""

from __future__ import annotations

import re

import torch

BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")
RESIDUAL_OUTPUTS = ("attn.out.weight", "ffn.down.weight")


def insertion_points(old_layers: int, new_layers: int) -> list[int]:
    """Old block indices after which one new block each is inserted, spread evenly over the depth."""
    extra = new_layers - old_layers
    if extra <= 0:
        raise ValueError(f"growing from {old_layers} to {new_layers} layers adds none")
    return [old_layers * (j + 1) // extra - 1 for j in range(extra)]


def grown_state(state: dict[str, torch.Tensor], old_layers: int,
                new_layers: int) -> tuple[dict[str, torch.Tensor], list[int]]:
    """-> (state dict of the deeper model, indices of its new blocks)."""
    after = insertion_points(old_layers, new_layers)
    # new position of each old block, and of each inserted copy
    order: list[tuple[int, bool]] = []  # (old block copied, is new)
    for old in range(old_layers):
        order.append((old, False))
        order.extend((old, True) for _ in range(after.count(old)))
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    grown = {}
    for key, value in state.items():
        match = BLOCK_KEY.match(key)
        if match:
            blocks.setdefault(int(match.group(1)), {})[match.group(2)] = value
        else:
            grown[key] = value
    new_blocks = []
    for index, (old, is_new) in enumerate(order):
        for name, value in blocks[old].items():
            copied = value.clone()
            if is_new and name in RESIDUAL_OUTPUTS:
                copied.zero_()
            grown[f"blocks.{index}.{name}"] = copied
        if is_new:
            new_blocks.append(index)
    return grown, new_blocks
