"""Shared fixtures: a tiny random model directory (mechanics only, never quality)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.testing import write_tiny_native_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_native_model(tmp_path_factory.mktemp("tiny-model") / "model")
