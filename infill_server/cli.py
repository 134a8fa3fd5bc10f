"""The `dgem-infill` command. The transport is chosen here and nowhere else.

    dgem-infill --stdio                           language server on stdin/stdout
    dgem-infill --ws [--host H] [--port P]        websocket API
    dgem-infill complete FILE:LINE:COL            fill at the cursor, refinements shown live
    dgem-infill complete FILE --select L1:C1-L2:C2   regenerate a selection
    dgem-infill batch IN.jsonl [-o OUT.jsonl]     {"id","prefix","suffix"} lines -> {"id","middle","steps","ms"}
    dgem-infill bench [--quick]                   latency benchmarks

Lines and columns are 1-based and count characters. The language server lives in `lsp/`, which imports
this module; it hands its stdio entry point in (`stdio_server`), so imports keep pointing one way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from infill_server.config import LENGTHS, ConfigError, ServiceConfig
from infill_server.errors import EngineError, ServiceError
from infill_server.syntax import language_for
from infill_server.syntax.recall import MAX_OTHER_DOCUMENTS

if TYPE_CHECKING:
    from infill_server.service import InfillService, Update

# infill_server.service (and with it torch) is imported inside the commands that fill: `--stdio` must
# answer `initialize` without waiting seconds for torch.

StdioServer = Callable[[ServiceConfig], None]

MAX_FILE_BYTES = 16 * 1024 * 1024


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", metavar="PATH_OR_ID", help="model directory or Hugging Face id (default: shipped)")
    common.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where the model runs (default: auto)")
    common.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    common.add_argument("--max-tokens", type=int, help="hole slots (default: sized from the syntax at the cursor)")
    common.add_argument("--length", choices=LENGTHS,
                        help="a single-line fill's length: the model's default (auto), one fill at the probed "
                             "length (probe), or five sizes ranked by likelihood (the shipped model's default: better)")

    parser = argparse.ArgumentParser(
        prog="dgem-infill",
        description="Local code infilling with a bidirectional diffusion model.",
        parents=[common],
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="run the language server on stdin/stdout")
    mode.add_argument("--ws", action="store_true", help="run the websocket API")
    parser.add_argument("--host", default="127.0.0.1", help="websocket bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="websocket port (default: 8765; 0 picks one)")
    parser.add_argument("--token", help="websocket token (default: $DGEM_INFILL_TOKEN, else generated)")
    parser.add_argument(
        "--allow-origin", action="append", default=[], metavar="ORIGIN", help="browser Origin allowed (repeatable)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    complete = commands.add_parser("complete", parents=[common], help="fill at FILE:LINE:COL", argument_default=argparse.SUPPRESS)
    complete.add_argument("location", metavar="FILE:LINE:COL", help="cursor position (1-based), or FILE with --select")
    complete.add_argument("--select", metavar="L1:C1-L2:C2", help="regenerate this range instead")
    complete.add_argument("--language", help="language id (default: from the file extension)")
    complete.add_argument("--open", nargs="+", default=[], metavar="FILE",
                          help="other files, as if open beside it: the fill may take a line from them")

    batch = commands.add_parser("batch", parents=[common], help="fill JSON lines", argument_default=argparse.SUPPRESS)
    batch.add_argument("input", metavar="IN.jsonl", help='lines of {"id","prefix","suffix"} ("-" for stdin)')
    batch.add_argument("-o", "--output", metavar="OUT.jsonl", help="where results go (default: stdout)")

    bench = commands.add_parser("bench", parents=[common], help="latency benchmarks", argument_default=argparse.SUPPRESS)
    bench.add_argument("--quick", action="store_true", help="a CPU run under two minutes")
    bench.add_argument("--output", metavar="DIR", help="write JSON results (and plots) here")
    bench.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    bench.add_argument("--accuracy", type=int, metavar="N", help="held-out holes for exact match (shipped model)")
    bench.add_argument("--smoke", action="store_true", help="tiny shapes and one or two runs (tests)")
    return parser


def service_config(args: argparse.Namespace) -> ServiceConfig:
    values = {
        "model": getattr(args, "model", None),
        "device": getattr(args, "device", None),
        "steps": getattr(args, "steps", None),
        "length": getattr(args, "length", None),
    }
    config = ServiceConfig.from_dict({k: v for k, v in values.items() if v is not None})
    max_tokens = getattr(args, "max_tokens", None)
    if max_tokens is not None:
        config = config.replace(max_tokens=max(max_tokens, 1))
    return config


# ---- complete ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    path: Path
    text: str


def read_document(path: Path) -> Document:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: {len(data) // (1024 * 1024)} MB is more than the {MAX_FILE_BYTES // (1024 * 1024)} MB limit")
    if b"\0" in data[:8192]:
        raise UsageError(f"{path}: looks binary (contains NUL bytes); only text files can be filled")
    try:
        return Document(path, data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def offset_of(document: Document, line: int, column: int) -> int:
    """1-based line/column (characters) -> index into the text; past-the-end is an error."""
    lines = document.text.split("\n")
    if line < 1 or line > len(lines):
        raise UsageError(f"{document.path}: line {line} is outside the file (1..{len(lines)})")
    width = len(lines[line - 1])
    if column < 1 or column > width + 1:
        raise UsageError(f"{document.path}:{line}: column {column} is outside the line (1..{width + 1})")
    return sum(len(text) + 1 for text in lines[: line - 1]) + column - 1


def parse_location(location: str, select: str | None) -> tuple[Path, tuple[int, int] | None]:
    if select is not None:
        return Path(location), None
    match = re.fullmatch(r"(.+):(\d+):(\d+)", location)
    if not match:
        raise UsageError(f"{location}: expected FILE:LINE:COL (1-based), or FILE with --select L1:C1-L2:C2")
    return Path(match[1]), (int(match[2]), int(match[3]))


def parse_selection(document: Document, select: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+):(\d+)-(\d+):(\d+)", select)
    if not match:
        raise UsageError(f"--select {select}: expected L1:C1-L2:C2 (1-based)")
    start = offset_of(document, int(match[1]), int(match[2]))
    end = offset_of(document, int(match[3]), int(match[4]))
    if end < start:
        raise UsageError(f"--select {select}: the range ends before it starts")
    return start, end


class LiveView:
    """Redraws the cursor's line with the current fill after every step (TTY), or prints only the end."""

    GREY, RESET = "\x1b[90m", "\x1b[0m"

    def __init__(self, stream: IO[str], before: str, after: str):
        self.stream = stream
        self.live = stream.isatty()
        self.before = before.rsplit("\n", 1)[-1]
        self.after = after.split("\n", 1)[0]
        self.drawn_lines = 0

    def __call__(self, update: Update) -> None:
        if not self.live:
            return
        if self.drawn_lines:
            self.stream.write(f"\x1b[{self.drawn_lines}F\x1b[J")  # back to the first drawn line, clear below
        body = f"{self.before}{self.GREY}{update.text}{self.RESET}{self.after}"
        status = f"{self.GREY}-- step {update.step}{' (done)' if update.done else ''} --{self.RESET}"
        self.stream.write(f"{body}\n{status}\n")
        self.stream.flush()
        self.drawn_lines = body.count("\n") + 2


