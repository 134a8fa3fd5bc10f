"""Training holes: how many spare <pad> slots follow a middle, and where they sit."""

from __future__ import annotations

import dataclasses
import random

from engine.train.examples import Layout, place_pads, spare_slots
from engine.train.tokenizer import PAD


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
