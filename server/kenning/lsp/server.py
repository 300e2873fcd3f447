"""The language server: owns the workspace indexes, their executor and the settings.

Threads, and why:

* the asyncio event loop runs every handler; handlers only read state, start
  work and await it, so the loop never blocks;
* pygls's own handler pool reads stdin; nothing of ours runs there;
* ``kenning-index`` (:class:`~kenning.lsp.worker.IndexWorker`, one thread) does
  every index write: opening indexes, refreshes, editor buffers, embedding;
* ``kenning-query`` (two threads) answers searches; the engine gives each
  thread its own SQLite connection, so a search never waits behind indexing.

Tests and benchmarks choose the embedder by setting :data:`EMBEDDER_FACTORY`
before calling :func:`main` (see ``tests/e2e/fake_server.py``); by default the
real model is loaded by ``kenning.engine.embedder.load_embedder``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import logging.handlers
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as lsp
from pygls.exceptions import FeatureRequestError, JsonRpcException
from pygls.lsp.server import LanguageServer

from kenning import __version__
from kenning.config import Settings, kenning_home, parse_settings
from kenning.engine.embedder import Embedder, default_threads
from kenning.engine.home import check_home, owned_dir, repair, slot_problem
from kenning.engine.locks import describe
from kenning.engine.workspace import Index, IndexReport
from kenning.errors import HomeError, KenningError, LocationError, ModelError, UsageError
from kenning.lsp.convert import uri_to_path
from kenning.lsp.progress import IndexProgress
from kenning.lsp.transport import KenningProtocol, serve_stdio, serve_tcp
from kenning.lsp.worker import IndexWorker, LongJob

# Most chunking worker processes one big refresh may start.
INDEX_PROCESSES = 4
# While another process runs on a folder's index, how often to look whether it is done.
FOLLOW_S = 1.0

log = logging.getLogger("kenning.lsp")
T = TypeVar("T")

# Test hook: ``EMBEDDER_FACTORY(settings)`` returns the embedder to use. None
# means the real model via ``kenning.engine.embedder.load_embedder``.
EMBEDDER_FACTORY: Callable[[Settings], Embedder] | None = None

# Settings whose change means the indexes must be opened again.
INDEX_FIELDS = ("model", "device", "exclude", "include")

# JSON-RPC codes: LSP's RequestFailed for a user error, InvalidParams for bad arguments.
REQUEST_FAILED = -32803
INVALID_PARAMS = -32602


class KenningRequestError(JsonRpcException):
    """A KenningError on its way back to the client as an error response."""

    CODE = REQUEST_FAILED

    @classmethod
    def of(cls, exc: Any) -> KenningRequestError:
        code = INVALID_PARAMS if isinstance(exc, UsageError | LocationError) else REQUEST_FAILED
        return cls(message=str(exc), code=code)


def default_embedder(settings: Settings) -> Embedder:
    # Imported here: the model loader is heavy and a missing model must only
    # cost semantic search, never the server.
    from kenning.engine.embedder import load_embedder

    return load_embedder(settings.model, settings.device)


class EmbedderHolder:
    """One embedder for every folder, loaded once on the index thread.

    Queries never wait for the model: until it is loaded they are answered
    lexically (the response says so), which keeps the first answer fast.
    """

    def __init__(self, settings: Settings, on_failure: Callable[[str], None]) -> None:
        self.settings = settings
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self.error: str | None = None
        self.tried = False

    def get_nowait(self) -> Embedder | None:
        return self._embedder

    def load(self) -> Embedder | None:
        with self._lock:
            if self.tried:
                return self._embedder
            self.tried = True
            factory = EMBEDDER_FACTORY or default_embedder
            try:
                self._embedder = factory(self.settings)
                log.info("embedding model %s on %s", self._embedder.model_id, self._embedder.device)
            except (ModelError, ImportError) as exc:
                self.error = str(exc) or type(exc).__name__
                log.warning("no embedding model (%s): search is lexical only", self.error)
                self._on_failure(
                    f"kenning: no embedding model ({self.error}); search is lexical only"
                )
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("loading the embedding model failed", exc_info=True)
                self._on_failure(
                    f"kenning: the embedding model failed to load ({self.error}); "
                    "search is lexical only"
                )
            return self._embedder


@dataclass
class Folder:
    root: Path
    ready: Future[Index] = field(default_factory=Future)
    # Set when the folder leaves the workspace: queued jobs for it do nothing.
    closed: bool = False
    # Set while another process runs on this index and work of ours waits for it.
    waiting: bool = False

    @property
    def index(self) -> Index | None:
        if self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None:
            return self.ready.result()
        return None


class KenningServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "kenning",
            __version__,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
            protocol_cls=KenningProtocol,
        )
        self.settings = Settings()
        self.folders: dict[Path, Folder] = {}
        self.worker = IndexWorker()
        self.queries = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kenning-query")
        self.embedders = EmbedderHolder(self.settings, self.show_warning)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._shown: set[str] = set()
        self.closing = False
        self.initial_roots: list[Path] = []
        # Refreshes started and not finished (status reports the server busy meanwhile).
        self.refreshing = 0
        # Messages for the user found before the client connected, shown once it has.
        self.notes: list[str] = []
        # Filled in by the feature modules when they register.
        self.sync: Any = None
        self.watching: Any = None

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

    def on_cancel(self, hook: Callable[[], None]) -> None:
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
        old = self.settings
        self.settings = settings
        changed = [f for f in INDEX_FIELDS if getattr(old, f) != getattr(settings, f)]
        if old.index.max_file_bytes != settings.index.max_file_bytes:
            changed.append("index.maxFileBytes")
        if not changed:
            return
        log.info("settings changed (%s): reopening the indexes", ", ".join(changed))
        if old.model != settings.model or old.device != settings.device:
            self.embedders = EmbedderHolder(settings, self.show_warning)
        for root in list(self.folders):
            self.remove_folder(root)
            self.add_folder(root)
        if self.sync is not None:
            self.sync.resync_open_documents()
        self.start_refresh("kenning: indexing")

    # -- folders ----------------------------------------------------------------

    def add_folder(self, root: Path) -> Folder | None:
        root = root.expanduser().resolve()
        if root in self.folders:
            return self.folders[root]
        if not root.is_dir():
            log.warning("%s: not a folder; not indexed", root)
            self.show_warning(f"kenning: {root} is not a folder; it is not indexed")
            return None
        folder = Folder(root)
        self.folders[root] = folder
        folder.ready = self.worker.submit(self._open_index, root)
        return folder

    def _open_index(self, root: Path) -> Index:
        try:
            # A big refresh (the first index, a branch switch) chunks in worker
            # processes, one core left to the editor: requests stay answered.
            # At most INDEX_PROCESSES: each is a Python with its own parsers (35 MB).
            index = Index(
                root,
                self.settings,
                embedder=self.embedders.get_nowait,
                workers=min(INDEX_PROCESSES, default_threads()),
                offload=True,
                owner="language server",
            )
        except KenningError as exc:
            log.warning("%s: %s", root, exc)
            self.show_warning(f"kenning: {exc}")
            raise
        if index.rebuilt:
            # The engine logged the details; the editor shows one message too.
            self.show_warning(
                f"kenning: the index of {root} was damaged; it has been moved aside and rebuilt"
            )
        log.info("opened the index of %s at %s", root, index.store.path)
        return index

    def remove_folder(self, root: Path) -> None:
        folder = self.folders.pop(root.expanduser().resolve(), None)
        if folder is None:
            return
        folder.closed = True
        self.worker.cancel_matching(f":{folder.root}")

        def close() -> None:
            index = folder.index
            if index is not None:
                index.close()
                log.info("closed the index of %s", folder.root)

        self.worker.submit(close)

    def folder_of(self, path: Path) -> Folder | None:
        """The innermost workspace folder holding ``path``."""
        best: Folder | None = None
        for root, folder in self.folders.items():
            inside = path == root or root in path.parents
            if inside and (best is None or len(root.parts) > len(best.root.parts)):
                best = folder
        return best

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

    def refresh_job(self, folder: Folder, progress: IndexProgress | None = None) -> LongJob:
        hold = _RunHold()

        def run(cancel: threading.Event) -> IndexReport:
            if folder.closed:
                return IndexReport(cancelled=True)
            index = folder.ready.result()
            self.embedders.load()
            hold.take(index)
            report = index.refresh(progress=progress, cancel=cancel)
            if report.indexing_by is not None:
                self.wait_for_others(folder, report)
                return report
            if not report.cancelled:
                threading.Thread(target=index.warm_search, name="kenning-warm", daemon=True).start()
            for err in report.errors[:20]:
                log.warning("skipped %s", err)
            if not report.cancelled:
                log.info(
                    "%s: %d files, %d chunks; %d changed, %d embedded, %d pending (%.2fs)",
                    folder.root,
                    report.files,
                    report.chunks,
                    report.changed,
                    report.embedded,
                    report.pending,
                    report.took_s,
                )
            return report

        return hold.until_done(self.worker.submit_long(f"refresh:{folder.root}", run), run)

    def embed_soon(self, folder: Folder) -> LongJob:
        hold = _RunHold()

        def run(cancel: threading.Event) -> IndexReport:
            if folder.closed:
                return IndexReport(cancelled=True)
            index = folder.ready.result()
            self.embedders.load()
            hold.take(index)
            report = index.embed_pending(cancel=cancel)
            if report.indexing_by is not None:
                self.wait_for_others(folder, report)
            return report

        return hold.until_done(self.worker.submit_long(f"embed:{folder.root}", run), run)

    def wait_for_others(self, folder: Folder, report: IndexReport) -> None:
        """Another process was running on ``folder``'s index, so our run did
        nothing: that process embeds what is pending (ours included), and once
        it is done a refresh of ours catches up (buffers, what it left)."""
        if folder.waiting:
            return
        folder.waiting = True
        log.info(
            "%s: %s is indexing it; this server goes on when it is done",
            folder.root,
            describe(report.indexing_by or {}),
        )
        self.call_on_loop(self._follow_later, folder)

    def _follow_later(self, folder: Folder) -> None:
        assert self.loop is not None
        self.loop.call_later(FOLLOW_S, lambda: asyncio.ensure_future(self._follow(folder)))

    async def _follow(self, folder: Folder) -> None:
        index = folder.index
        if folder.closed or self.closing or index is None:
            folder.waiting = False
            return
        try:
            holder = await self.in_query_thread(index.indexing_by)
        except Exception:  # shutting down, or the index closed under us
            folder.waiting = False
            return
        if holder is not None:
            self._follow_later(folder)
            return
        folder.waiting = False
        log.info("%s: the other process is done; catching up", folder.root)
        self.refresh_job(folder)

    def start_refresh(
        self, title: str, folders: Sequence[Folder] | None = None
    ) -> asyncio.Task[list[IndexReport]]:
        """Bring every folder (or ``folders``) up to date in the background."""
        self.refreshing += 1
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

    async def refresh_all(
        self, title: str, folders: Sequence[Folder] | None = None
    ) -> list[IndexReport]:
        """Bring every folder (or ``folders``) up to date, with a progress bar."""
        folders = list(folders if folders is not None else self.folders.values())
        if not folders:
            return []
        progress = IndexProgress(self, title)
        await progress.begin(f"{len(folders)} folder(s)")
        jobs = [self.refresh_job(f, progress) for f in folders]
        # Cancelling the progress bar stops the indexing; cancelling a request
        # only gives up this request's share of jobs others may wait on too.
        progress.on_cancel(lambda: [j.cancel_by_user() for j in jobs])
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
        if self.closing:
            return
        self.closing = True
        if self.watching is not None:
            self.watching.stop()
        folders = list(self.folders.values())
        self.folders.clear()

        def close_all() -> None:
            for folder in folders:
                index = folder.index
                if index is not None:
                    try:
                        index.close()
                    except Exception:
                        log.warning("closing %s failed", folder.root, exc_info=True)

        closed = self.worker.submit(close_all)
        self.worker.close(wait=True)
        if not closed.done():
            close_all()
        self.queries.shutdown(wait=False, cancel_futures=True)


class _RunHold:
    """Keeps a folder's run lock from a long job's first slice to its end.

    Edits interrupt a long job and it resumes after them; without this, each
    interruption would let another process's run slip in between the slices.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: Index | None = None
        self._done = False

    def take(self, index: Index) -> None:
        with self._lock:
            if self._index is None and not self._done and index.run_lock.acquire():
                self._index = index

    def until_done(self, job: LongJob, fn: Any) -> LongJob:
        # A queued job with the same key may have been handed back instead: its
        # own hold is the one that counts.
        if job.fn is fn:
            job.future.add_done_callback(lambda _f: self.drop())
        return job

    def drop(self) -> None:
        with self._lock:
            self._done = True
            if self._index is not None:
                self._index.run_lock.release()
                self._index = None


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background indexing failed", exc_info=task.exception())


