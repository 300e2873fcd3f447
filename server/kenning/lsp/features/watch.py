"""Changes made outside the editor: a git checkout, a formatter, a code generator.

When the client can watch files for us (``workspace.didChangeWatchedFiles``
with dynamic registration, e.g. VS Code), we register for every file and it
sends ``workspace/didChangeWatchedFiles``. When it cannot (Neovim 0.7, many
others) or refuses the registration, we watch the folders ourselves with
the engine's :class:`~kenning.engine.watch.FolderWatcher` (``watchfiles``),
which the MCP server uses too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from kenning.engine.watch import FolderWatcher
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)

REGISTRATION_ID = "kenning-watched-files"


class Watching:
    def __init__(self, server: KenningServer) -> None:
        self.server = server
        self.mode = "none"  # "client", "watchfiles" or "none"
        self._watcher: FolderWatcher | None = None

    def _client_can_watch(self) -> bool:
        caps = self.server.client_capabilities
        ws = caps.workspace if caps else None
        dcw = ws.did_change_watched_files if ws else None
        return bool(dcw and dcw.dynamic_registration)

    async def start(self) -> None:
        if self._client_can_watch():
            try:
                await self.server.client_register_capability_async(
                    lsp.RegistrationParams(
                        registrations=[
                            lsp.Registration(
                                id=REGISTRATION_ID,
                                method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                register_options=lsp.DidChangeWatchedFilesRegistrationOptions(
                                    watchers=[lsp.FileSystemWatcher(glob_pattern="**/*")]
                                ),
                            )
                        ]
                    )
                )
                self.mode = "client"
                log.info("the client watches files for us")
                return
            except Exception as exc:
                log.info("the client refused to watch files (%s); watching them here", exc)
        self._start_thread()

    async def folders_changed(self) -> None:
        if self.mode == "watchfiles":
            self.stop()
            self._start_thread()

    def _start_thread(self) -> None:
        roots = list(self.server.folders)
        watcher = FolderWatcher(roots, self._changed, self._failed)
        if not watcher.start():
            self.mode = "none"
            return
        self._watcher = watcher
        self.mode = "watchfiles"

    def _changed(self, paths: list[Path]) -> None:
        # On the watcher's thread: the event loop takes it from here.
        self.server.call_on_loop(self._deliver, paths)

    def _failed(self, exc: Exception) -> None:
        self.server.show_warning(
            f"kenning: cannot watch files ({exc}); changes made outside the editor "
            "are picked up by the next reindex"
        )
        self.mode = "none"

    def _deliver(self, paths: list[Path]) -> None:
        sync: Any = self.server.sync
        if sync is not None:
            sync.files_changed(paths)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self._watcher = None


def register(server: KenningServer) -> None:
    server.watching = Watching(server)