async def run_complete(args: argparse.Namespace, out: IO[str]) -> int:
    from infill_server.service import InfillJob, InfillService

    path, cursor = parse_location(args.location, getattr(args, "select", None))
    document = read_document(path)
    if cursor is not None:
        start = end = offset_of(document, *cursor)
    else:
        start, end = parse_selection(document, args.select)
    language = language_for(getattr(args, "language", None), str(path))
    job = InfillJob(
        document=str(path.resolve()),
        prefix=document.text[:start],
        suffix=document.text[end:],
        language=language,
        max_tokens=getattr(args, "max_tokens", None),
        steps=getattr(args, "steps", None),
        rewrite=cursor is None,
        selection=document.text[start:end],
        open_documents=tuple(read_document(Path(other)).text for other in getattr(args, "open", [])),
    )
    service = InfillService(service_config(args))
    await service.load(progress_printer(sys.stderr))
    view = LiveView(out, job.prefix, job.suffix)
    result = await service.infill(job, view)
    if not view.live:
        out.write(result.text + ("\n" if not result.text.endswith("\n") else ""))
    else:
        out.write(f"{LiveView.GREY}{result.steps} steps, {result.ms:.0f} ms{LiveView.RESET}\n")
    return 0


def progress_printer(stream: IO[str]) -> Callable[[str, float], None]:
    def show(message: str, fraction: float) -> None:
        stream.write(f"dgem-infill: {message} [{fraction:.0%}]\n")
        stream.flush()

    return show