def create_server() -> KenningServer:
    from kenning.lsp.features import lifecycle

    server = KenningServer()
    lifecycle.register(server)
    return server


# -- logging ------------------------------------------------------------------------


class LspLogHandler(logging.Handler):
    """Sends log records to the client as ``window/logMessage``.

    ``server`` is the current session's: over TCP each client gets its own.
    """

    LEVELS = {
        logging.ERROR: lsp.MessageType.Error,
        logging.WARNING: lsp.MessageType.Warning,
        logging.INFO: lsp.MessageType.Info,
    }

    def __init__(self, server: KenningServer | None = None) -> None:
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

    def _send(self, server: KenningServer, kind: lsp.MessageType, message: str) -> None:
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


def setup_logging(
    verbose: bool = False, server: KenningServer | None = None
) -> tuple[Path | None, LspLogHandler]:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kenning lsp")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", action="store_true", help="serve on a TCP socket instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs in the log file")


def usable_home() -> tuple[Path | None, str | None]:
    """Make sure KENNING_HOME can be used, or point it at a folder for this session.

    An editor cannot fix its server's environment as a shell user can, and a
    server without a home could not index at all: so it indexes into a
    temporary folder, removed when it exits, and says so. Returns that
    folder (None when the home is fine) and the message to show.
    """
    try:
        check_home()
    except HomeError as exc:
        temp = Path(tempfile.mkdtemp(prefix="kenning-home-"))
        os.environ["KENNING_HOME"] = str(temp)
        return temp, (
            f"kenning: {exc}. Until then this session keeps its indexes in {temp}, "
            "removed when it ends."
        )
    return None, None


def run(args: argparse.Namespace) -> int:
    temp_home, note = usable_home()
    path, client_log = setup_logging(getattr(args, "verbose", False))
    log.info("kenning %s language server (pid %d), log file %s", __version__, os.getpid(), path)
    if note is not None:
        log.warning("%s", note)

    def new_server() -> KenningServer:
        server = create_server()
        client_log.server = server
        if note is not None:
            server.notes.append(note)
        return server

    try:
        if args.tcp:
            return serve_tcp(new_server, args.host, args.port)
        return serve_stdio(new_server())
    finally:
        if temp_home is not None:
            shutil.rmtree(temp_home, ignore_errors=True)
