"""engine/train/soup.py: the average of a model and a deeper run continued from it, written as a run's folder."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

from engine.native import NativeConfig, NativeModel
from engine.testing import write_tiny_native_model
from engine.train.grow import grown_state
from engine.train.soup import main, soup_state
from engine.train.train import load_weights


def tiny(layers: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return NativeModel(NativeConfig(vocab_size=64, dim=32, n_layers=layers, n_heads=2, ffn_dim=48)).state_dict()


def test_the_ends_of_the_line_are_the_two_models() -> None:
    base, run = tiny(4, seed=0), tiny(5, seed=1)
    grown, new_blocks = grown_state(base, 4, 5)
    for weight, expected in ((0.0, grown), (1.0, run)):
        soup = soup_state(base, 4, run, 5, weight)
        for name in run:
            torch.testing.assert_close(soup[name], expected[name].float())
    # halfway, a new block's residual outputs are half the run's (the grown base has zeros there)
    half = soup_state(base, 4, run, 5, 0.5)
    out = f"blocks.{new_blocks[0]}.attn.out.weight"
    torch.testing.assert_close(half[out], 0.5 * run[out])
    with pytest.raises(ValueError):
        soup_state(run, 5, base, 4, 0.5)


def test_the_folder_reads_as_a_device_run(tmp_path: Path) -> None:
    base = write_tiny_native_model(tmp_path / "base", seed=0)
    run = write_tiny_native_model(tmp_path / "run", seed=1)
    main(["--base", str(base), "--run", str(run), "--weight", "0.25", "--out", str(tmp_path / "soup")])

    model = tmp_path / "soup" / "model"
    assert json.loads((model / "config.json").read_text()) == json.loads((run / "config.json").read_text())
    expected = {name: 0.75 * value + 0.25 * load_weights(run)[name] for name, value in load_weights(base).items()}
    for name, value in load_weights(model).items():  # int8 again: within a step of its row's grid
        step = expected[name].abs().amax(dim=-1, keepdim=True) / 127 if value.dim() == 2 else 1e-6
        assert ((value - expected[name]).abs() <= step + 1e-6).all(), name
    with tarfile.open(tmp_path / "soup" / "bundle.tar.gz") as bundle:
        names = set(bundle.getnames())
    assert "./config.json" in names and "./tokenizer.json" in names
    assert not any(name.endswith(".safetensors") for name in names)
    assert list((tmp_path / "soup").glob("model*.safetensors"))
