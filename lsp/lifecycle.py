"""Session lifecycle: settings at `initialize`, model loading at `initialized`, and settings changes."""

from __future__ import annotations

from lsprotocol import types

from lsp.server import InfillLanguageServer


def initialize(ls: InfillLanguageServer, params: types.InitializeParams) -> None:
    ls.host.apply_initialization_options(params.initialization_options)


def initialized(ls: InfillLanguageServer, params: types.InitializedParams) -> None:
    # Loading starts after the handshake, so the client can show $/progress for it.
    ls.host.start_loading()


async def did_change_configuration(
    ls: InfillLanguageServer, params: types.DidChangeConfigurationParams
) -> None:
    await ls.host.apply_settings(params.settings)


def shutdown(ls: InfillLanguageServer, params: None) -> None:
    ls.host.close()


def register(ls: InfillLanguageServer) -> None:
    ls.feature(types.INITIALIZE)(initialize)
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    ls.feature(types.SHUTDOWN)(shutdown)
