"""The language server: translates LSP into session calls and session events into LSP.

The live state (folders, indexes, the model, the index executor, near-duplicate
hints) is the engine's :class:`~kenning.engine.session.Session`; this class
adds what only an editor needs: the event loop, the query threads, messages
shown once, and progress bars.

Threads, and why:

* the asyncio event loop runs every handler; handlers only read state, start
  work and await it, so the loop never blocks;
* pygls's own handler pool reads stdin; nothing of ours runs there;
* ``kenning-index`` (the session's :class:`~kenning.engine.executor.IndexWorker`,
  one thread) does every index write: opening indexes, refreshes, editor
  buffers, embedding;
* ``kenning-query`` (two threads) answers searches; the engine gives each
  thread its own SQLite connection, so a search never waits behind indexing.

Session events arrive on whatever thread made the change; subscribers hand
them to the event loop with :meth:`KenningServer.call_on_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as lsp
from pygls.exceptions import FeatureRequestError, JsonRpcException
from pygls.lsp.server import LanguageServer

from kenning import __version__
from kenning.config import Settings, parse_settings
from kenning.engine.executor import IndexWorker
from kenning.engine.locks import describe
from kenning.engine.session import (
    EmbedderHolder,
    Event,
    Folder,
    ModelFailed,
    Notice,
    Session,
)
from kenning.engine.workspace import Index, IndexReport
from kenning.errors import KenningError, LocationError
from kenning.lsp.convert import uri_to_path
from kenning.lsp.progress import IndexProgress
from kenning.lsp.transport import KenningProtocol

log = logging.getLogger("kenning.lsp")
T = TypeVar("T")


class KenningServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "kenning",
            __version__,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
            protocol_cls=KenningProtocol,
        )
        self.session = Session(owner="language server")
        self.queries = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kenning-query")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._shown: set[str] = set()
        self.initial_roots: list[Path] = []
        # Refreshes started and not finished (status reports the server busy meanwhile).
        self.refreshing = 0
        # Messages for the user found before the client connected, shown once it has.
        self.notes: list[str] = []
        # Filled in by the feature modules when they register.
        self.sync: Any = None
        self.watching: Any = None
        self.status_feed: Any = None
        self.session.subscribe(self._on_event)

    # -- the session's state, as the features read it ------------------------------

    @property
    def settings(self) -> Settings:
        return self.session.settings

    @property
    def folders(self) -> dict[Path, Folder]:
        return self.session.folders

    @property
    def worker(self) -> IndexWorker:
        return self.session.executor

    @property
    def embedders(self) -> EmbedderHolder:
        return self.session.embedders

    @property
    def closing(self) -> bool:
        return self.session.closing

    def _on_event(self, event: Event) -> None:
        # Any thread: only hand things to the loop here.
        if isinstance(event, Notice | ModelFailed):
            self.show_warning(event.message)

    # -- plumbing -------------------------------------------------------------

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop; safe from any thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        # The loop may close between the check and the call.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    def report_server_error(self, error: Exception, source: Any) -> None:
        # pygls shows these as a popup of Python text ("Error in server: ...").
        # A failed request was answered already; a notification that failed
        # (pygls's own document sync given odd ranges) or a write has nobody
        # to tell but the log.
        if source is FeatureRequestError:
            return
        message = error.message if isinstance(error, JsonRpcException) else str(error)
        log.warning("%s", message or type(error).__name__)
        data = getattr(error, "data", None)
        if isinstance(data, dict) and data.get("traceback"):
            log.debug("%s", "".join(data["traceback"]))

    def show_warning(self, message: str) -> None:
        self.show(message, lsp.MessageType.Warning)

    def show(self, message: str, kind: lsp.MessageType = lsp.MessageType.Info) -> None:
        """``window/showMessage``, each distinct message once per session."""
        if message in self._shown:
            return
        self._shown.add(message)
        self.call_on_loop(
            self.window_show_message, lsp.ShowMessageParams(type=kind, message=message)
        )

    async def in_query_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.queries, fn, *args)

    def on_cancel(self, hook: Callable[[], object]) -> None:
        """Run ``hook`` if the client cancels the request being handled now."""
        msg_id = self.protocol.msg_id
        if msg_id is not None:
            self.protocol.cancel_hooks.setdefault(msg_id, []).append(hook)  # type: ignore[attr-defined]

    def done_with_request(self) -> None:
        msg_id = self.protocol.msg_id
        if msg_id is not None:
            self.protocol.cancel_hooks.pop(msg_id, None)  # type: ignore[attr-defined]

    # -- settings ---------------------------------------------------------------

    def read_settings(self, data: Any) -> Settings:
        settings, problems = parse_settings(data)
        for problem in problems:
            log.warning("settings: %s", problem)
        if problems:
            more = f" (and {len(problems) - 1} more, see the log)" if len(problems) > 1 else ""
            self.show_warning(f"kenning settings: {problems[0]}{more}")
        return settings

    def apply_settings(self, settings: Settings) -> None:
        if not self.session.apply_settings(settings):
            return
        if self.sync is not None:
            self.sync.resync_open_documents()
        self.start_refresh("kenning: indexing")

    # -- folders ----------------------------------------------------------------

    def add_folder(self, root: Path) -> Folder | None:
        return self.session.add_folder(root)

    def remove_folder(self, root: Path) -> None:
        self.session.remove_folder(root)

    def folder_of(self, path: Path) -> Folder | None:
        """The innermost workspace folder holding ``path``."""
        return self.session.folder_of(path)

    async def index_for(self, uri: str) -> tuple[Index, Path]:
        path = uri_to_path(uri)
        with contextlib.suppress(OSError):
            path = path.resolve()
        folder = self.folder_of(path)
        if folder is None:
            raise LocationError(f"{uri}: outside every workspace folder")
        index = await self.wait_ready(folder)
        return index, path

    async def wait_ready(self, folder: Folder) -> Index:
        try:
            return await asyncio.wrap_future(folder.ready)
        except KenningError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise KenningError(f"{folder.root}: the index could not be opened ({exc})") from exc

    async def ready_indexes(self) -> list[Index]:
        """Every folder's open index; folders that failed to open are logged and left out."""
        if not self.folders:
            raise KenningError("no workspace folder is open: open a folder to search it")
        out: list[Index] = []
        errors: list[str] = []
        for folder in list(self.folders.values()):
            try:
                out.append(await self.wait_ready(folder))
            except KenningError as exc:
                errors.append(str(exc))
        if not out:
            raise KenningError(errors[0] if errors else "no index is open")
        return out

    # -- index work ---------------------------------------------------------------

    def _status_changed(self) -> None:
        if self.status_feed is not None:
            self.status_feed.poke()

    def start_refresh(
        self, title: str, folders: Sequence[Folder] | None = None
    ) -> asyncio.Task[list[IndexReport]]:
        """Bring every folder (or ``folders``) up to date in the background."""
        self.refreshing += 1
        self._status_changed()
        task = asyncio.ensure_future(self._refresh(title, folders))
        task.add_done_callback(_log_failure)
        return task

    async def _refresh(
        self, title: str, folders: Sequence[Folder] | None = None
    ) -> list[IndexReport]:
        try:
            return await self.refresh_all(title, folders)
        finally:
            self.refreshing -= 1
            self._status_changed()

    async def refresh_all(
        self, title: str, folders: Sequence[Folder] | None = None
    ) -> list[IndexReport]:
        """Bring every folder (or ``folders``) up to date, with a progress bar."""
        folders = list(folders if folders is not None else self.folders.values())
        if not folders:
            return []
        progress = IndexProgress(self, title)
        await progress.begin(f"{len(folders)} folder(s)")
        jobs = [self.session.refresh_job(f, progress) for f in folders]

        # Cancelling the progress bar stops the indexing; cancelling a request
        # only gives up this request's share of jobs others may wait on too.
        def cancel_all() -> None:
            for job in jobs:
                job.cancel_by_user()

        progress.on_cancel(cancel_all)
        reports: list[IndexReport] = []
        try:
            results = await asyncio.gather(
                *(asyncio.shield(asyncio.wrap_future(j.future)) for j in jobs),
                return_exceptions=True,
            )
            for folder, result in zip(folders, results, strict=True):
                if isinstance(result, asyncio.CancelledError):
                    log.info("indexing %s was cancelled", folder.root)
                elif isinstance(result, BaseException):
                    log.warning("indexing %s failed: %s", folder.root, result)
                    # Searches still answer from what the index holds; say why it is behind.
                    self.show_warning(f"kenning: indexing {folder.root} failed: {result}")
                else:
                    reports.append(result)
        except asyncio.CancelledError:
            for job in jobs:
                job.release()
            raise
        finally:
            files = sum(r.files for r in reports)
            chunks = sum(r.chunks for r in reports)
            cancelled = any(r.cancelled for r in reports)
            busy = next((r.indexing_by for r in reports if r.indexing_by), None)
            progress.end(
                ("cancelled: " if cancelled else "")
                + (f"{describe(busy)} is indexing: " if busy else "")
                + f"{files} files, {chunks} chunks"
                + (f", {sum(r.pending for r in reports)} to embed" if cancelled else "")
            )
        return reports

    # -- shutting down -------------------------------------------------------------

    def shutdown(self) -> None:
        # Also reached when the client vanishes without shutdown/exit (stdin
        # closed): stop indexing now rather than finish a long job first.
        self.stop_work()
        super().shutdown()

    def stop_work(self) -> None:
        """Stop watching and indexing and close the indexes; called on shutdown."""
        if self.session.closing:
            return
        if self.watching is not None:
            self.watching.stop()
        self.session.close()
        self.queries.shutdown(wait=False, cancel_futures=True)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background indexing failed", exc_info=task.exception())
