"""`dgem-infill`: the console script. The CLI (infill_server.cli) picks the mode; `--stdio` lands here."""

from __future__ import annotations

import logging
import sys

from infill_server.config import ServiceConfig
from lsp import inline_completion, lifecycle, rewrite
from lsp.server import InfillLanguageServer


def build_server(config: ServiceConfig) -> InfillLanguageServer:
    ls = InfillLanguageServer(config)
    lifecycle.register(ls)
    inline_completion.register(ls)
    rewrite.register(ls)
    return ls


def serve_stdio(config: ServiceConfig) -> None:
    """Speak LSP on stdin/stdout until the client exits; logs go to stderr (stdout is the protocol)."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="dgem-infill %(levelname)s %(name)s: %(message)s"
    )
    build_server(config).start_io()


def main() -> None:
    from infill_server import cli

    cli.main(argv=None, stdio_server=serve_stdio)


if __name__ == "__main__":
    main()
