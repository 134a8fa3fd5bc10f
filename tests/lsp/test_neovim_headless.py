"""Real Neovim (0.7.2, Debian's `neovim`) asks dgem-infill for an inline completion through its
built-in LSP client and draws it as ghost text with extmarks. Installs nothing: run
scripts/install-editors.sh first (the test is skipped without nvim)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NVIM = shutil.which("nvim")
SCRIPT = Path(__file__).with_name("nvim_ghost_text.lua")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NVIM is None, reason="nvim not installed (scripts/install-editors.sh installs it)"),
]


def test_neovim_draws_the_inline_completion_as_extmark_ghost_text(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "outcome.json"
    # Neovim's state stays in the temporary folder, never in $HOME.
    env = {
        **os.environ,
        **{f"XDG_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CONFIG", "DATA", "STATE", "CACHE")},
        "DGEM_TEST_OUT": str(out),
        "DGEM_TEST_MODEL": str(tiny_model),
        "DGEM_TEST_PYTHON": sys.executable,
        "DGEM_TEST_CWD": str(REPO),
        "DGEM_TEST_FILE": str(tmp_path / "add.py"),
    }
    command = [NVIM, "--headless", "-n", "-i", "NONE", "-u", str(SCRIPT)]
    finished = subprocess.run(command, env=env, cwd=tmp_path, timeout=240, capture_output=True, text=True)
    assert out.exists(), f"nvim wrote no outcome (exit {finished.returncode}): {finished.stderr[-2000:]}"
    outcome = json.loads(out.read_text())

    assert "error" not in outcome, outcome["error"]
    assert 1 <= outcome["items"] <= 3
    assert outcome["refinements"] >= 2
    assert outcome["done_text"] == outcome["insert_text"]
    assert outcome["ghost_text"] == outcome["insert_text"]
    assert (outcome["mark_row"], outcome["mark_col"]) == (1, 11)
