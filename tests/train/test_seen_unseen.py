"""engine/train/seen_unseen.py: files sorted into trained / held out / never seen, and measured by a model."""

from __future__ import annotations

import math
from pathlib import Path

from tokenizers import Tokenizer

from engine.train import corpus
from engine.train.seen_unseen import file_sets, load_model, measure


def _source(index: int) -> str:
    return f"def step_{index}(value):\n    total = value * {index}\n    return total + {index}\n" * 4


def test_files_are_sorted_by_split_and_archive_and_measured(tiny_model_dir: Path, tmp_path: Path) -> None:
    texts = [_source(index) for index in range(200)]
    held_out = [text for text in texts if corpus.split_of(corpus.SourceFile("", "", "", text).sha256) == "eval"]
    assert held_out  # 2% of files are held out by their hash: some of 200
    seen, unseen = tmp_path / "seen.tar.xz", tmp_path / "unseen.tar.xz"
    corpus.write_archive([(f"site-packages/m/f{i}.py", "m@1", "MIT", text) for i, text in enumerate(texts[:150])], seen)
    corpus.write_archive([(f"site-packages/n/f{i}.py", "n@1", "MIT", text) for i, text in enumerate(texts[150:])], unseen)

    sets = file_sets([seen], [unseen])
    assert len(sets["never seen"]) == 50
    assert {row["text"] for row in sets["held out"]} == set(held_out) - set(texts[150:])
    assert len(sets["trained"]) + len(sets["held out"]) == 150

    model, layout = load_model(tiny_model_dir)
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    results = measure(model, layout, tokenizer, sets, batches=1)
    assert set(results) == set(sets)
    assert all(math.isfinite(result["diffusion"]) and math.isfinite(result["next_token"]) for result in results.values())
