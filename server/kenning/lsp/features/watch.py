"""Changes made outside the editor: a git checkout, a formatter, a code generator.

When the client can watch files for us (``workspace.didChangeWatchedFiles``
with dynamic registration, e.g. VS Code), we register for every file and it
sends ``workspace/didChangeWatchedFiles``. When it cannot (Neovim 0.7, many
others) or refuses the registration, we watch the folders ourselves with
``watchfiles`` (inotify/FSEvents/ReadDirectoryChangesW): free while nothing
changes, unlike polling, which costs a full stat of the tree each round
(about 0.5 s of CPU per 10k files here).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)

REGISTRATION_ID = "kenning-watched-files"
WATCH_DEBOUNCE_MS = 200


class Watching:
    def __init__(self, server: KenningServer) -> None:
        self.server = server
        self.mode = "none"  # "client", "watchfiles" or "none"
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

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
        roots = [str(r) for r in self.server.folders]
        if not roots:
            self.mode = "none"
            return
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            log.warning(
                "watchfiles is not installed: changes made outside the editor are "
                "picked up by the next reindex"
            )
            self.mode = "none"
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, args=(roots, self._stop), name="kenning-watch", daemon=True
        )
        self._thread.start()
        self.mode = "watchfiles"
        log.info("watching %d folder(s) for changes", len(roots))

    def _watch(self, roots: list[str], stop: threading.Event) -> None:
        import watchfiles

        try:
            for changes in watchfiles.watch(
                *roots,
                watch_filter=watchfiles.DefaultFilter(),
                debounce=WATCH_DEBOUNCE_MS,
                step=50,
                stop_event=stop,
                raise_interrupt=False,
                rust_timeout=1000,
            ):
                paths = [Path(p) for _, p in changes]
                self.server.call_on_loop(self._deliver, paths)
        except Exception as exc:
            if not stop.is_set():
                log.warning("watching files stopped: %s", exc, exc_info=True)
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
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._stop = None
        self._thread = None


def register(server: KenningServer) -> None:
    server.watching = Watching(server)
