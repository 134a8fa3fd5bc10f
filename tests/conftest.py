"""Shared fixtures: a tiny random model directory (mechanics only, never quality)."""

from __future__ import annotations

import os

# One thread per torch process: tests run a test process and a server side by side on two cores, and
# spinning OpenMP threads that fight for them make tiny models ~50x slower. Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# float32 matrix products unless a test asks for bf16: the exact-computation checks use float32 tolerances,
# and the load-time timing that picks the CPU dtype must not make them depend on the machine or its load
os.environ.setdefault("DGEM_INFILL_DTYPE", "float32")
# eager DiffusionGemma passes unless a test compiles them: compiling at each load takes seconds on two cores
os.environ.setdefault("DGEM_INFILL_COMPILE", "off")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from engine.testing import write_tiny_native_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_native_model(tmp_path_factory.mktemp("tiny-model") / "model")
