"""`dgem-infill bench` mechanics on the tiny random model: a table, files, and one JSON line last.

Timings are never asserted: they depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infill_server.cli import main

HEADLINE_KEYS = {"first_ms_p50", "final_ms_p50", "multiline_ms_p50", "speedup_vs_reference",
                 "speedup_vs_autoregressive"}


def test_quick_bench_prints_a_table_and_ends_with_the_json_line(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick", "--smoke", "--model", str(tiny_model_dir), "--device", "cpu",
              "--output", str(tmp_path)])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("dgem-infill bench (smoke)")
    assert lines[1].split()[:3] == ["case", "first", "p50"]
    assert any(line.startswith("single-line 256 warm") for line in lines)
    assert any(line.startswith("single-line held-out warm") for line in lines)
    assert any(line.startswith("(a) vs transformers generate()") for line in lines)
    headline = json.loads(lines[-1])
    assert set(headline) == HEADLINE_KEYS
    assert all(isinstance(value, float | int) and value > 0 for value in headline.values())
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["vs_reference"]["steps"]["reference"] == results["vs_reference"]["steps"]["engine"]
    assert any(line.startswith("  matrix products (multi_line, warm, interleaved): float32") for line in lines)
    assert any(line.startswith("  threads (multi_line, warm, interleaved): passes on one thread") for line in lines)
    assert results["variants"]["threads"]["chosen_at_load"] in {"one_thread", "products_on_all_threads"}
    assert isinstance(results["machine"]["small_passes_on_one_thread"], bool)
    assert set(results["dtypes"]["single_line"]) == {"float32", "float16", "bfloat16", "speedup_final"}
    assert set(results["dtypes"]["multi_line"]["speedup_final"]) == {"float16", "bfloat16"}
    assert {path.name for path in tmp_path.glob("bench-*.png")} == {
        "bench-latency.png", "bench-breakdown.png", "bench-ratios.png"}


def test_plots_are_skipped_with_a_line_when_matplotlib_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infill_server.bench.report import write_plots

    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # `import matplotlib` now fails
    assert write_plots({"latency": []}, tmp_path) == []
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