# ---- batch ------------------------------------------------------------------------------------


async def run_batch(args: argparse.Namespace, out: IO[str]) -> int:
    from infill_server.service import InfillService

    source = sys.stdin if args.input == "-" else _open_input(Path(args.input))
    target = open(args.output, "w", encoding="utf-8") if getattr(args, "output", None) else out  # noqa: SIM115
    service = InfillService(service_config(args))
    await service.load(progress_printer(sys.stderr))
    failures = 0
    try:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            record = await _batch_line(service, line, number, args)
            failures += "error" in record
            target.write(json.dumps(record, ensure_ascii=False) + "\n")
            target.flush()
    finally:
        if target is not out:
            target.close()
    return 1 if failures else 0


def _open_input(path: Path) -> IO[str]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path.open(encoding="utf-8")


async def _batch_line(service: InfillService, line: str, number: int, args: argparse.Namespace) -> dict:
    from infill_server.service import InfillJob

    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        return {"line": number, "error": f"invalid JSON: {error.msg}"}
    if not isinstance(item, dict) or not isinstance(item.get("prefix"), str) or not isinstance(item.get("suffix", ""), str):
        return {"id": item.get("id") if isinstance(item, dict) else None, "line": number,
                "error": 'expected {"id", "prefix": string, "suffix": string}'}
    open_documents = item.get("open_documents", [])
    if not isinstance(open_documents, list) or not all(isinstance(text, str) for text in open_documents):
        return {"id": item.get("id"), "line": number, "error": "open_documents: expected an array of strings"}
    max_tokens = item.get("max_tokens", getattr(args, "max_tokens", None))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0):
        return {"id": item.get("id"), "line": number, "error": "max_tokens: expected an integer >= 0"}
    job = InfillJob(
        document=f"batch:{number}",
        prefix=item["prefix"],
        suffix=item.get("suffix", ""),
        language=language_for(item.get("language"), None) if isinstance(item.get("language"), str) else None,
        max_tokens=max_tokens,
        steps=getattr(args, "steps", None),
        open_documents=tuple(open_documents[:MAX_OTHER_DOCUMENTS]),
    )
    started = time.perf_counter()
    result = await service.infill(job)
    return {"id": item.get("id"), "middle": result.text, "steps": result.steps,
            "ms": round((time.perf_counter() - started) * 1000, 1)}


# ---- entry ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, stdio_server: StdioServer | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = dispatch(parser, args, stdio_server)
    except (UsageError, ConfigError, EngineError, ServiceError) as error:
        print(f"dgem-infill: {error}", file=sys.stderr)
        status = 2 if isinstance(error, UsageError | ConfigError) else 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


def dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, stdio_server: StdioServer | None) -> int:
    if args.stdio:
        if stdio_server is None:
            raise UsageError("--stdio needs the language server: run the `dgem-infill` console script")
        stdio_server(service_config(args))
        return 0
    if args.ws:
        from infill_server.websocket.server import run

        run(service_config(args), args.host, args.port, args.token or os.environ.get("DGEM_INFILL_TOKEN"),
            tuple(args.allow_origin))
        return 0
    if args.command == "complete":
        return asyncio.run(run_complete(args, sys.stdout))
    if args.command == "batch":
        return asyncio.run(run_batch(args, sys.stdout))
    if args.command == "bench":
        from infill_server.bench import run_bench

        return run_bench(args, service_config(args))
    parser.print_help()
    return 2
