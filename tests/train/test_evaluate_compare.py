"""The evaluation's run output keeps every fill, and `compare` pairs two runs hole by hole."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from engine.train.evaluate import Hole, length_shares, main, open_files, paired, shown_fill, sign_test


def test_the_sign_test_is_exact_and_two_sided() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(1, 9) == pytest.approx(2 * 11 / 1024)  # P(X <= 1) for n=10, both tails
    assert sign_test(3, 5) == sign_test(5, 3)


def run_entry(exact: dict[str, bool], generation: dict | None = None) -> dict:
    setting = {"length": "unknown", "fit_length": True, "suffix_head": 64, "tokens_per_step": 2.0,
               "generation": generation or {}}
    return {**setting, "holes": [{"id": hole, "fill": "", "exact": value} for hole, value in exact.items()]}


def test_compare_counts_holes_exact_in_one_run_only_per_matching_setting() -> None:
    first = {"fills": [run_entry({"a": True, "b": True, "c": False, "d": False}),
                       run_entry({"a": True}, {"length_choice": "vote"})]}
    second = {"fills": [run_entry({"a": True, "b": False, "c": True, "d": True, "e": True})]}
    (row,) = paired(first, second)  # the vote setting is in the first run only
    assert (row["holes"], row["first_exact"], row["second_exact"]) == (4, 2, 3)  # hole e is in one run only
    assert (row["first_only"], row["second_only"]) == (1, 2)
    assert row["p_value"] == sign_test(1, 2)


def test_a_run_writes_every_fill_and_compare_reads_two_runs(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    holes = tmp_path / "holes.jsonl.xz"
    with lzma.open(holes, "wt", encoding="utf-8") as sink:
        for index in range(3):
            hole = {"id": f"h{index}", "language": "python", "kind": "single_line",
                    "prefix": f"def f{index}(x):\n    return ", "middle": "x + 1", "suffix": "\n"}
            sink.write(json.dumps(hole) + "\n")
    outs = [tmp_path / "a.json", tmp_path / "b.json.xz"]  # docs/quality keeps them compressed
    for out in outs:
        main(["run", "--model", str(tiny_model_dir), "--holes", str(holes), "--per-group", "3",
              "--kinds", "single_line", "--fit-length", "off", "--out", str(out)])
    written = json.loads(outs[0].read_text())
    assert [entry["length"] for entry in written["fills"]] == ["true", "unknown"]
    assert [hole["id"] for hole in written["fills"][0]["holes"]] == ["h0", "h1", "h2"]
    assert json.loads(lzma.decompress(outs[1].read_bytes()))["fills"] == written["fills"]
    capsys.readouterr()
    main(["compare", str(outs[0]), str(outs[1])])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(row["holes"] == 3 for row in rows)
    assert all(row["first_only"] == row["second_only"] == 0 for row in rows)  # the same model, seeded: same fills


def test_entries_that_differ_only_in_length_keys_fill_the_true_length_once(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from engine.train import evaluate

    holes = tmp_path / "holes.jsonl.xz"
    with lzma.open(holes, "wt", encoding="utf-8") as sink:
        sink.write(json.dumps({"id": "h", "language": "python", "kind": "single_line",
                               "prefix": "def f(x):\n    return ", "middle": "x + 1", "suffix": "\n"}) + "\n")
    lengths: list[str] = []
    real_fill_all = evaluate.fill_all
    monkeypatch.setattr(evaluate, "fill_all", lambda engine, holes, length, *rest: (
        lengths.append(length), real_fill_all(engine, holes, length, *rest))[1])
    out = tmp_path / "out.json"
    main(["run", "--model", str(tiny_model_dir), "--holes", str(holes), "--per-group", "1", "--kinds", "single_line",
          "--fit-length", "on", "--out", str(out), "--generation", "{}",
          '{"length_offsets": [-1, 0, 1], "length_choice": "likelihood"}', '{"commit_confidence": 0.5}'])
    assert lengths == ["true", "unknown", "unknown", "true", "unknown"]  # commit_confidence changes true-length fills
    written = json.loads(out.read_text())
    true_rows = [entry for entry in written["fills"] if entry["length"] == "true"]
    assert len(true_rows) == 3 and true_rows[0]["holes"] == true_rows[1]["holes"]


def test_one_file_compares_each_generation_entry_with_the_first() -> None:
    run = {"fills": [run_entry({"a": True, "b": False, "c": False}),
                     run_entry({"a": False, "b": True, "c": True}, {"length_choice": "likelihood"}),
                     {**run_entry({"a": True}), "length": "true"}]}  # no alternative at true length
    (row,) = paired(run)
    assert row["setting"]["generation"] == {"length_choice": "likelihood"}
    assert (row["first_only"], row["second_only"], row["holes"]) == (1, 2, 3)  # baseline first


def test_one_file_compares_each_open_files_entry_with_the_first() -> None:
    run = {"fills": [run_entry({"a": True, "b": False}), {**run_entry({"a": True, "b": True}), "open_files": 4}]}
    (row,) = paired(run)
    assert row["setting"]["open_files"] == 4 and (row["first_only"], row["second_only"]) == (0, 1)


def test_alternatives_are_runs_of_their_own_and_a_hole_shows_its_exact_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    holes = tmp_path / "holes.jsonl.xz"
    with lzma.open(holes, "wt", encoding="utf-8") as sink:
        for index in range(4):
            sink.write(json.dumps({"id": f"h{index}", "language": "python", "kind": "single_line",
                                   "prefix": f"def f{index}(x):\n    return ", "middle": "x + 1", "suffix": "\n"}) + "\n")
    out = tmp_path / "out.json"
    main(["run", "--model", str(tiny_model_dir), "--holes", str(holes), "--per-group", "4", "--kinds", "single_line",
          "--fit-length", "off", "--alternatives", "1,3", "--out", str(out)])
    written = json.loads(out.read_text())
    assert [(entry["length"], entry.get("alternatives")) for entry in written["fills"]] == [
        ("true", None), ("unknown", None), ("true", 3), ("unknown", 3)]
    rows = paired(written)
    assert {row["setting"].get("alternatives") for row in rows} == {3}
    hole = Hole("h", "python", "single_line", "return ", "x + 1", "\n")
    assert shown_fill(hole, ["x", " x + 1 ", "y"]) == " x + 1 " and shown_fill(hole, ["x", "y"]) == "x"


def test_open_files_are_the_nearest_files_of_the_same_package_and_extension() -> None:
    def hole(path: str, text: str) -> Hole:
        return Hole(f"{path}#single1", "python", "single_line", text[:3], text[3:5], text[5:])

    holes = [hole(path, f"<{path}>") for path in (
        "lib/a.py", "lib/b.py", "lib/c.py", "lib/d.js", "other/e.py",
        "node_modules/x/f.js", "node_modules/x/g.js", "node_modules/y/h.js")]
    opened = open_files(holes, holes, 2)
    assert opened["lib/a.py#single1"] == ("<lib/b.py>", "<lib/c.py>")
    assert opened["lib/c.py#single1"] == ("<lib/b.py>", "<lib/a.py>"), "the nearest in path order first"
    assert opened["other/e.py#single1"] == (), "no other file of its package"
    assert opened["node_modules/x/f.js#single1"] == ("<node_modules/x/g.js>",), "a package under node_modules"


def test_two_files_pair_across_generation_and_edit_similarity_is_paired_with_the_middles() -> None:
    first = {"fills": [run_entry({"a": True, "b": False, "c": False}, {"hole_refresh_steps": 0})]}
    second = {"fills": [run_entry({"a": True, "b": False, "c": False}, {"multiline_pad_logit_bias": -2})]}
    first["fills"][0]["holes"][1]["fill"] = "x = 1"  # b: closer to its middle in the first run
    second["fills"][0]["holes"][2]["fill"] = "y = 22"  # c: closer in the second run
    second["fills"][0]["holes"][1]["fill"] = "x"
    assert paired(first, second) == []  # different generation overrides: nothing pairs by default
    middles = {"a": "", "b": "x = 1", "c": "y = 2"}
    (row,) = paired(first, second, middles=middles, across_generation=True)
    assert row["setting"]["generation"] == {"first": {"hole_refresh_steps": 0},
                                            "second": {"multiline_pad_logit_bias": -2}}
    similarity = row["similarity"]
    assert (similarity["first_better"], similarity["second_better"]) == (1, 1)  # a: both empty, a tie
    assert similarity["first"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-4)
    assert similarity["second"] == pytest.approx((1 + 0.2 + 5 / 6) / 3, abs=1e-4)


def test_length_share_divides_unknown_by_true_length_hits_per_sizing_mode() -> None:
    true = {**run_entry({"a": True, "b": True, "c": True, "d": False}), "length": "true", "fit_length": False}
    unknown = run_entry({"a": True, "b": False, "c": False, "d": True})
    shares = {row["sized_as"]: row for row in length_shares({"fills": [true, unknown]},
                                                            {"a": "single_line", "b": "single_line",
                                                             "c": "multi_line", "d": "multi_line"})}
    assert (shares["all"]["true_exact"], shares["all"]["unknown_exact"], shares["all"]["share"]) == (3, 2, 0.667)
    assert (shares["single_line"]["holes"], shares["single_line"]["share"]) == (2, 0.5)
    assert (shares["multi_line"]["true_exact"], shares["multi_line"]["unknown_exact"]) == (1, 1)
    # an unknown-length run pairs only with the true-length run of its own decoding
    other = run_entry({"a": True}, {"length_choice": "vote"})
    assert len(length_shares({"fills": [true, other]}, {})) == 0
    by_start = {row["starts"]: row for row in length_shares({"fills": [true, unknown]}, {"a": "blank_line"}, "starts")}
    assert set(by_start) == {"all", "blank_line"} and by_start["blank_line"]["holes"] == 1


def test_a_hole_starts_inside_a_word_after_a_symbol_or_on_a_blank_line() -> None:
    from engine.train.evaluate import Hole, starts

    def hole(name: str, prefix: str, middle: str) -> Hole:
        return Hole(id=name, language="python", kind="single_line", prefix=prefix, middle=middle, suffix="\n")

    found = starts([hole("word", "x = fo", "o(1)"), hole("under", "x = my", "_name"), hole("dot", "x = a.", "b"),
                    hole("space", "return ", "x"), hole("blank", "if x:\n    ", "y = 1"), hole("first", "", "a = 1")])
    assert found == {"word": "inside_word", "under": "inside_word", "dot": "after_space_or_symbol",
                     "space": "after_space_or_symbol", "blank": "blank_line", "first": "blank_line"}
