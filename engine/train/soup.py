"""A weight average ("model soup") of the shipped model and a run continued from it (session 23, issue #3).

A continued run starts from the shipped weights, so the two sit in one basin and the straight line between
them is a family of models that can be filled and judged like any other. When the run grew the model deeper,
the shipped model is first grown the same way (`grow.py`: the new blocks are identities), so the average of
a new block is the run's block with its residual outputs scaled by WEIGHT.

    python -m engine.train.soup --base engine/weights --run FOLDER --weight 0.5 --out /tmp/soup
    bash engine/train/judge.sh /tmp/soup /tmp/judge_soup   # judge.sh reads a folder of that shape

OUT gets the run's config, tokenizer and generation config, int8 weights, and `bundle.tar.gz` (everything
but the weights), the layout the device run sends back, so judge.sh and install_results.sh read it as is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
from pathlib import Path

import torch

from engine.train.grow import grown_state
from engine.train.quantize import quantize_int8, save_sharded
from engine.train.train import load_weights


def layers_of(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["architecture"]["n_layers"])


def soup_state(base: dict[str, torch.Tensor], base_layers: int, run: dict[str, torch.Tensor], run_layers: int,
               weight: float) -> dict[str, torch.Tensor]:
    """(1 - weight) * base + weight * run, the base grown to the run's depth first."""
    if run_layers < base_layers:
        raise ValueError(f"the run has {run_layers} layers, fewer than the base's {base_layers}")
    if run_layers > base_layers:
        base, _ = grown_state(base, base_layers, run_layers)
    if base.keys() != run.keys():
        raise ValueError(f"the two models differ in tensors: {sorted(base.keys() ^ run.keys())[:5]}")
    return {name: (1 - weight) * base[name].float() + weight * run[name].float() for name in run}


def write_folder(state: dict[str, torch.Tensor], run_folder: Path, out: Path) -> list[str]:
    """The run's non-weight files, the averaged int8 weights, and a bundle as a device run returns it."""
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    model.mkdir(exist_ok=True)
    for file in run_folder.iterdir():
        if file.is_file() and not file.name.startswith("model"):
            shutil.copy(file, model / file.name)
    files = save_sharded(quantize_int8(state), model)
    with tarfile.open(out / "bundle.tar.gz", "w:gz") as bundle:
        for file in sorted(model.iterdir()):
            if not file.name.endswith(".safetensors"):
                bundle.add(file, arcname=f"./{file.name}")
    for name in files:
        shutil.copy(model / name, out / name)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("engine/weights"), help="the model the run continued")
    parser.add_argument("--run", type=Path, required=True, help="model folder of the continued run")
    parser.add_argument("--weight", type=float, default=0.5, help="the run's share: 0 = base, 1 = run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    state = soup_state(load_weights(args.base), layers_of(args.base), load_weights(args.run), layers_of(args.run),
                       args.weight)
    files = write_folder(state, args.run, args.out)
    print(f"wrote {args.out}: {files} ({args.weight:g} of {args.run}, {1 - args.weight:g} of {args.base})")


if __name__ == "__main__":
    main()
