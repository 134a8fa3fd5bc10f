"""Training holes: how many spare <pad> slots follow a middle."""

from __future__ import annotations

import dataclasses
import random

from engine.train.examples import Layout, spare_slots


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
