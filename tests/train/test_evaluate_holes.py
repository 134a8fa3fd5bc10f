"""The held-out hole cutters: deterministic, and the extra single-line holes never repeat the first ones."""

from __future__ import annotations

from engine.train.evaluate import cut_holes, more_single_lines

TEXT = "\n".join(f"    value_{index} = compute(value_{index - 1}, {index})  # step" for index in range(60))


def test_more_single_lines_are_distinct_rest_of_line_holes() -> None:
    first = next(cut_holes("a.py", "python", TEXT))
    more = list(more_single_lines("a.py", "python", TEXT, 3))
    assert len(more) == 3
    begins = [len(hole.prefix) for hole in (first, *more)]
    assert len(set(begins)) == 4, "no extra hole starts where cut_holes' own does"
    assert min(abs(a - b) for a in begins for b in begins if a != b) >= 200, "each in its own neighbourhood"
    for hole in more:
        assert hole.kind == "single_line" and "\n" not in hole.middle and hole.middle
        assert hole.prefix + hole.middle + hole.suffix == TEXT
        assert hole.suffix.startswith("\n") or not hole.suffix
    assert [hole.id for hole in more] == ["a.py#single1", "a.py#single2", "a.py#single3"]
    assert more == list(more_single_lines("a.py", "python", TEXT, 3)), "the same file gives the same holes"


def test_a_short_file_gives_no_extra_holes() -> None:
    assert list(more_single_lines("b.py", "python", "x = 1\ny = 2\n", 3)) == []
