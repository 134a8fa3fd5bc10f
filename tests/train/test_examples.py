"""Training holes: how many spare <pad> slots follow a middle, where they sit, and holes too short for it."""

from __future__ import annotations

import dataclasses
import random

import torch

from engine.testing import train_tiny_tokenizer
from engine.train.examples import Layout, merge_pairs, pack, place_pads, spare_slots
from engine.train.objective import mask_hole
from engine.train.tokenizer import EXPAND, MASK, PAD


def draws(layout: Layout, m: int, n: int = 4000) -> list[int]:
    rng = random.Random(0)
    return [spare_slots(m, layout, rng) for _ in range(n)]


def test_uniform_draw_is_the_recipe_and_stays_in_range() -> None:
    assert Layout().spare_draw == "uniform"
    short, long = draws(Layout(), 5), draws(Layout(), 40)
    assert min(short) == 1 and max(short) == 16
    assert min(long) == 1 and max(long) == 40


def test_short_and_wide_draw_makes_short_runs_common_and_reaches_64() -> None:
    layout = dataclasses.replace(Layout(), spare_draw="short-and-wide")
    values = draws(layout, 5)
    assert sum(v <= 2 for v in values) / len(values) > 0.15  # uniform 1..16 gives 0.125
    assert max(values) == 64 and min(values) == 1


def test_short_draw_keeps_the_uniform_range() -> None:
    values = draws(dataclasses.replace(Layout(), spare_draw="short"), 5)
    assert sum(v <= 2 for v in values) / len(values) > 0.15
    assert min(values) == 1 and max(values) == 16


def test_pads_follow_the_middle_in_the_recipe() -> None:
    assert place_pads([7, 8, 9], 5, Layout(), random.Random(0)) == [7, 8, 9, PAD, PAD]


def test_inner_pads_sit_between_two_middle_tokens_as_one_run() -> None:
    layout = dataclasses.replace(Layout(), inner_pad_share=1.0)
    rng = random.Random(0)
    splits = set()
    for _ in range(200):
        hole = place_pads([7, 8, 9, 10], 7, layout, rng)
        assert len(hole) == 7 and [t for t in hole if t != PAD] == [7, 8, 9, 10]
        first = hole.index(PAD)
        assert hole[first : first + 3] == [PAD] * 3, "one run"
        splits.add(first)
    assert splits == {1, 2, 3}, "never before the first token or after the last"
    assert place_pads([7], 3, layout, rng) == [7, PAD, PAD], "a one-token middle keeps its pads at the end"
    assert place_pads([7, 8], 2, layout, rng) == [7, 8], "no spare slots, nothing to place"


def unmerge(hole: list[int], middle: list[int]) -> list[int]:
    """Expand each <expand> slot back into the two middle tokens it stands for."""
    out, at = [], 0
    for token in hole:
        width = 2 if token == EXPAND else 1
        out += middle[at : at + width]
        at += width
    return out


def test_expand_slots_stand_for_two_middle_tokens_each() -> None:
    rng = random.Random(0)
    middle = list(range(100, 140))
    shortfalls, places = [], set()
    for _ in range(500):
        hole = merge_pairs(middle, rng)
        expands = hole.count(EXPAND)
        assert expands >= 1 and len(hole) == len(middle) - expands
        assert unmerge(hole, middle) == middle, "the other slots keep their tokens, in order"
        shortfalls.append(expands)
        places.update(i for i, token in enumerate(hole) if token == EXPAND)
    assert max(shortfalls) <= len(middle) // 4
    assert sum(k <= 2 for k in shortfalls) / len(shortfalls) > 0.4, "short by one or two is common"
    assert {0, 20} <= places and max(places) >= 35, "anywhere in the hole"
    assert merge_pairs([7, 8], rng) == [EXPAND], "two tokens: one slot"


def test_expand_share_makes_holes_shorter_than_the_middle() -> None:
    tok = train_tiny_tokenizer()
    pieces = [("def f(x):\n    return ", "x + 1 if x else None", "\n")] * 40
    batch = pack(tok, pieces, dataclasses.replace(Layout(), expand_share=1.0), random.Random(0))
    assert bool((batch.hole < batch.middle_len).all())
    for row in range(len(pieces)):
        hole = batch.canvas[row, : int(batch.hole[row])].tolist()
        assert hole.count(EXPAND) == int(batch.middle_len[row] - batch.hole[row])
    plain = pack(tok, pieces, Layout(), random.Random(0))
    assert bool((plain.hole >= plain.middle_len).all()), "the recipe never cuts a hole short"


def test_expand_slots_are_always_masked() -> None:
    canvas = torch.tensor([[5, EXPAND, 6, 7, EXPAND, 9]])
    hole = torch.tensor([5])  # the last slot is suffix: never masked
    t = torch.tensor([0.0])  # no random masking at all
    noisy, masked = mask_hole(canvas, hole, t, torch.ones(1, 6), torch.tensor([0.0]))
    assert masked.tolist() == [[True, True, False, False, True, False]]  # slot 0: the forced one
    assert noisy.tolist() == [[MASK, MASK, 6, 7, MASK, 9]]
