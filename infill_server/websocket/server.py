"""The websocket server: many clients, each with several requests in flight, sharing one InfillService.

Life of a connection:
1. The handshake is checked before the upgrade (auth.HandshakeGuard): Origin, then token; a refused
   client gets an HTTP status (403 / 401), never a websocket.
2. A reader loop validates each frame (messages.parse). A bad frame gets an `error` and the loop goes on.
3. Each infill runs as its own task awaiting the service; refinements and the result go into the
   connection's Outbox, and one writer task per connection sends them, so a slow reader only slows itself.
4. `cancel` cancels the request's task (the service stops denoising within one step) and answers
   `error` code `cancelled`. Every infill ends in exactly one `result` or `error`.
5. Idle connections (nothing received and nothing in flight for idle_timeout) are closed; half-open ones
   are found by websockets' keepalive pings (no pong within ping_timeout) and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from infill_server.config import ServiceConfig
from infill_server.service import InfillJob, InfillService, ServiceError, Update
from infill_server.websocket import messages
from infill_server.websocket.auth import HandshakeGuard, resolve_token
from infill_server.websocket.messages import CancelMessage, InfillMessage, MessageError, RequestId
from infill_server.websocket.outbox import Outbox

log = logging.getLogger(__name__)

READY_LINE = "dgem-infill ws listening on {url}"


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server. Defaults suit one user's editor tools on one machine."""

    max_frame_bytes: int = 1 << 20  # larger frames get `frame_too_large`, the connection stays
    # Frames beyond this are not even read into memory: websockets closes with 1009 (message too big).
    hard_frame_bytes: int = 4 << 20
    max_in_flight: int = 8  # infill requests per connection
    max_connections: int = 64
    idle_timeout: float | None = 300.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float | None = 10.0  # a client that connects and never finishes the handshake
    close_timeout: float | None = 5.0  # how long a closing peer gets to answer before the socket is cut
    refinement_backlog: int = 64  # unsent refinements kept per request before coalescing
    max_final_backlog: int = 256  # unsent results/errors before the connection stops reading
    write_limit: int = 1 << 16  # bytes buffered in the socket before a send waits
    # SO_SNDBUF per connection; None keeps the OS default (which may grow to megabytes per slow client).
    send_buffer_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.hard_frame_bytes < self.max_frame_bytes:
            raise ValueError("hard_frame_bytes must be at least max_frame_bytes")
        if self.max_in_flight < 1 or self.max_connections < 1:
            raise ValueError("max_in_flight and max_connections must be at least 1")


@dataclass(eq=False)
class _Request:
    task: asyncio.Task[None] = field(init=False)
    cancelled_by_client: bool = False


@dataclass
class _Connection:
    """One client: its reader loop, writer task and requests in flight."""

    ws: ServerConnection
    service: InfillService
    limits: Limits
    number: int
    outbox: Outbox = field(init=False)
    requests: dict[RequestId, _Request] = field(default_factory=dict)
    _idle_timer: asyncio.TimerHandle | None = None
    _closing: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.limits.refinement_backlog, self.limits.max_final_backlog)

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write(), name=f"ws{self.number}-writer")
        try:
            await self._read()
        finally:
            self._stop_idle_timer()
            for request in list(self.requests.values()):
                request.task.cancel()
            await asyncio.gather(*(r.task for r in self.requests.values()), return_exceptions=True)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _read(self) -> None:
        self._restart_idle_timer()
        while True:
            if not self.outbox.has_room():
                await self.outbox.wait_for_room()  # the client is not reading: stop reading from it too
            try:
                frame = await self.ws.recv()
            except ConnectionClosed:
                return
            self._restart_idle_timer()
            self._handle(frame)

    def _handle(self, frame: str | bytes) -> None:
        try:
            if isinstance(frame, bytes):
                raise MessageError(messages.BINARY_FRAME, "binary frames are not accepted; send JSON as text")
            # Encoded length, because the limit is about bytes on the wire; count cheaply first.
            if len(frame) > self.limits.max_frame_bytes or len(frame.encode()) > self.limits.max_frame_bytes:
                raise MessageError(
                    messages.FRAME_TOO_LARGE, f"frames are limited to {self.limits.max_frame_bytes} bytes"
                )
            message = messages.parse(frame)
        except MessageError as exc:
            self.outbox.put_final(messages.error(exc.code, exc.message, exc.id))
            return
        if isinstance(message, CancelMessage):
            self._cancel(message.id)
        else:
            self._start(message)

    def _start(self, message: InfillMessage) -> None:
        id = message.id
        if id in self.requests:
            self._fail(id, messages.DUPLICATE_ID, "a request with this id is still in flight")
            return
        if len(self.requests) >= self.limits.max_in_flight:
            self._fail(
                id,
                messages.TOO_MANY_REQUESTS,
                f"at most {self.limits.max_in_flight} requests may be in flight per connection",
            )
            return
        # Requests naming the same uri share a document key, so a newer one supersedes the older and
        # reuses its prefix cache; the key is scoped to this connection so clients never touch each
        # other's requests.
        name = f"uri:{message.uri}" if message.uri is not None else f"id:{id!r}"
        job = InfillJob(
            document=f"ws{self.number}:{name}",
            prefix=message.prefix,
            suffix=message.suffix,
            language=message.language,
            max_tokens=message.max_tokens,
            steps=message.steps,
            rewrite=message.rewrite,
            selection=message.selection,
            open_documents=message.open_documents,
        )
        request = _Request()
        request.task = asyncio.create_task(self._infill(id, job, request), name=f"ws{self.number}-{id!r}")
        self.requests[id] = request
        self._stop_idle_timer()

    async def _infill(self, id: RequestId, job: InfillJob, request: _Request) -> None:
        def on_update(update: Update) -> None:
            # Updates are queued from the engine thread and may land after a cancel, or after the id
            # was reused by a newer request: only the live, uncancelled request may speak for the id.
            if self.requests.get(id) is request and not request.cancelled_by_client:
                self.outbox.put_refinement(id, update.step, update.text)

        try:
            result = await self.service.infill(job, on_update)
        except asyncio.CancelledError:
            if request.cancelled_by_client:
                self._fail(id, messages.CANCELLED, "cancelled by the client")
            elif asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # the connection is closing
            else:
                # The service cancelled it, not us: a newer request for the same uri took its place.
                self._fail(id, messages.SUPERSEDED, "superseded by a newer request for the same uri")
        except ServiceError as exc:  # no model, or the engine refused the request
            self._fail(id, messages.ENGINE_ERROR, str(exc))
        except Exception as exc:
            log.exception("infill request %r failed", id)
            self._fail(id, messages.INTERNAL_ERROR, f"{type(exc).__name__}: the server logged the details")
        else:
            self.outbox.put_final(messages.result(id, result.text, result.steps, result.ms))
        finally:
            if self.requests.get(id) is request:
                del self.requests[id]
            if not self.requests:
                self._restart_idle_timer()

    def _cancel(self, id: RequestId) -> None:
        request = self.requests.get(id)
        if request is None:
            self._fail(id, messages.UNKNOWN_ID, "no request with this id is in flight (it may have finished)")
            return
        if not request.cancelled_by_client:
            request.cancelled_by_client = True
            self.outbox.drop_refinements(id)
            request.task.cancel()

    def _fail(self, id: RequestId | None, code: str, message: str) -> None:
        if id is not None:
            self.outbox.drop_refinements(id)
        self.outbox.put_final(messages.error(code, message, id))

    async def _write(self) -> None:
        closed = False
        while True:
            frame = await self.outbox.get()
            if closed:
                continue  # keep draining, so a reader waiting for room wakes up and sees the close
            try:
                await self.ws.send(frame)
            except ConnectionClosed:
                closed = True

    def _restart_idle_timer(self) -> None:
        self._stop_idle_timer()
        if self.limits.idle_timeout is not None and not self.requests:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(self.limits.idle_timeout, self._close_idle)

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_idle(self) -> None:
        self._idle_timer = None
        self._closing = asyncio.create_task(self.ws.close(1000, "idle timeout"))


