"""How far a model fits the files it trained on: its losses on trained files, on the held-out files of the same
archives (their packages seen, these files not), and on an archive it never saw (session 22, issue #3).

A model that has seen its corpus many times does better on the files it trained on than on their held-out
siblings; that gap, and the one to packages it never saw, say whether more passes or more code would help.
The losses are the trainer's held-out ones (stratified noise, fixed batches), so a later model can be
measured on the same batches.

    python -m engine.train.seen_unseen --model engine/weights --batches 16 \
        --seen .device/js_corpus.tar.xz .device/js_corpus2.tar.xz --unseen .device/js_corpus3.tar.xz
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer

from engine.native import NativeConfig, NativeModel
from engine.train.corpus import split_of, unpack_js
from engine.train.examples import Layout, Texts, fixed_batches
from engine.train.heldout import held_out_losses
from engine.train.objective import use_table_rotary
from engine.train.train import load_weights

FILES_PER_SET = 4000
BATCH_SIZE = 32


def file_sets(seen: list[Path], unseen: list[Path], limit: int = FILES_PER_SET) -> dict[str, list[dict]]:
    """"trained" / "held out" (by the corpus's hash split) files of the seen archives, and every file of the
    unseen ones; each set shuffled with a fixed seed and cut to `limit`."""
    sets: dict[str, list[dict]] = {"trained": [], "held out": [], "never seen": []}
    for archive in seen + unseen:
        for file in unpack_js(archive):
            name = "never seen" if archive in unseen else "trained" if split_of(file.sha256) == "train" else "held out"
            sets[name].append({"path": file.path, "lang": file.language, "text": file.text})
    for rows in sets.values():
        random.Random(0).shuffle(rows)
        del rows[limit:]
    return {name: rows for name, rows in sets.items() if rows}


def load_model(folder: Path) -> tuple[NativeModel, Layout]:
    architecture = json.loads((folder / "config.json").read_text())["architecture"]
    config = NativeConfig(**{key: architecture[key] for key in ("vocab_size", "dim", "n_layers", "n_heads", "ffn_dim")})
    model = use_table_rotary(NativeModel(config))
    model.load_state_dict(load_weights(folder))
    state = folder / "train_state.json"
    trained = json.loads(state.read_text()).get("layout", {}) if state.exists() else {}
    return model, Layout(**{key: value for key, value in trained.items() if key in Layout.__dataclass_fields__})


def measure(model: NativeModel, layout: Layout, tokenizer: Tokenizer, sets: dict[str, list[dict]],
            batches: int) -> dict[str, dict]:
    out = {}
    for name, rows in sets.items():
        languages = {row["lang"] for row in rows}
        texts = Texts(rows, {language: 1.0 for language in sorted(languages)})
        fixed = fixed_batches(tokenizer, texts, layout, batches, BATCH_SIZE)
        out[name] = {"files": len(rows), **held_out_losses(model, fixed, layout.hole_slots, torch.device("cpu"))}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("engine/weights"))
    parser.add_argument("--seen", type=Path, nargs="+", required=True, help="archives the model trained on")
    parser.add_argument("--unseen", type=Path, nargs="*", default=[], help="archives it never saw")
    parser.add_argument("--batches", type=int, default=16, help=f"batches of {BATCH_SIZE} holes a set")
    args = parser.parse_args(argv)
    model, layout = load_model(args.model)
    tokenizer = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    for name, result in measure(model, layout, tokenizer, file_sets(args.seen, args.unseen), args.batches).items():
        print(json.dumps({"set": name, **result}), flush=True)


if __name__ == "__main__":
    main()
