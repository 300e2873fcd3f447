"""A raw LSP client: framed bytes over a pipe or a socket, nothing in between.

pytest-lsp's client always frames correctly, so it cannot send what the wire
tests need: invalid JSON, a wrong Content-Length, garbage between messages,
or a client that vanishes mid-request. This one writes whatever bytes it is
given, reads the server's frames on a thread, and answers the server's own
requests (progress tokens, registrations, configuration) so that no handler
of the server waits on it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from .conftest import FAKE_SERVER, server_env, uri

# How long any one wait may take; generous for a shared, busy machine.
TIMEOUT_S = 30.0


def frame(body: bytes | str | dict[str, Any]) -> bytes:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Closed(Exception):
    """The server closed its end of the connection."""


class Wire:
    def __init__(self, rfile: BinaryIO, write: Any) -> None:
        self._write = write
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ids = itertools.count(1)
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.closed = threading.Event()
        # Method -> the fields of our answer to the server's request, in place of a null result.
        self.answers: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read, args=(rfile,), daemon=True)
        self._reader.start()

    # -- sending --------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self._write(data)

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(frame({"jsonrpc": "2.0", **message}))

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any = None) -> int:
        msg_id = next(self._ids)
        self.send({"id": msg_id, "method": method, "params": params})
        return msg_id

    def call(self, method: str, params: Any = None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Send a request and return its whole response (``result`` or ``error``)."""
        return self.response(self.request(method, params), timeout)

    def command(self, name: str, *args: Any) -> dict[str, Any]:
        return self.call("workspace/executeCommand", {"command": name, "arguments": list(args)})

    # -- receiving ------------------------------------------------------------------

    def response(self, msg_id: Any, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while msg_id not in self.responses:
            self._pump(deadline, f"a response to request {msg_id!r}")
        return self.responses.pop(msg_id)

    def wait_for(self, check: Any, what: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """The first message received so far or next for which ``check`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            for message in [*self.responses.values(), *self.notifications]:
                if check(message):
                    return message
            self._pump(deadline, what)

    def wait_closed(self, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        with contextlib.suppress(Closed):
            while True:
                self._pump(deadline, "the server to close the connection")

    def _pump(self, deadline: float, what: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {what} within the time allowed")
        try:
            message = self._inbox.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(f"no {what} within the time allowed") from None
        if message is None:
            self._inbox.put(None)  # every later wait sees the end too
            raise Closed(f"the server closed the connection while waiting for {what}")
        if "method" in message and "id" in message:
            self._answer(message)
        elif "method" in message:
            self.notifications.append(message)
        else:
            self.responses[message.get("id")] = message

    def _answer(self, request: dict[str, Any]) -> None:
        answer: dict[str, Any] = {"result": None}
        if request["method"] == "workspace/configuration":
            answer = {"result": [None for _ in request.get("params", {}).get("items", [])]}
        answer = self.answers.get(request["method"], answer)
        with contextlib.suppress(OSError, ValueError):
            self.send({"id": request["id"], **answer})

    def _read(self, rfile: BinaryIO) -> None:
        try:
            while True:
                length = None
                while True:
                    line = rfile.readline()
                    if not line:
                        return
                    if line == b"\r\n":
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                if length is None:
                    raise ValueError("a server frame without Content-Length")
                body = rfile.read(length)
                if len(body) < length:
                    return
                self._inbox.put(json.loads(body))
        except (OSError, ValueError):
            return
        finally:
            self.closed.set()
            self._inbox.put(None)

    # -- a session ------------------------------------------------------------------

    def initialize(self, root: Path | None, init_options: Any = None) -> dict[str, Any]:
        folders = [{"uri": uri(root), "name": root.name}] if root else None
        answer = self.call(
            "initialize",
            {
                "processId": None,
                "rootUri": folders[0]["uri"] if folders else None,
                "capabilities": {
                    "workspace": {"workspaceFolders": True, "configuration": True},
                    "window": {"workDoneProgress": True},
                },
                "workspaceFolders": folders,
                "initializationOptions": init_options,
                "clientInfo": {"name": "wire-test"},
            },
        )
        assert "result" in answer, answer
        self.notify("initialized", {})
        return answer["result"]

    def idle(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Wait until the server has nothing left to index or embed."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.command("kenning.status")["result"]
            m = status["metrics"]
            if (
                status["pending"] == 0
                and m["indexing"] is None
                and not m["queued"]
                and not m["syncing"]
            ):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never went idle: {status}")
            time.sleep(0.05)

    def shutdown(self) -> None:
        answer = self.call("shutdown")
        assert "result" in answer, answer
        self.notify("exit")


class StdioServer:
    """``kenning lsp`` (with the fake embedder) as a subprocess, driven over stdio."""

    def __init__(self, home: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / "stderr.txt"
        self.home = home
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [*FAKE_SERVER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**server_env(home), **(env or {})},
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        stdin = self.proc.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        self.wire = Wire(self.proc.stdout, write)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def log(self) -> str:
        path = self.home / "logs" / "lsp.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, timeout: float = TIMEOUT_S) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self) -> StdioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpClient:
    """A client of ``kenning lsp --tcp``, retrying until the server listens."""

    def __init__(self, port: int, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(None)
        self._rfile = self.sock.makefile("rb")
        self.wire = Wire(self._rfile, self.sock.sendall)

    def close(self, reset: bool = False) -> None:
        """Close; with ``reset``, abruptly (an RST, as a killed client's kernel sends)."""
        # The socket closes for real only once no thread reads it and its file
        # is closed too: stop the reader first (SHUT_RD sends nothing).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)
        self.wire.closed.wait(TIMEOUT_S)
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._rfile.close()
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
