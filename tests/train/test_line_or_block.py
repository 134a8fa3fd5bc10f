"""line_or_block on a tiny random model: both readings of a blank line are filled and scored (mechanics only)."""

from __future__ import annotations

import math
from pathlib import Path

from engine import Engine
from engine.train.evaluate import Hole
from engine.train.line_or_block import BONUSES, SUFFIX_LINES, fill_both, summary


def test_a_blank_line_gets_a_block_and_a_line_each_scored(tiny_model_dir: Path) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu")
    blank = Hole("blank", "python", "single_line", "def f(x):\n    y = x\n    ", "y += 1", "\n    return y\n")
    row = fill_both(engine, blank)
    assert row is not None and "\n" not in row["line"]
    for name in ("block", "line"):
        for k in SUFFIX_LINES:  # a log-probability of at least the suffix's next line: finite, below 0
            assert math.isfinite(row[f"logprob_{name}_{k}"]) and row[f"logprob_{name}_{k}"] < 0
    assert fill_both(engine, Hole("call", "python", "single_line", "x = compute(", "1", ")\n")) is None

    table = summary([{**row, "middle": row["line"] + " "}])  # the line is exact by construction
    assert table[1] == {"pick": "line", "exact": 1, "similarity": 1.0}
    assert all(0 <= entry["exact"] <= 1 for entry in table) and len(table) == 2 + len(SUFFIX_LINES) * len(BONUSES)
