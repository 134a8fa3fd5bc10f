"""The GPU script's CPU-runnable parts at tiny shapes (`--smoke`): it completes and writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infill_server.bench import gpu


def test_gpu_script_smoke_writes_results_and_prints_the_table_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gpu.main(["--out", str(tmp_path), "--smoke"]) == 0
    results = json.loads((tmp_path / "gpu_results.json").read_text())
    assert results["native"]["batched"] and "16" in results["native"]["single_request"]
    variants = results["diffusion_gemma"]["variants"]
    assert "implied_tokens_per_s" in variants["eager experts"]
    assert results["diffusion_gemma"]["roofline"]["floor_ms"] > 0
    assert (tmp_path / "bench-gpu-native.png").is_file()
    out = capsys.readouterr().out
    assert "== dgem-infill GPU bench" in out
    assert out.strip().splitlines()[-1].startswith("  ")  # the table's DiffusionGemma rows end the output


def test_the_26b_configuration_has_the_published_shape() -> None:
    text = gpu.GEMMA_26B_A4B_TEXT
    assert len(text["layer_types"]) == text["num_hidden_layers"] == 30
    assert text["layer_types"].count("full_attention") == 5 and text["layer_types"][-1] == "full_attention"
    assert (text["num_experts"], text["top_k_experts"], text["hidden_size"]) == (128, 8, 2816)
