"""End to end: `dgem-infill --ws` as a real process, found through its readiness line and token file."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from infill_server.websocket.server import READY_LINE

from .conftest import WAIT, assert_complete, collect, send

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "engine" / "weights" / "config.json"


async def start_cli(*args: str, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, list[str], str]:
    """Start the server; return it, the stderr lines so far, and the URL from its readiness line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lsp", "--ws", "--port", "0", *args,
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    prefix = READY_LINE.format(url="")
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(process.stderr.readline(), WAIT * 3)
        assert raw, f"server exited before it was ready: {lines}"
        lines.append(raw.decode().rstrip("\n"))
        if lines[-1].startswith(prefix):
            return process, lines, lines[-1].removeprefix(prefix)


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), WAIT)


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DGEM_INFILL_TOKEN"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


async def fill_once(url: str, token: str) -> None:
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=WAIT) as ws:
        await send(ws, type="infill", id=1, prefix="def add(a, b):\n    return ", suffix="\n", language="python")
        assert_complete((await collect(ws, {1}))[1])


async def test_cli_generates_a_private_token_file_prints_its_path_and_serves(tiny_model: Path, tmp_path: Path) -> None:
    process, lines, url = await start_cli("--model", str(tiny_model), "--device", "cpu", env=clean_env(tmp_path))
    try:
        token_file = tmp_path / "state" / "dgem-infill" / "ws-token"
        assert any(str(token_file) in line for line in lines), lines
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert url.startswith("ws://127.0.0.1:")
        await fill_once(url, token_file.read_text().strip())
    finally:
        assert await stop(process) == 0


async def test_cli_takes_the_token_from_the_environment_and_refuses_others(tiny_model: Path, tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "DGEM_INFILL_TOKEN": "from-the-environment"}
    process, _, url = await start_cli("--model", str(tiny_model), "--device", "cpu", env=env)
    try:
        assert not (tmp_path / "state").exists()  # no file written when the token is given
        await fill_once(url, "from-the-environment")
        with pytest.raises(InvalidStatus, match="401"):
            await fill_once(url, "guess")
    finally:
        assert await stop(process) == 0


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="the shipped model is not in engine/weights yet")
async def test_cli_serves_the_shipped_model(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "DGEM_INFILL_TOKEN": "shipped"}
    process, _, url = await start_cli("--device", "cpu", env=env)
    try:
        await fill_once(url, "shipped")
    finally:
        assert await stop(process) == 0
