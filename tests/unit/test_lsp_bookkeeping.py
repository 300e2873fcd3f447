"""A long editor session keeps nothing per message: pygls's futures are forgotten when done.

The real server (its protocol, features and index, the fake embedder) is driven
in-process, message by message, so that what it keeps alive can be counted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import tracemalloc
from collections.abc import AsyncIterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.uris import from_fs_path
from tests.conftest import FakeEmbedder, write_tree

from kenning.engine import session as engine_session
from kenning.lsp.main import create_server
from kenning.lsp.server import KenningServer

TEXT = "def total(items):\n    return sum(items)\n"


class Client:
    """Feeds message bodies to the server's protocol and reads what it writes."""

    def __init__(self, server: KenningServer) -> None:
        self.server = server
        self.protocol: Any = server.protocol
        self.responses: dict[Any, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.notifications = 0
        self.answer_requests = True
        self.uri = ""
        self._ids = iter(range(1, 1 << 30))
        self.protocol.set_writer(self)

    # The writer pygls sends through.
    def write(self, data: bytes) -> None:
        message = json.loads(data.split(b"\r\n\r\n", 1)[1])
        if "method" in message and "id" in message:
            self.requests.append(message)
        elif "method" in message:
            self.notifications += 1
        else:
            self.responses[message.get("id")] = message

    def close(self) -> None:
        pass

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.receive(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any) -> int:
        msg_id = next(self._ids)
        self.send({"id": msg_id, "method": method, "params": params})
        return msg_id

    async def settle(self) -> None:
        """Let the loop run what was started, answering the server's requests."""
        for _ in range(5):
            await asyncio.sleep(0.01)
            while self.answer_requests and self.requests:
                self.send({"id": self.requests.pop(0)["id"], "result": None})

    async def command(self, name: str) -> dict[str, Any]:
        return await self.call("workspace/executeCommand", {"command": name})

    async def call(self, method: str, params: Any) -> dict[str, Any]:
        msg_id = self.request(method, params)
        for _ in range(1000):
            if msg_id in self.responses:
                return self.responses.pop(msg_id)
            await self.settle()
        raise AssertionError(f"no answer to {method}")


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.setattr(engine_session, "EMBEDDER_FACTORY", lambda settings: FakeEmbedder())
    root = write_tree(tmp_path / "ws", {"calc.py": TEXT})
    folder = from_fs_path(str(root))
    c = Client(create_server())
    answer = await c.call(
        "initialize",
        {
            "processId": None,
            "rootUri": folder,
            "capabilities": {"window": {"workDoneProgress": True}},
            "workspaceFolders": [{"uri": folder, "name": "ws"}],
            "initializationOptions": {"index": {"debounceMs": 1}},
        },
    )
    assert "result" in answer, answer
    c.notify("initialized", {})
    c.uri = from_fs_path(str(root / "calc.py")) or ""
    doc = {"uri": c.uri, "languageId": "python", "version": 1, "text": TEXT}
    c.notify("textDocument/didOpen", {"textDocument": doc})
    for _ in range(100):
        status = (await c.command("kenning.status"))["result"]
        if status["files"] and not status["metrics"]["indexing"] and not status["pending"]:
            break
    yield c
    assert "result" in await c.call("shutdown", None)
    c.notify("exit", None)
    await asyncio.get_running_loop().run_in_executor(None, c.server.shutdown)


def live_futures() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Future | Future))


async def edit_and_ask(c: Client, rounds: int) -> None:
    """What an editor does all day: edits, a save now and then, a status, and the
    server's own notifications (status, progress, log lines, diagnostics)."""
    uri = c.uri
    for i in range(rounds):
        c.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": i + 2},
                "contentChanges": [
                    {
                        "range": {
                            "start": {"line": 1, "character": 11},
                            "end": {"line": 1, "character": 14},
                        },
                        "text": "sum" if i % 2 else "max",
                    }
                ],
            },
        )
        c.protocol.notify("kenning/status", {"files": i})
        c.server.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Log, message="."))
        if i % 10 == 0:
            c.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
            c.request("workspace/executeCommand", {"command": "kenning.status"})
            c.notify("$/setTrace", {"value": "off"})
        if i % 50 == 0:
            await c.settle()
    await c.settle()
    c.responses.clear()


async def test_a_long_session_keeps_nothing_per_message(client: Client) -> None:
    await edit_and_ask(client, 200)  # warm: caches, the first embeddings, timers
    before = live_futures()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        await edit_and_ask(client, 2000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert client.notifications > 4000  # the server did send, and went on sending
    # Before: every notification left two futures filed, every command one
    # (about 2.7 KB an edit, 5 MB here), for as long as the session lasted.
    assert len(client.protocol._request_futures) == 0
    assert live_futures() - before < 20
    assert grown < 1_000_000, f"{grown} bytes more after 2,000 edits"


async def test_a_request_given_up_on_is_forgotten_and_its_late_answer_dropped(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    client.answer_requests = False
    token = "kenning/test/1"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.server.work_done_progress.create_async(token), 0.05)
    await client.settle()
    (request,) = [r for r in client.requests if r["params"] == {"token": token}]
    assert request["id"] not in client.protocol._request_futures
    assert request["id"] not in client.protocol._result_types
    # The client answers at last: a message about an unknown id, not a failure.
    with caplog.at_level(logging.INFO):
        client.send({"id": request["id"], "result": None})
        await client.settle()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # The session goes on.
    client.answer_requests = True
    answer = await client.command("kenning.status")
    assert answer["result"]["files"] == 1
