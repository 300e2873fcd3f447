"""The language server's logs: stderr (warnings), a rotating file, and the client.

The client gets ``window/logMessage`` for INFO and up from ``kenning.*``
loggers; over TCP each client session gets its own server, so the handler's
``server`` is swapped per session.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import threading
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from kenning.config import kenning_home
from kenning.engine.home import owned_dir, repair, slot_problem
from kenning.errors import KenningError


class LspLogHandler(logging.Handler):
    """Sends log records to the client as ``window/logMessage``.

    ``server`` is the current session's: over TCP each client gets its own.
    """

    LEVELS = {
        logging.ERROR: lsp.MessageType.Error,
        logging.WARNING: lsp.MessageType.Warning,
        logging.INFO: lsp.MessageType.Info,
    }

    def __init__(self, server: Any = None) -> None:
        super().__init__(logging.INFO)
        self.server = server
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        server = self.server
        if server is None or getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            kind = next(
                (
                    t
                    for lvl, t in sorted(self.LEVELS.items(), reverse=True)
                    if record.levelno >= lvl
                ),
                lsp.MessageType.Log,
            )
            message = self.format(record)
            server.call_on_loop(self._send, server, kind, message)
        finally:
            self._busy.on = False

    def _send(self, server: Any, kind: lsp.MessageType, message: str) -> None:
        if server.protocol.writer is None:
            return
        with contextlib.suppress(Exception):
            server.window_log_message(lsp.LogMessageParams(type=kind, message=message))


class _DropUserErrors(logging.Filter):
    """pygls logs every error response with a traceback; an answered error needs none.

    A JSON-RPC error is the answer itself (a user error, bad arguments, an
    unknown command); a handler's own bug reaches here as the exception it
    raised, or was logged with its traceback by :mod:`kenning.lsp.guard`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, JsonRpcException)


def log_file() -> Path:
    return kenning_home() / "logs" / "lsp.log"


def setup_logging(verbose: bool = False, server: Any = None) -> tuple[Path | None, LspLogHandler]:
    """Log to stderr (warnings), the log file and the client (``client.server``)."""
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(logging.Formatter("kenning: %(message)s"))
    stderr.addFilter(_DropUserErrors())
    # First, so that a repair of the log file's own place is reported.
    root.addHandler(stderr)
    path: Path | None = log_file()
    try:
        assert path is not None
        owned_dir(path.parent)
        problem = slot_problem(path)
        if problem is not None:
            repair(path, f"{path}: the log file is damaged ({problem})")
        file = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
        file.setFormatter(fmt)
        file.setLevel(logging.DEBUG if verbose else logging.INFO)
        file.addFilter(_DropUserErrors())
        root.addHandler(file)
    except (OSError, KenningError) as exc:
        path = None
        root.warning("cannot write the log file: %s", exc)
    client = LspLogHandler(server)
    client.setFormatter(logging.Formatter("%(message)s"))
    kenning = logging.getLogger("kenning")
    kenning.setLevel(logging.DEBUG if verbose else logging.INFO)
    kenning.addHandler(client)
    return path, client
