"""The trainer on the CPU, at a toy size: it stops after a save and the next process resumes where it left off
(the GPU runs are chunks of at most 10 minutes), with the language mix it was given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOKENIZER = Path(__file__).resolve().parents[2] / "engine" / "weights" / "tokenizer.json"


def _corpus(folder: Path) -> Path:
    python = "def add(a, b):\n    return a + b\n\n\nclass Box:\n    def __init__(self, size):\n        self.size = size\n"
    javascript = "function add(a, b) {\n  return a + b;\n}\n\nexport class Box {\n  constructor(size) {\n    this.size = size;\n  }\n}\n"
    rows = [{"path": f"p{i}.py", "lang": "python", "text": python * 3} for i in range(4)]
    rows += [{"path": f"j{i}.js", "lang": "javascript", "text": javascript * 3} for i in range(4)]
    folder.mkdir()
    for split in ("train", "eval"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def _train(corpus: Path, ckpt: Path) -> str:
    command = [sys.executable, "-m", "engine.train.train", "--corpus", str(corpus), "--tokenizer", str(TOKENIZER),
               "--ckpt", str(ckpt), "--budget-min", "30", "--stop-min", "0.03", "--layers", "1", "--dim", "32",
               "--heads", "2", "--ffn-dim", "48", "--workers", "0", "--no-compile", "--batch-size", "2",
               "--eval-batches", "1", "--eval-batch-size", "2", "--log-every", "1", "--javascript-share", "0.6"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_stopped_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    corpus, ckpt = _corpus(tmp_path / "corpus"), tmp_path / "ckpt"
    first = _train(corpus, ckpt)
    assert f"saved {ckpt}" in first
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] > 0 and state["tokens"] > 0
    assert state["args"]["javascript_share"] == 0.6
    assert not (ckpt / "DONE").exists()  # stopped by the wall clock, the schedule is not over

    second = _train(corpus, ckpt)
    assert f"resumed {ckpt}: step {state['step']}" in second
    resumed = json.loads((ckpt / "state.json").read_text())
    assert resumed["step"] > state["step"] and resumed["runs"] == state["runs"] + 1
    logged = [json.loads(line) for line in (ckpt / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "loss" in row] == sorted(row["step"] for row in logged if "loss" in row)
