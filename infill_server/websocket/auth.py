"""Who may connect: a shared secret token, and for browsers an allowed Origin.

The threat is a web page open in the user's browser: it can open a websocket to 127.0.0.1, and the
browser sends its Origin. So every connection needs the token, and any connection that carries an
Origin (only browsers do) must come from an origin the user allowed. DNS rebinding is covered by the
same check, because a rebound page still sends its own Origin.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

TOKEN_ENV = "DGEM_INFILL_TOKEN"
TOKEN_FILE_NAME = "ws-token"


def default_token_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_STATE_HOME/dgem-infill/ws-token`, falling back to `~/.local/state` as the XDG spec says."""
    env = os.environ if environ is None else environ
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "dgem-infill" / TOKEN_FILE_NAME


def resolve_token(
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> tuple[str, Path | None]:
    """Return (token, file it lives in or None).

    Order: the explicit `token` (--token), then $DGEM_INFILL_TOKEN, then the token file, which is created
    with a fresh random token when missing. An existing file is reused only if nobody but the user can
    read or write it; otherwise it is replaced, so a token another account could have read is never used.
    """
    env = os.environ if environ is None else environ
    if token is not None:
        return _checked(token, "--token"), None
    if env.get(TOKEN_ENV):
        return _checked(env[TOKEN_ENV], TOKEN_ENV), None
    path = path or default_token_path(env)
    existing = _read_private_token(path)
    if existing is not None:
        return existing, path
    fresh = secrets.token_urlsafe(32)
    _write_private(path, fresh)
    return fresh, path


def _checked(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise ValueError(f"{source}: the token is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        # It travels in an HTTP header and a query string; whitespace would be cut off by either.
        raise ValueError(f"{source}: the token must not contain spaces or control characters")
    return token


def _read_private_token(path: Path) -> str | None:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    private = stat.S_IMODE(info.st_mode) & 0o077 == 0 and info.st_uid == os.getuid()
    return text if private and text and not any(ch.isspace() for ch in text) else None


def _write_private(path: Path, token: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start (not chmod-ed later), so there is no moment where others can read it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def tokens_equal(presented: str, expected: str) -> bool:
    """Constant-time comparison, so response timing does not leak how much of a guess was right.

    Both sides are hashed first so that the comparison does not leak the token's length either.
    """
    digest = lambda s: hashlib.sha256(s.encode("utf-8", "surrogatepass")).digest()  # noqa: E731
    return hmac.compare_digest(digest(presented), digest(expected))


def normalize_origin(origin: str) -> str:
    """Origins compare case-insensitively and without a trailing slash (`http://Localhost:3000/`)."""
    return origin.strip().rstrip("/").lower()


class HandshakeGuard:
    """The `process_request` hook: refuses a connection before it is upgraded to a websocket."""

    def __init__(self, token: str, allow_origins: Iterable[str] = ()) -> None:
        self._token = token
        self._origins = frozenset(normalize_origin(o) for o in allow_origins)

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        origins = request.headers.get_all("Origin")
        if len(origins) > 1:
            return connection.respond(HTTPStatus.BAD_REQUEST, "More than one Origin header.\n")
        if origins and normalize_origin(origins[0]) not in self._origins:
            return connection.respond(
                HTTPStatus.FORBIDDEN,
                "Origin not allowed: start the server with --allow-origin ORIGIN for this web page.\n",
            )
        presented = self._presented_token(request)
        if presented is None or not tokens_equal(presented, self._token):
            what = "Missing" if presented is None else "Wrong"
            response = connection.respond(
                HTTPStatus.UNAUTHORIZED,
                f"{what} token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN.\n",
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return None

    @staticmethod
    def _presented_token(request: Request) -> str | None:
        for value in request.headers.get_all("Authorization"):
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        values = parse_qs(urlsplit(request.path).query).get("token", [])
        return values[0] if len(values) == 1 and values[0] else None
