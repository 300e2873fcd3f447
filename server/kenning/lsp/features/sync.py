"""Live sync: open buffers and changed files flow into the index as you type.

An open document's buffer text is what gets indexed. Each edit bumps the
document's generation and restarts its debounce timer (``index.debounceMs``)
on the event loop; when the timer fires, the text is handed to the index
thread, which drops the job if a newer edit has arrived meanwhile. The engine
re-chunks the text and only chunks whose digest changed need embedding; that
embedding is a long job that the next edit interrupts. Document versions are
never relied on: Neovim merges and skips them.

Files changed outside the editor (``workspace/didChangeWatchedFiles``, or our
own watcher) are collected for a moment, then re-read by path; anything the
path list cannot describe (a folder removed, an ignore file edited, a huge
checkout) becomes a full incremental refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from kenning.config import kenning_home
from kenning.engine.session import Folder
from kenning.errors import KenningError
from kenning.lsp import guard
from kenning.lsp.convert import uri_to_path
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)

FILES_DEBOUNCE_S = 0.2


class DocumentSync:
    def __init__(self, server: KenningServer) -> None:
        self.server = server
        self.generation: dict[str, int] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.pending: dict[str, Future[Any]] = {}
        self._next = 0
        self._paths: set[Path] = set()
        self._paths_timer: asyncio.TimerHandle | None = None
        self._home = kenning_home()

    # -- documents --------------------------------------------------------------

    def _bump(self, uri: str) -> int:
        self._next += 1
        self.generation[uri] = self._next
        return self._next

    def _target(self, uri: str) -> tuple[Folder, Path] | None:
        try:
            path = uri_to_path(uri).resolve()
        except (KenningError, OSError):
            return None  # untitled:, git:, ... buffers are not workspace files
        folder = self.server.folder_of(path)
        if folder is None:
            return None
        return folder, path

    def opened(self, uri: str) -> None:
        self._bump(uri)
        self._flush(uri)

    def changed(self, uri: str) -> None:
        self._bump(uri)
        if not self.server.settings.index.on_change:
            return
        timer = self.timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        assert self.server.loop is not None
        delay = self.server.settings.index.debounce_ms / 1000
        self.timers[uri] = self.server.loop.call_later(delay, self._flush, uri)

    def saved(self, uri: str) -> None:
        timer = self.timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        self._flush(uri)

    def closed(self, uri: str) -> None:
        timer = self.timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        gen = self._bump(uri)
        target = self._target(uri)
        if target is None:
            return
        folder, path = target

        def current() -> bool:
            if self.generation.get(uri) != gen:
                return False
            self.generation.pop(uri, None)
            return True

        self._track(uri, self.server.session.drop_buffer(folder, path, current))

    def _flush(self, uri: str) -> None:
        self.timers.pop(uri, None)
        doc = self.server.workspace.text_documents.get(uri)
        target = self._target(uri)
        if doc is None or target is None:
            return
        folder, path = target
        gen = self.generation.get(uri, 0)

        def current() -> bool:
            # On the index thread: a newer edit supersedes this text.
            return self.generation.get(uri) == gen

        # Straight to the executor (its submit is thread-safe); it embeds after.
        self._track(uri, self.server.session.set_buffer(folder, path, doc.source, current))

    def syncing(self) -> int:
        """Documents whose latest text is not in the index yet."""
        # list() copies in one step: done callbacks edit ``pending`` from the index thread.
        return len(set(self.timers) | set(list(self.pending)))

    def _track(self, uri: str, future: Future[Any]) -> None:
        self.pending[uri] = future

        def done(f: Future[Any]) -> None:
            if self.pending.get(uri) is f:
                self.pending.pop(uri, None)

        future.add_done_callback(done)

    async def flush_and_wait(self, uri: str) -> None:
        """Index ``uri``'s latest text now (before a query about it)."""
        if uri in self.timers:
            self.timers.pop(uri).cancel()
            self._flush(uri)
        future = self.pending.get(uri)
        if future is not None:
            # A failure is already logged by the worker; the query goes on with the index as is.
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(future)

    def resync_open_documents(self) -> None:
        for uri in list(self.server.workspace.text_documents):
            self._bump(uri)
            self._flush(uri)

    # -- files changed on disk ----------------------------------------------------

    def files_changed(self, paths: list[Path]) -> None:
        """Paths changed outside the editor; call on the event loop."""
        for p in paths:
            if p == self._home or self._home in p.parents:
                continue  # our own index files
            self._paths.add(p)
        if self._paths and self._paths_timer is None:
            assert self.server.loop is not None
            self._paths_timer = self.server.loop.call_later(FILES_DEBOUNCE_S, self._flush_paths)

    def _flush_paths(self) -> None:
        self._paths_timer = None
        paths, self._paths = self._paths, set()
        by_folder: dict[Path, list[Path]] = {}
        for p in paths:
            folder = self.server.folder_of(p)
            if folder is not None:
                by_folder.setdefault(folder.root, []).append(p)
        for root, group in by_folder.items():
            folder = self.server.folders[root]
            fut = self.server.session.files_changed(folder, group)
            fut.add_done_callback(functools.partial(self._paths_done_soon, folder))

    def _paths_done_soon(self, folder: Folder, future: Future[Any]) -> None:
        self.server.call_on_loop(self._paths_done, folder, future)

    def _paths_done(self, folder: Folder, future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None or folder.closed:
            return
        if future.result() == "full":
            self.server.start_refresh("kenning: updating", [folder])


def register(server: KenningServer) -> None:
    sync = DocumentSync(server)
    server.sync = sync

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    @guard.notification("textDocument/didOpen")
    async def did_open(ls: KenningServer, params: lsp.DidOpenTextDocumentParams) -> None:
        sync.opened(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    @guard.notification("textDocument/didChange")
    async def did_change(ls: KenningServer, params: lsp.DidChangeTextDocumentParams) -> None:
        sync.changed(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE, lsp.SaveOptions(include_text=False))
    @guard.notification("textDocument/didSave")
    async def did_save(ls: KenningServer, params: lsp.DidSaveTextDocumentParams) -> None:
        sync.saved(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    @guard.notification("textDocument/didClose")
    async def did_close(ls: KenningServer, params: lsp.DidCloseTextDocumentParams) -> None:
        sync.closed(params.text_document.uri)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    @guard.notification("workspace/didChangeWatchedFiles")
    async def did_change_watched(
        ls: KenningServer, params: lsp.DidChangeWatchedFilesParams
    ) -> None:
        paths = []
        for change in params.changes:
            try:
                paths.append(uri_to_path(change.uri))
            except KenningError:
                continue
        sync.files_changed(paths)
