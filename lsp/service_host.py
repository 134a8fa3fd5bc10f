"""The InfillService this server drives: its configuration, loading it with `$/progress`, and failures.

The service (and with it torch) is imported only when the model starts loading, in a worker thread:
`initialize` is answered in about a second instead of after the ten seconds torch can take to import,
so a client does not send its first requests to a server that has not finished starting.

Configuration comes from three places, each overriding the last: the command line, the client's
`initializationOptions`, and `workspace/didChangeConfiguration`. A bad value or a model that will not
load is reported with `window/showMessage` and the log; the server keeps answering (empty results)
until a good configuration arrives.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from infill_server.config import ConfigError, ServiceConfig
from infill_server.protocol import SETTINGS_SECTION

if TYPE_CHECKING:
    from infill_server.service import InfillService

log = logging.getLogger(__name__)

# Clients may wrap settings in a section (VS Code: {"dgemInfill": {...}}); both forms are accepted.


def _settings(values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        return {}
    if isinstance(values.get(SETTINGS_SECTION), Mapping):
        return dict(values[SETTINGS_SECTION])
    return dict(values)


class ServiceHost:
    def __init__(self, server: LanguageServer, config: ServiceConfig):
        self._server = server
        self.config = config
        self.service: InfillService | None = None  # created when loading starts
        self._loading: asyncio.Task[None] | None = None

    # -- configuration -------------------------------------------------------------------------

    def _merged(self, values: Any) -> ServiceConfig | None:
        """The current config with `values` applied, or None (reported) when they are invalid."""
        changes = _settings(values)
        if not changes:
            return self.config
        try:
            return self.config.merged(changes)
        except ConfigError as error:
            self.report(types.MessageType.Error, f"dgem-infill: invalid settings: {error}")
            return None

    def apply_initialization_options(self, options: Any) -> None:
        """Before the model loads, so the first load already uses the client's settings."""
        config = self._merged(options)
        if config is not None:
            self.config = config

    async def apply_settings(self, settings: Any) -> None:
        config = self._merged(settings)
        if config is None or config == self.config:
            return
        self.config = config
        if self._loading is None:
            return  # the first load will use it
        await self._await_loading()
        if self.service is None:
            return  # the service could not even be imported (already reported)
        try:
            await self._with_progress("dgem-infill: reloading the model", self.service.reconfigure(config))
        except Exception as error:  # noqa: BLE001 - any load failure is reported, never fatal
            self.report(types.MessageType.Error, f"dgem-infill: could not load the model: {error}")

    # -- loading --------------------------------------------------------------------------------

    def start_loading(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())

    async def _load(self) -> None:
        try:
            await self._with_progress("dgem-infill: loading the model", None)
        except Exception as error:  # noqa: BLE001 - the server keeps serving without a model
            self.report(types.MessageType.Error, f"dgem-infill: could not load the model: {error}")

    async def _await_loading(self) -> None:
        self.start_loading()
        assert self._loading is not None
        # shield: a cancelled request must not cancel the load the next request needs
        await asyncio.shield(self._loading)

    async def ready(self) -> InfillService | None:
        """The loaded service, or None when loading failed (already reported)."""
        await self._await_loading()
        return self.service if self.service is not None and self.service.state == "ready" else None

    def lookup(self, document: str, prefix: str, suffix: str) -> str | None:
        """The rest of a suggestion the user is typing through (see InfillService.lookup)."""
        return self.service.lookup(document, prefix, suffix) if self.service is not None else None

    async def _with_progress(self, title: str, work: Any) -> None:
        """Run `work` (the reconfigure coroutine, or None for a first load) inside a progress report."""
        token = await self._create_progress_token()
        progress = self._server.work_done_progress
        if token is not None:
            progress.begin(token, types.WorkDoneProgressBegin(title=title, percentage=0, cancellable=False))
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def report(message: str, fraction: float) -> None:
            if token is None:
                return
            value = types.WorkDoneProgressReport(
                message=message, percentage=round(100 * min(max(fraction, 0), 1))
            )
            if threading.get_ident() == loop_thread:
                progress.report(token, value)
            else:  # the service may report from its loader thread
                loop.call_soon_threadsafe(progress.report, token, value)

        try:
            if work is None:
                service_module = await asyncio.to_thread(importlib.import_module, "infill_server.service")
                self.service = service_module.InfillService(self.config)
                await self.service.load(report)
            else:
                await work
        finally:
            if token is not None:
                ok = self.service is not None and self.service.state == "ready"
                progress.end(token, types.WorkDoneProgressEnd(message="ready" if ok else "failed"))

    async def _create_progress_token(self) -> str | None:
        """Server-initiated progress needs the client's consent (window.workDoneProgress)."""
        window = self._server.client_capabilities.window
        if window is None or not window.work_done_progress:
            return None
        token = f"dgem-infill-load-{uuid.uuid4()}"
        try:
            await self._server.work_done_progress.create_async(token)
        except Exception as error:  # noqa: BLE001 - a client that refuses still gets a loaded model
            log.warning("client refused a progress token: %s", error)
            return None
        return token

    def close(self) -> None:
        if self.service is not None:
            self.service.close()

    # -- reporting ------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        """To the log only: for per-request problems that must not pop up on every keystroke."""
        log.warning(message)
        self._server.window_log_message(
            types.LogMessageParams(type=types.MessageType.Warning, message=message)
        )

    def report(self, kind: types.MessageType, message: str) -> None:
        """To the user (showMessage) and to the log (logMessage and stderr)."""
        log.error(message) if kind == types.MessageType.Error else log.warning(message)
        # the log line first: a client that reacts to the pop-up then already has it in its log
        self._server.window_log_message(types.LogMessageParams(type=kind, message=message))
        self._server.window_show_message(types.ShowMessageParams(type=kind, message=message))
