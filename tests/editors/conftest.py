"""Fixtures for the real-editor tests: tools installed once per session, the model, artefact folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import ARTIFACTS, Model, ensure_editor_tools, shipped_model_present


@pytest.fixture(scope="session")
def editor_tools() -> None:
    ensure_editor_tools()


@pytest.fixture(scope="session")
def editor_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    if shipped_model_present():
        return Model(path=None, shipped=True)
    from engine.testing import write_tiny_native_model

    return Model(
        path=write_tiny_native_model(tmp_path_factory.mktemp("editor-model") / "model"), shipped=False
    )


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """artifacts/editors/<test name>/: screenshots and logs kept after the run (git-ignored)."""
    folder = ARTIFACTS / request.node.name.replace("[", "-").replace("]", "")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