class _LiveConnections:
    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Condition()

    async def add(self, delta: int) -> None:
        async with self.changed:
            self.count += delta
            self.changed.notify_all()


class WsServer:
    """A running websocket server; `url` has the port actually bound (useful with port 0)."""

    def __init__(self, server: Server, host: str, live: _LiveConnections) -> None:
        self._server = server
        self._live = live
        self.host = host
        self.port: int = server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Connections whose handler is still running (past the handshake, not yet fully closed)."""
        return self._live.count

    async def wait_for_connection_count(self, count: int) -> None:
        """Return once exactly `count` connections are live (lets tests observe closes without sleeping)."""
        async with self._live.changed:
            await self._live.changed.wait_for(lambda: self._live.count == count)

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


@contextlib.asynccontextmanager
async def open_server(
    service: InfillService,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = "",
    allow_origins: Iterable[str] = (),
    limits: Limits | None = None,
) -> AsyncIterator[WsServer]:
    """Start listening and yield the running server; closes every connection on exit."""
    if not token:
        raise ValueError("a token is required; see resolve_token()")
    limits = limits or Limits()
    guard = HandshakeGuard(token, allow_origins)
    numbers = itertools.count(1)
    live = _LiveConnections()

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        refusal = guard(connection, request)
        if refusal is None and live.count >= limits.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections.\n")
        return refusal

    async def handler(ws: ServerConnection) -> None:
        if limits.send_buffer_bytes is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.send_buffer_bytes)
        await live.add(1)
        try:
            await _Connection(ws, service, limits, next(numbers)).serve()
        finally:
            await live.add(-1)

    server = await websockets_serve(
        handler,
        host,
        port,
        process_request=process_request,
        max_size=limits.hard_frame_bytes,
        max_queue=4,  # frames buffered unread; each may be up to hard_frame_bytes
        write_limit=limits.write_limit,
        open_timeout=limits.open_timeout,
        ping_interval=limits.ping_interval,
        ping_timeout=limits.ping_timeout,
        close_timeout=limits.close_timeout,
        server_header=None,
    )
    running = WsServer(server, host, live)
    try:
        yield running
    finally:
        await running.close()


async def serve(
    service: InfillService,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str = "",
    allow_origins: Iterable[str] = (),
    limits: Limits | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled. Readiness: prints READY_LINE to stderr, then calls `ready(url)`."""
    async with open_server(service, host, port, token, allow_origins, limits) as server:
        print(READY_LINE.format(url=server.url), file=sys.stderr, flush=True)
        if ready is not None:
            ready(server.url)
        await server.serve_forever()


def run(
    config: ServiceConfig,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    allow_origins: tuple[str, ...] = (),
    ready: Callable[[str], None] | None = None,
) -> None:
    """The `dgem-infill --ws` entry point: resolve the token, load the model, serve until SIGINT/SIGTERM."""
    secret, token_path = resolve_token(token)
    if token_path is not None:
        print(f"dgem-infill ws token in {token_path} (readable only by you)", file=sys.stderr, flush=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"warning: listening on {host} makes the server reachable from other machines; "
            "the token travels unencrypted",
            file=sys.stderr,
            flush=True,
        )

    async def main() -> None:
        service = InfillService(config)
        await service.load()
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await serve(service, host, port, secret, allow_origins, ready=ready)
        finally:
            service.close()

    asyncio.run(main())
