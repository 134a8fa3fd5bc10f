"""A minimal client of the dgem-infill websocket API: fill a hole and watch it sharpen.

Start the server, then run this against it:

    dgem-infill --ws &                                   # prints the token file's path
    python examples/ws_client.py --prefix 'def add(a, b):\n    return ' --suffix '\n'
    python examples/ws_client.py --file app.py --line 10 --character 4 --language python
    python examples/ws_client.py --file app.py --line 10 --character 4 --cancel-after 2

The token is taken from --token, else $DGEM_INFILL_TOKEN, else the file the server wrote
($XDG_STATE_HOME/dgem-infill/ws-token). Only the `websockets` package is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect


def default_token() -> str:
    if os.environ.get("DGEM_INFILL_TOKEN"):
        return os.environ["DGEM_INFILL_TOKEN"]
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(state) / "dgem-infill" / "ws-token"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        sys.exit(f"no token: pass --token, set DGEM_INFILL_TOKEN, or start the server to create {path}")


def unescape(text: str) -> str:
    """Lets a shell argument carry newlines and tabs as \\n and \\t."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def request_from(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"type": "infill", "id": "example-1"}
    if args.file:
        # The document form: the server splits at (line, character), character in UTF-16 units.
        request["document"] = Path(args.file).read_text(encoding="utf-8")
        request["position"] = {"line": args.line, "character": args.character}
        request["uri"] = Path(args.file).resolve().as_uri()
    else:
        request["prefix"] = unescape(args.prefix)
        request["suffix"] = unescape(args.suffix)
    for option in ("language", "max_tokens", "steps"):
        if getattr(args, option) is not None:
            request[option] = getattr(args, option)
    return request


async def main(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.token or default_token()}"}
    async with connect(args.url, additional_headers=headers) as ws:
        request = request_from(args)
        await ws.send(json.dumps(request))
        async for frame in ws:
            message = json.loads(frame)
            if message.get("id") != request["id"]:
                continue
            if message["type"] == "refinement":
                # Redraw one status line per step: the ghost text as the editor would show it.
                print(f"\rstep {message['step']:>3}: {json.dumps(message['text'])[:100]:<100}", end="", flush=True)
                if args.cancel_after is not None and message["step"] >= args.cancel_after:
                    await ws.send(json.dumps({"type": "cancel", "id": request["id"]}))
            elif message["type"] == "result":
                print(f"\n--- {message['steps']} steps, {message['ms']:.0f} ms ---")
                print(message["text"])
                return 0
            else:
                print(f"\nerror {message['code']}: {message['message']}", file=sys.stderr)
                return 1
    return 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765", help="server URL (default: %(default)s)")
    parser.add_argument("--token", help="token (default: $DGEM_INFILL_TOKEN, else the server's token file)")
    parser.add_argument("--prefix", default="def add(a, b):\\n    return ", help="text before the hole")
    parser.add_argument("--suffix", default="\\n", help="text after the hole")
    parser.add_argument("--file", help="fill inside this file instead, at --line/--character")
    parser.add_argument("--line", type=int, default=0, help="0-based line (with --file)")
    parser.add_argument("--character", type=int, default=0, help="0-based UTF-16 column (with --file)")
    parser.add_argument("--language", help="python, javascript, typescript, tsx, go, rust")
    parser.add_argument("--max-tokens", dest="max_tokens", type=int, help="hole length in tokens")
    parser.add_argument("--steps", type=int, help="denoising steps")
    parser.add_argument("--cancel-after", dest="cancel_after", type=int, help="send cancel after this step")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
