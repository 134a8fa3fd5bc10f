"""Fixtures: a real `dgem-infill --stdio` process with a tiny random model, driven by pytest-lsp as
VS Code and as Neovim (their recorded client capabilities).

Starting a server costs an interpreter plus torch, so `client` is shared by the whole session (one
per client kind); tests that use it work on their own document URI (`uri`). Tests that need their
own settings start a `fresh_client`. Every test module runs on the session's event loop.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_asyncio
import pytest_lsp
from lsp_harness import CLIENTS, SERVER_COMMAND, RawConnection, initialize_params, record_client_traffic
from pytest_lsp import ClientServerConfig, LanguageClient

from engine.testing import write_tiny_native_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_native_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def uri(request: pytest.FixtureRequest) -> str:
    """A document URI of this test's own, so tests sharing a server never meet."""
    return "file:///project/" + re.sub(r"\W+", "_", request.node.name) + ".py"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND), params=CLIENTS, scope="session")
async def client(request: pytest.FixtureRequest, lsp_client: LanguageClient, tiny_model: Path):
    """A client of each kind, initialized with the tiny model, shared by the session."""
    record_client_traffic(lsp_client)
    lsp_client.client_name = request.param  # type: ignore[attr-defined]
    options = {"model": str(tiny_model), "device": "cpu"}
    await lsp_client.initialize_session(initialize_params(request.param, options))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND), loop_scope="session")
async def fresh_client(lsp_client: LanguageClient):
    """A server of its own that the test initializes itself (to choose the client and options)."""
    record_client_traffic(lsp_client)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND), scope="session")
async def slow_client(lsp_client: LanguageClient, tiny_model: Path):
    """A VS Code client whose fills take many steps, so a test can act while one is running."""
    record_client_traffic(lsp_client)
    options = {"model": str(tiny_model), "device": "cpu", "steps": 256, "max_tokens": 256}
    await lsp_client.initialize_session(initialize_params("visual-studio-code", options))
    yield
    await lsp_client.shutdown_session()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def raw(tiny_model: Path):
    """A server spoken to in raw bytes (UTF-16 positions: the client offers no encodings)."""
    connection = await RawConnection.start({"model": str(tiny_model), "device": "cpu"})
    yield connection
    await connection.close()
