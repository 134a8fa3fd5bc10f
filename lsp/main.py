"""`dgem-infill`: the console script. The CLI (infill_server.cli) picks the mode; `--stdio` lands here."""

from __future__ import annotations

import logging
import os
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
    # Before torch loads: OpenMP threads that sleep rather than spin while they wait. An editor shares
    # its CPU; spinning threads that wait for a taken core made denoising steps 10-20x slower there.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from infill_server import cli

    cli.main(argv=None, stdio_server=serve_stdio)


if __name__ == "__main__":
    main()
