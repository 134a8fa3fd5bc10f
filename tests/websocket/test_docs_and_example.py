"""The JSON schema, the docs and the example client agree with the server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from infill_server import protocol
from infill_server.websocket import messages
from infill_server.websocket.server import WsServer

from .conftest import TOKEN, WAIT

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "websocket.schema.json").read_text())
DEFS = SCHEMA["$defs"]


def test_schema_lists_exactly_the_error_codes_the_server_uses() -> None:
    assert DEFS["Error"]["properties"]["code"]["enum"] == list(messages.ERROR_CODES)


def test_schema_message_types_are_the_protocol_names() -> None:
    consts = {name: DEFS[name]["properties"]["type"]["const"] for name in
              ("InfillText", "InfillDocument", "Cancel", "Refinement", "Result", "Error")}
    assert consts == {
        "InfillText": protocol.WS_INFILL, "InfillDocument": protocol.WS_INFILL, "Cancel": protocol.WS_CANCEL,
        "Refinement": protocol.WS_REFINEMENT, "Result": protocol.WS_RESULT, "Error": protocol.WS_ERROR,
    }


def test_schema_fields_match_the_validator() -> None:
    assert set(DEFS["InfillText"]["properties"]) == messages.INFILL_TEXT_FIELDS
    assert set(DEFS["InfillDocument"]["properties"]) == messages.INFILL_DOCUMENT_FIELDS
    assert set(DEFS["Cancel"]["properties"]) == messages.CANCEL_FIELDS
    assert set(DEFS["Refinement"]["properties"]) == set(messages.refinement("i", 1, "t"))
    assert set(DEFS["Result"]["properties"]) == set(messages.result("i", "t", 1, 1.0))
    assert set(DEFS["Error"]["properties"]) == set(messages.error("c", "m", "i"))


def test_schema_limits_match_the_validator() -> None:
    options = DEFS["InfillOptions"]["properties"]
    assert options["max_tokens"]["maximum"] == messages.MAX_TOKENS_LIMIT
    assert options["steps"]["maximum"] == messages.MAX_STEPS_LIMIT
    assert options["uri"]["maxLength"] == options["language"]["maxLength"] == messages.MAX_NAME_LENGTH
    string_id, int_id = DEFS["RequestId"]["oneOf"]
    assert string_id["maxLength"] == messages.MAX_ID_LENGTH
    assert int_id["maximum"] == messages.MAX_ID_INT == -int_id["minimum"]


def test_docs_mention_every_error_code_and_limit() -> None:
    docs = (ROOT / "docs" / "WEBSOCKET.md").read_text()
    for code in messages.ERROR_CODES:
        assert f"`{code}`" in docs, code
    for flag in ("--ws", "--host", "--port", "--token", "--allow-origin", "DGEM_INFILL_TOKEN"):
        assert flag in docs, flag


async def run_example(server: WsServer, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "ws_client.py"), "--url", server.url, "--token", TOKEN, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    return process.returncode, out.decode(), err.decode()


async def test_example_client_streams_a_fill_and_prints_the_result(server: WsServer) -> None:
    code, out, err = await run_example(server, "--max-tokens", "4", "--steps", "4")
    assert code == 0, err
    assert "step   1:" in out and "steps," in out


async def test_example_client_fills_inside_a_file_with_emoji_at_a_utf16_column(
    server: WsServer, tmp_path: Path
) -> None:
    source = tmp_path / "app.py"
    source.write_text("greeting = '😀'\nprint(greeting)\n", encoding="utf-8")
    code, out, err = await run_example(
        server, "--file", str(source), "--line", "0", "--character", "15", "--language", "python",
        "--max-tokens", "3",
    )
    assert code == 0, err


async def test_example_client_can_cancel_and_reports_the_error(server: WsServer) -> None:
    code, _, err = await run_example(server, "--max-tokens", "64", "--steps", "64", "--cancel-after", "1")
    assert code == 1
    assert "error cancelled" in err
