"""``kenning lsp``'s arguments, defined once for the CLI and ``python -m``-style
entry points; imports nothing heavy, so that every CLI start can build its parser."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", action="store_true", help="serve on a TCP socket instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs in the log file")
