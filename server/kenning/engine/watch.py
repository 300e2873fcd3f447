"""Changes made on disk, seen as they happen: a checkout, a formatter, an agent's edit.

A thread follows the folders with ``watchfiles`` (inotify/FSEvents/
ReadDirectoryChangesW): free while nothing changes, unlike polling, which costs
a full stat of the tree each round (about 0.5 s of CPU per 10k files here).
The doors decide what a change means (the language server batches them onto
its index thread, the MCP server re-reads the files at once); this module only
reports which paths changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Short: an agent searches right after it writes a file.
WATCH_DEBOUNCE_MS = 200
STEP_MS = 50

ChangeHandler = Callable[[list[Path]], None]
FailureHandler = Callable[[Exception], None]


class FolderWatcher:
    """Calls ``on_change(paths)`` from its own thread whenever files under ``roots`` change.

    ``on_failure(exc)`` is called once if watching stops on an error (too many
    inotify watches, a folder removed); the watcher is then off.
    """

    def __init__(
        self,
        roots: Sequence[Path],
        on_change: ChangeHandler,
        on_failure: FailureHandler | None = None,
        debounce_ms: int = WATCH_DEBOUNCE_MS,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self.on_change = on_change
        self.on_failure = on_failure
        self.debounce_ms = debounce_ms
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.running = False

    def start(self) -> bool:
        """Start watching; False when there is nothing to watch or no watchfiles."""
        if not self.roots:
            return False
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            log.warning(
                "watchfiles is not installed: changes made on disk are picked up "
                "by the next reindex"
            )
            return False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch,
            args=([str(r) for r in self.roots], self._stop),
            name="kenning-watch",
            daemon=True,
        )
        self.running = True
        self._thread.start()
        log.info("watching %d folder(s) for changes", len(self.roots))
        return True

    def _watch(self, roots: list[str], stop: threading.Event) -> None:
        import watchfiles

        try:
            for changes in watchfiles.watch(
                *roots,
                watch_filter=watchfiles.DefaultFilter(),
                debounce=self.debounce_ms,
                step=STEP_MS,
                stop_event=stop,
                raise_interrupt=False,
                # Wakes up to look at the stop event even when nothing changes.
                rust_timeout=1000,
            ):
                paths = [Path(p) for _, p in changes]
                try:
                    self.on_change(paths)
                except Exception:
                    log.error("handling a file change failed", exc_info=True)
        except Exception as exc:
            if not stop.is_set():
                self.running = False
                log.warning("watching files stopped: %s", exc, exc_info=True)
                if self.on_failure is not None:
                    self.on_failure(exc)
        finally:
            self.running = False

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=3)
        self._stop = None
        self._thread = None
        self.running = False
