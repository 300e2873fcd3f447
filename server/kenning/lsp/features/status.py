"""``kenning.status`` and the ``kenning/status`` notification.

The payload is the same for both. The notification is sent when it changes,
so that a client (a status bar) never polls: every change of state is a
session event (a folder opened, the model loaded, a write to an index, the
executor starting or finishing a job, progress) or a refresh of ours
starting or ending, and each one asks for a new payload. At most
:data:`MAX_PER_S` are computed a second; one that equals the last sent is not
sent. An idle server computes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from kenning.engine.embedder import precision_of
from kenning.engine.session import Event, Progress
from kenning.errors import KenningError
from kenning.lsp import convert, guard
from kenning.lsp.features.commands import remotes_of
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)

METHOD = "kenning/status"
MAX_PER_S = 4
# Progress events (thousands a run) ask for a status at most this often.
PROGRESS_INTERVAL_S = 1.0


class StatusFeed:
    """Sends ``kenning/status`` when the payload changes, at most MAX_PER_S a second."""

    def __init__(self, server: KenningServer) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._scheduled = False
        self._last_at = 0.0
        self._last: dict[str, Any] | None = None
        self._sending = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, event: Event) -> None:
        if isinstance(event, Progress):
            # Thousands a run: a status a second is enough beside $/progress.
            self.poke(PROGRESS_INTERVAL_S)
        else:
            self.poke()

    def poke(self, interval: float = 1 / MAX_PER_S) -> None:
        """Something changed (any thread): compute and send the status soon, no
        sooner than ``interval`` after the last one."""
        with self._lock:
            if self._scheduled:
                return
            if interval > 1 / MAX_PER_S and time.monotonic() - self._last_at < interval:
                return  # progress: the next one after the interval says it
            self._scheduled = True
        self.server.call_on_loop(self._schedule)

    def _schedule(self) -> None:
        loop = self.server.loop
        if loop is None or self.server.closing:
            with self._lock:
                self._scheduled = False
            return
        # Trailing: a burst of events (a folder opening, a job ending) is one
        # status, computed after it rather than beside the first request.
        delay = max(1 / MAX_PER_S, self._last_at + 1 / MAX_PER_S - time.monotonic())
        loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        with self._lock:
            self._scheduled = False
        self._last_at = time.monotonic()
        task = asyncio.ensure_future(self._send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        async with self._sending:
            if self.server.closing or self.server.protocol.writer is None:
                return
            try:
                payload = await status(self.server)
            except Exception as exc:  # shutting down, or a folder closed under us
                log.debug("kenning/status: %s", exc)
                return
            if payload == self._last:
                return
            self._last = payload
            try:
                self.server.protocol.notify(METHOD, payload)
            except Exception as exc:  # the client is gone
                log.debug("kenning/status not sent: %s", exc)


async def status(ls: KenningServer) -> dict[str, Any]:
    folders: list[dict[str, Any]] = []
    for folder in list(ls.folders.values()):
        try:
            index = await ls.wait_ready(folder)
            folders.append(await ls.in_query_thread(index.status))
        except KenningError as exc:
            folders.append({"root": str(folder.root), "error": str(exc)})
    ok = [f for f in folders if "error" not in f]
    busy = next((f for f in ok if f.get("indexing_by")), None)
    embedder = ls.embedders.get_nowait()
    # Until the model has loaded, what the first folder's index was embedded
    # with (or would be).
    first = ok[0] if ok else {}
    lat = [f["metrics"]["query_ms_p95"] for f in ok if f["metrics"].get("query_ms_p95")]
    return {
        "files": sum(f["files"] for f in ok),
        "chunks": sum(f["chunks"] for f in ok),
        "embedded": sum(f["embedded"] for f in ok),
        "pending": sum(f["pending"] for f in ok),
        "skipped": sum(f["skipped"] for f in ok),
        "model": embedder.model_id if embedder else first.get("model"),
        "device": embedder.device if embedder else first.get("device"),
        "precision": precision_of(embedder) if embedder else first.get("precision"),
        "model_error": ls.embedders.error,
        # Another process running on a folder's index: {"pid", "command", "since", "root"}.
        "indexing_by": dict(busy["indexing_by"], root=busy["root"]) if busy else None,
        "metrics": {
            "index_bytes": sum(f["metrics"]["index_bytes"] for f in ok),
            "queries": sum(f["metrics"]["queries"] for f in ok),
            "query_ms_p95": max(lat) if lat else None,
            "indexing": ls.worker.running() or ("starting" if ls.refreshing else None),
            "queued": ls.worker.queued(),
            # Editor buffers whose latest text is not in the index yet (waiting
            # out the edit debounce, or on the index thread).
            "syncing": ls.sync.syncing() if ls.sync is not None else 0,
            "watching": ls.watching.mode if ls.watching is not None else "none",
        },
        "folders": folders,
        "remotes": [{"url": r.url, "repo": r.repo, **r.state.to_json()} for r in remotes_of(ls)],
    }


def register(server: KenningServer) -> None:
    feed = StatusFeed(server)
    server.status_feed = feed
    server.session.subscribe(feed.on_event)

    @server.command("kenning.status")
    @guard.request("kenning.status")
    async def cmd_status(ls: KenningServer, *args: Any) -> dict[str, Any]:
        convert.one_object("kenning.status", args)
        return await status(ls)
