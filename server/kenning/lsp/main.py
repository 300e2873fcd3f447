"""``kenning lsp``: arguments, logging, a usable home, and serving on stdio or TCP."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kenning import __version__
from kenning.engine.home import check_home
from kenning.errors import HomeError
from kenning.lsp.args import add_arguments
from kenning.lsp.features import lifecycle
from kenning.lsp.logs import setup_logging
from kenning.lsp.server import KenningServer, log
from kenning.lsp.transport import serve_stdio, serve_tcp


def create_server() -> KenningServer:
    server = KenningServer()
    lifecycle.register(server)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kenning lsp")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def usable_home() -> tuple[Path | None, str | None]:
    """Make sure KENNING_HOME can be used, or point it at a folder for this session.

    An editor cannot fix its server's environment as a shell user can, and a
    server without a home could not index at all: so it indexes into a
    temporary folder, removed when it exits, and says so. Returns that
    folder (None when the home is fine) and the message to show.
    """
    try:
        check_home()
    except HomeError as exc:
        temp = Path(tempfile.mkdtemp(prefix="kenning-home-"))
        os.environ["KENNING_HOME"] = str(temp)
        return temp, (
            f"kenning: {exc}. Until then this session keeps its indexes in {temp}, "
            "removed when it ends."
        )
    return None, None


def run(args: argparse.Namespace) -> int:
    temp_home, note = usable_home()
    path, client_log = setup_logging(getattr(args, "verbose", False))
    log.info("kenning %s language server (pid %d), log file %s", __version__, os.getpid(), path)
    if note is not None:
        log.warning("%s", note)

    def new_server() -> KenningServer:
        server = create_server()
        client_log.server = server
        if note is not None:
            server.notes.append(note)
        return server

    try:
        if args.tcp:
            return serve_tcp(new_server, args.host, args.port)
        return serve_stdio(new_server())
    finally:
        if temp_home is not None:
            shutil.rmtree(temp_home, ignore_errors=True)
