"""Depth growth keeps a trained model's function, and its new blocks are the ones that train fast."""

from __future__ import annotations

import argparse

import pytest
import torch

from engine.native import NativeConfig, NativeModel
from engine.train.grow import grown_state, insertion_points
from engine.train.train import build_optimizer


def tiny(layers: int) -> NativeModel:
    torch.manual_seed(0)
    return NativeModel(NativeConfig(vocab_size=64, dim=32, n_layers=layers, n_heads=2, ffn_dim=48))


def test_new_blocks_are_spread_over_the_depth() -> None:
    assert insertion_points(8, 10) == [3, 7]
    assert insertion_points(8, 12) == [1, 3, 5, 7]
    with pytest.raises(ValueError):
        insertion_points(8, 8)


def test_the_grown_model_computes_what_the_small_one_did() -> None:
    small = tiny(4)
    grown_weights, new_blocks = grown_state(small.state_dict(), 4, 6)
    assert new_blocks == [2, 5]
    big = tiny(6)
    big.load_state_dict(grown_weights)
    prefix = torch.randint(4, 64, (2, 12))
    canvas = torch.randint(4, 64, (2, 6))
    valid_p, valid_c = torch.ones_like(prefix, dtype=torch.bool), torch.ones_like(canvas, dtype=torch.bool)
    with torch.no_grad():
        hp_small, hc_small = small.forward_train(prefix, valid_p, canvas, valid_c)
        hp_big, hc_big = big.forward_train(prefix, valid_p, canvas, valid_c)
    torch.testing.assert_close(hp_big, hp_small)
    torch.testing.assert_close(hc_big, hc_small)
    # not a no-op: the new blocks carry copied input projections, and their outputs start at zero
    assert torch.equal(big.blocks[2].attn.qkv.weight, small.blocks[1].attn.qkv.weight)
    assert not big.blocks[2].attn.out.weight.any() and not big.blocks[5].ffn.down.weight.any()


def test_old_blocks_learn_at_their_scale_of_the_rate() -> None:
    model = tiny(6)
    args = argparse.Namespace(weight_decay=0.1, old_lr_scale=0.25, lr=1e-3)
    optimizer = build_optimizer(model, args, [2, 5], torch.device("cpu"))
    new_ids = {id(p) for i in (2, 5) for p in model.blocks[i].parameters()}
    for group in optimizer.param_groups:
        is_new = {id(p) in new_ids for p in group["params"]}
        assert len(is_new) == 1
        assert group["lr_scale"] == (1.0 if is_new.pop() else 0.25)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    # without growth every parameter trains at the full rate, in the two groups of before
    plain = build_optimizer(model, args, [], torch.device("cpu"))
    assert [g["lr_scale"] for g in plain.param_groups] == [1.0, 1.0]
