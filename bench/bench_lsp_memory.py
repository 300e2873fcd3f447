"""What a long editor session leaves behind in the language server; prints one JSON object.

The real server (protocol, features, an index of one file, a fake embedder) is
driven in-process, message by message, so that what it keeps alive can be
counted: ``--edits`` ``didChange`` notifications (a save, a ``kenning.status``
command and a ``$/setTrace`` every tenth), then as many ``kenning/status``
notifications, log lines and diagnostics sent by the server, then server
requests the client never answers (given up after a timeout). After each
phase: the futures pygls still has filed (``_request_futures``,
``_result_types``, progress tokens), live futures and tasks (gc), and
tracemalloc's count of memory in use.

Side by side: ``kenning`` (our protocol) and ``pygls`` (the same server with
pygls 2.1.1's own bookkeeping, i.e. before the fix).

    PYTHONPATH=server python3 bench/bench_lsp_memory.py [--edits 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.protocol import LanguageServerProtocol
from pygls.uris import from_fs_path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import FakeEmbedder  # noqa: E402

from kenning.engine import session as engine_session  # noqa: E402
from kenning.lsp import server as server_module  # noqa: E402
from kenning.lsp.main import create_server  # noqa: E402
from kenning.lsp.transport import KenningProtocol  # noqa: E402

TEXT = "def total(items):\n    return sum(items)\n"


class PyglsBookkeeping(KenningProtocol):
    """Ours, but filing and forgetting futures as pygls does."""

    _execute_handler = LanguageServerProtocol._execute_handler  # type: ignore[assignment]
    send_request = LanguageServerProtocol.send_request  # type: ignore[assignment]


class Client:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.protocol: Any = server.protocol
        self.requests: list[dict[str, Any]] = []
        self.responses: dict[Any, dict[str, Any]] = {}
        self.sent = 0
        self.answer = True
        self._ids = iter(range(1, 1 << 30))
        self.protocol.set_writer(self)

    def write(self, data: bytes) -> None:
        self.sent += 1
        message = json.loads(data.split(b"\r\n\r\n", 1)[1])
        if "method" in message and "id" in message:
            self.requests.append(message)
        elif "method" not in message:
            self.responses[message.get("id")] = message

    def close(self) -> None:
        pass

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.receive(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def request(self, method: str, params: Any) -> int:
        msg_id = next(self._ids)
        self.send({"id": msg_id, "method": method, "params": params})
        return msg_id

    async def settle(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0.01)
            while self.answer and self.requests:
                self.send({"id": self.requests.pop(0)["id"], "result": None})
        self.responses.clear()

    async def call(self, method: str, params: Any) -> dict[str, Any]:
        msg_id = self.request(method, params)
        for _ in range(2000):
            await asyncio.sleep(0.01)
            while self.answer and self.requests:
                self.send({"id": self.requests.pop(0)["id"], "result": None})
            if msg_id in self.responses:
                return self.responses.pop(msg_id)
        raise RuntimeError(f"no answer to {method}")


def counts(c: Client, base: int) -> dict[str, Any]:
    gc.collect()
    futures = sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Future | Future))
    return {
        "request_futures": len(c.protocol._request_futures),
        "result_types": len(c.protocol._result_types),
        "progress_tokens": len(c.protocol.progress.tokens),
        "live_futures": futures,
        "traced_kb": (tracemalloc.get_traced_memory()[0] - base) // 1024,
        "sent": c.sent,
    }


async def run(variant: str, edits: int, unanswered: int) -> dict[str, Any]:
    cls = PyglsBookkeeping if variant == "pygls" else KenningProtocol
    server_module.KenningProtocol = cls  # type: ignore[misc]
    try:
        server = create_server()
    finally:
        server_module.KenningProtocol = KenningProtocol  # type: ignore[misc]
    c = Client(server)
    root = Path(tempfile.mkdtemp(prefix="bench-lsp-memory-")) / "ws"
    root.mkdir()
    (root / "calc.py").write_text(TEXT)
    folder = from_fs_path(str(root))
    uri = from_fs_path(str(root / "calc.py"))
    await c.call(
        "initialize",
        {
            "processId": None,
            "capabilities": {"window": {"workDoneProgress": True}},
            "workspaceFolders": [{"uri": folder, "name": "ws"}],
            "initializationOptions": {"index": {"debounceMs": 1}},
        },
    )
    c.send({"method": "initialized", "params": {}})
    doc = {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}
    c.send({"method": "textDocument/didOpen", "params": {"textDocument": doc}})
    for _ in range(200):
        status = await c.call("workspace/executeCommand", {"command": "kenning.status"})
        if status["result"]["files"] and not status["result"]["metrics"]["indexing"]:
            break
    await c.settle()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out: dict[str, Any] = {"start": counts(c, base)}

    t0 = time.perf_counter()
    for i in range(edits):
        change = {
            "range": {"start": {"line": 1, "character": 11}, "end": {"line": 1, "character": 14}},
            "text": "sum" if i % 2 else "max",
        }
        c.send(
            {
                "method": "textDocument/didChange",
                "params": {
                    "textDocument": {"uri": uri, "version": i + 2},
                    "contentChanges": [change],
                },
            }
        )
        if i % 10 == 0:
            c.send({"method": "textDocument/didSave", "params": {"textDocument": {"uri": uri}}})
            c.request("workspace/executeCommand", {"command": "kenning.status"})
            c.send({"method": "$/setTrace", "params": {"value": "off"}})
        if i % 100 == 99:
            await c.settle()
    await c.settle()
    out["after_edits"] = counts(c, base)
    out["edits_per_s"] = round(edits / (time.perf_counter() - t0))

    for i in range(edits):
        c.protocol.notify("kenning/status", {"files": i})
        server.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Log, message="."))
        server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )
        if i % 1000 == 999:
            await c.settle()
    out["after_sent_notifications"] = counts(c, base)

    c.answer = False
    for i in range(unanswered):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.work_done_progress.create_async(f"bench/{i}"), 0.001)
    c.requests.clear()
    await c.settle()
    out["after_unanswered_requests"] = counts(c, base)
    tracemalloc.stop()

    edits_kb = out["after_edits"]["traced_kb"] - out["start"]["traced_kb"]
    out["bytes_per_edit"] = round(edits_kb * 1024 / edits)
    c.answer = True
    await c.call("shutdown", None)
    await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=20000)
    parser.add_argument("--unanswered", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("KENNING_HOME", tempfile.mkdtemp(prefix="bench-lsp-memory-home-"))
    engine_session.EMBEDDER_FACTORY = lambda settings: FakeEmbedder()
    logging.getLogger().setLevel(logging.ERROR)
    result: dict[str, Any] = {"edits": args.edits, "unanswered_requests": args.unanswered}
    for variant in ("kenning", "pygls"):
        print(f"{variant} ...", file=sys.stderr)
        result[variant] = asyncio.run(run(variant, args.edits, args.unanswered))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
