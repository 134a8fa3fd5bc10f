"""Shared fixtures: a tiny random model directory (mechanics only, never quality)."""

from __future__ import annotations

import os

# One thread per torch process: tests run a test process and a server side by side on two cores, and
# spinning OpenMP threads that fight for them make tiny models ~50x slower. Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from engine.testing import write_tiny_native_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_native_model(tmp_path_factory.mktemp("tiny-model") / "model")
