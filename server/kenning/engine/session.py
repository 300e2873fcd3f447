"""The live state of one process: folders and their indexes, the model, the
index executor, editor buffers and near-duplicate hints; and what happens to
them, as typed events.

A door (the language server today; an agent server, a remote shard next)
holds one :class:`Session`, turns its requests into session calls and its
subscribers turn the events into its own protocol. Nothing here knows a
protocol, and nothing polls: every change already passes through a call here
(:meth:`Session.apply_settings`, :meth:`Session.add_folder`, ...), through an
index listener (:meth:`~kenning.engine.workspace.Index.add_listener`), the
model loader or the executor, and each one is said as an event.

Threads: index writes run on the executor's one thread
(:class:`~kenning.engine.executor.IndexWorker`); events are emitted on the
thread where the change happened (the executor's, the caller's), so a
subscriber must be quick and thread-safe (hand the event to its own loop).

Tests and benchmarks choose the embedder by setting :data:`EMBEDDER_FACTORY`
(see ``tests/e2e/fake_server.py``); by default the real model is loaded by
:func:`kenning.engine.embedder.load_embedder`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kenning.config import Settings, kenning_home
from kenning.engine.embedder import Embedder, default_threads, load_embedder, precision_of
from kenning.engine.executor import IndexWorker, LongJob
from kenning.engine.locks import describe
from kenning.engine.workspace import Index, IndexChange, IndexReport
from kenning.errors import KenningError, LocationError, ModelError

if TYPE_CHECKING:
    # Imported where used: near-duplicates pull in datasketch and scipy (0.4 s),
    # which a session without them (and every spawned index worker that
    # re-imports a door's main module) should not pay for.
    from kenning.engine.duplicates import Duplicates, FolderHints, Hint

log = logging.getLogger(__name__)
T = TypeVar("T")

# Test hook: ``EMBEDDER_FACTORY(settings)`` returns the embedder to use. None
# means the real model via :func:`kenning.engine.embedder.load_embedder`.
EMBEDDER_FACTORY: Callable[[Settings], Embedder] | None = None

# Settings whose change means the indexes must be opened again.
INDEX_FIELDS = ("model", "device", "exclude", "include")
# Most chunking worker processes one big refresh may start.
INDEX_PROCESSES = 4
# Files changed on disk: more than this in one batch (a checkout) is one full refresh.
MAX_PATHS = 500
IGNORE_FILES = {".gitignore", ".kenningignore", ".ignore"}

ProgressFn = Callable[[str, int, int], None]


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderOpened:
    root: Path
    index: Index


@dataclass(frozen=True)
class FolderClosed:
    root: Path


@dataclass(frozen=True)
class SettingsChanged:
    old: Settings
    new: Settings
    # Wire names of what changed that reopens the indexes ("model", "index.maxFileBytes").
    reopened: tuple[str, ...]


@dataclass(frozen=True)
class ModelReady:
    model: str
    device: str
    precision: str | None


@dataclass(frozen=True)
class ModelFailed:
    error: str
    # One line for the user.
    message: str


@dataclass(frozen=True)
class IndexChanged:
    """A write to a folder's index: ``paths`` whose chunks or buffer changed,
    ``vectors`` when chunk vectors were written."""

    root: Path
    paths: frozenset[str]
    vectors: bool


@dataclass(frozen=True)
class Progress:
    root: Path
    stage: str  # a stage module's STAGE: "scan", "prepare" or "embed" (see types.Progress)
    done: int
    total: int


@dataclass(frozen=True)
class WorkChanged:
    """The executor started or finished a job (``running``: its key, or None)."""

    running: str | None
    queued: tuple[str, ...]


@dataclass(frozen=True)
class DuplicatesChanged:
    """The near-duplicate hints of a folder may differ: built, updated, or gone."""

    root: Path


@dataclass(frozen=True)
class Notice:
    """Something the user should be told (once): a folder that cannot be
    indexed, a damaged index rebuilt, a failed refresh."""

    message: str


Event = (
    FolderOpened
    | FolderClosed
    | SettingsChanged
    | ModelReady
    | ModelFailed
    | IndexChanged
    | Progress
    | WorkChanged
    | DuplicatesChanged
    | Notice
)
Listener = Callable[[Event], None]


# -- the model ------------------------------------------------------------------------


def default_embedder(settings: Settings) -> Embedder:
    return load_embedder(settings.model, settings.device)


class EmbedderHolder:
    """One embedder for every folder, loaded once on the index thread.

    Queries never wait for the model: until it is loaded they are answered
    lexically (the response says so), which keeps the first answer fast. A
    missing model only costs semantic search, never the session.
    """

    def __init__(self, settings: Settings, emit: Listener) -> None:
        self.settings = settings
        self._emit = emit
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self.error: str | None = None
        self.tried = False

    def get_nowait(self) -> Embedder | None:
        return self._embedder

    @property
    def decided(self) -> bool:
        """Loaded, or failed to: what matches and searches get is settled."""
        return self._embedder is not None or self.error is not None

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
                message = f"kenning: no embedding model ({self.error}); search is lexical only"
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("loading the embedding model failed", exc_info=True)
                message = (
                    f"kenning: the embedding model failed to load ({self.error}); "
                    "search is lexical only"
                )
            embedder = self._embedder
        if embedder is not None:
            self._emit(ModelReady(embedder.model_id, embedder.device, precision_of(embedder)))
        else:
            self._emit(ModelFailed(self.error or "", message))
        return embedder


# -- folders --------------------------------------------------------------------------


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


@dataclass
class _BuildResult:
    cancelled: bool = False


# -- the session ----------------------------------------------------------------------


class Session:
    """The live state of one process. Thread-safe where noted; the rest is
    called from the door's own thread (the language server's event loop)."""

    def __init__(
        self,
        settings: Settings | None = None,
        owner: str = "language server",
        workers: int | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.owner = owner
        # A big refresh (the first index, a branch switch) chunks in worker
        # processes, one core left to the editor: requests stay answered.
        # At most INDEX_PROCESSES: each is a Python with its own parsers (35 MB).
        self.workers = workers or min(INDEX_PROCESSES, default_threads())
        self.folders: dict[Path, Folder] = {}
        self._listeners: tuple[Listener, ...] = ()
        self.executor = IndexWorker(on_change=self._work_changed)
        self.embedders = EmbedderHolder(self.settings, self.emit)
        self.closing = False
        # Near-duplicate state by folder root, while duplicates.diagnostics is on.
        self.duplicates: dict[Path, FolderHints] = {}
        self._dup_lock = threading.RLock()
        # Editor buffers not indexed (ignored, binary, too big): logged once each.
        self._skipped: set[Path] = set()
        # Near-duplicates kept whatever the setting says: a door that answers
        # duplicates on request (the MCP server) turns this on at the first one.
        self.keep_duplicates = False
        self._dup_ready = threading.Condition(self._dup_lock)
        # Set by load_model_soon: the model loads on a thread of its own and the
        # index thread never waits for it (words first, vectors once it is there).
        self._model_thread: threading.Thread | None = None
        # Changes on disk handed to the index thread and not yet applied.
        self._changes: set[Future[str]] = set()
        self._changes_lock = threading.Condition()

    # -- events ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event; returns the unsubscribe."""
        self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            self._listeners = tuple(fn for fn in self._listeners if fn is not listener)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.error("a session listener failed on %s", type(event).__name__, exc_info=True)

    def _work_changed(self, running: str | None, queued: list[str]) -> None:
        self.emit(WorkChanged(running, tuple(queued)))

    # -- settings -------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> bool:
        """Use ``settings`` from now on; True when the indexes were reopened
        (then everything needs a refresh and the open buffers a resync)."""
        old = self.settings
        self.settings = settings
        changed = [f for f in INDEX_FIELDS if getattr(old, f) != getattr(settings, f)]
        if old.index.max_file_bytes != settings.index.max_file_bytes:
            changed.append("index.maxFileBytes")
        if old != settings:
            self.emit(SettingsChanged(old, settings, tuple(changed)))
        if changed:
            if self.folders:
                log.info("settings changed (%s): reopening the indexes", ", ".join(changed))
            if old.model != settings.model or old.device != settings.device:
                self.embedders = EmbedderHolder(settings, self.emit)
                if self._model_thread is not None:
                    self._model_thread = None
                    self.load_model_soon()
            else:
                self.embedders.settings = settings
            for root in list(self.folders):
                self.remove_folder(root)
                self.add_folder(root)
        self.sync_duplicates()
        return bool(changed)

    # -- the model ------------------------------------------------------------------

    def load_model_soon(self) -> None:
        """Load the model on a thread of its own, off every request's path and out
        of the way of the first words; what is pending is embedded once it is there."""
        if self._model_thread is not None:
            return
        holder = self.embedders

        def load() -> None:
            if holder.load() is not None and not self.closing:
                for folder in list(self.folders.values()):
                    self.embed_soon(folder)

        self._model_thread = threading.Thread(target=load, name="kenning-model", daemon=True)
        self._model_thread.start()

    def wait_model(self, timeout: float) -> Embedder | None:
        """The model, waiting up to ``timeout`` for it to load (or fail to)."""
        thread = self._model_thread
        if thread is None:
            return self.embedders.load()
        thread.join(timeout)
        return self.embedders.get_nowait()

    def _model_on_index_thread(self) -> None:
        # With a model thread, index work never waits for it: it embeds what is
        # pending once the model is there (load_model_soon).
        if self._model_thread is None:
            self.embedders.load()

    # -- folders --------------------------------------------------------------------

    def add_folder(self, root: Path) -> Folder | None:
        root = root.expanduser().resolve()
        if root in self.folders:
            return self.folders[root]
        if not root.is_dir():
            log.warning("%s: not a folder; not indexed", root)
            self.emit(Notice(f"kenning: {root} is not a folder; it is not indexed"))
            return None
        folder = Folder(root)
        self.folders[root] = folder
        folder.ready = self.executor.submit(self._open_index, folder)
        # Said once the future holds the index, so that folder.index answers.
        folder.ready.add_done_callback(lambda f: self._opened(folder, f))
        return folder

    def _open_index(self, folder: Folder) -> Index:
        root = folder.root
        try:
            index = Index(
                root,
                self.settings,
                embedder=self.embedders.get_nowait,
                workers=self.workers,
                offload=True,
                owner=self.owner,
            )
        except KenningError as exc:
            log.warning("%s: %s", root, exc)
            self.emit(Notice(f"kenning: {exc}"))
            raise
        if index.rebuilt:
            # The engine logged the details; the user gets one message too.
            self.emit(
                Notice(
                    f"kenning: the index of {root} was damaged; it has been moved aside and rebuilt"
                )
            )
        log.info("opened the index of %s at %s", root, index.store.path)

        def changed(change: IndexChange) -> None:
            self.emit(IndexChanged(root, change.paths, change.vectors))

        index.add_listener(changed)
        return index

    def _opened(self, folder: Folder, future: Future[Index]) -> None:
        if future.cancelled() or future.exception() is not None or folder.closed:
            return
        self.emit(FolderOpened(folder.root, future.result()))
        self.sync_duplicates()

    def remove_folder(self, root: Path) -> None:
        folder = self.folders.pop(root.expanduser().resolve(), None)
        if folder is None:
            return
        folder.closed = True
        self.executor.cancel_matching(f":{folder.root}")

        def close() -> None:
            index = folder.index
            if index is not None:
                index.close()
                log.info("closed the index of %s", folder.root)

        self.executor.submit(close)
        self.sync_duplicates()
        self.emit(FolderClosed(folder.root))

    def folder_of(self, path: Path) -> Folder | None:
        """The innermost folder holding ``path``."""
        best: Folder | None = None
        for root, folder in list(self.folders.items()):
            inside = path == root or root in path.parents
            if inside and (best is None or len(root.parts) > len(best.root.parts)):
                best = folder
        return best

    # -- index work -----------------------------------------------------------------

    def refresh_job(
        self, folder: Folder, progress: ProgressFn | None = None, embed: bool = True
    ) -> LongJob:
        """Bring ``folder`` up to date on the executor (a long job edits interrupt).
        With ``embed`` False, words only: the chunks are searchable by words as
        soon as they are committed, and an :meth:`embed_soon` follows."""
        hold = _RunHold()

        def report_progress(stage: str, done: int, total: int) -> None:
            self.emit(Progress(folder.root, stage, done, total))
            if progress is not None:
                progress(stage, done, total)

        def run(cancel: threading.Event) -> IndexReport:
            if folder.closed:
                return IndexReport(cancelled=True)
            index = folder.ready.result()
            if embed:
                self._model_on_index_thread()
            hold.take(index)
            report = index.refresh(progress=report_progress, cancel=cancel, embed=embed)
            if report.indexing_by is not None:
                self._wait_for_others(folder, report)
                return report
            if not report.cancelled:
                threading.Thread(target=index.warm_search, name="kenning-warm", daemon=True).start()
                if not embed and report.pending and not self.closing:
                    self.embed_soon(folder)
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

        return hold.until_done(self.executor.submit_long(f"refresh:{folder.root}", run), run)

    def embed_soon(self, folder: Folder) -> LongJob:
        """Embed what is pending in ``folder`` (a long job edits interrupt)."""
        hold = _RunHold()

        def run(cancel: threading.Event) -> IndexReport:
            if folder.closed:
                return IndexReport(cancelled=True)
            index = folder.ready.result()
            self._model_on_index_thread()
            if index.embedder is None:
                return IndexReport()
            hold.take(index)
            report = index.embed_pending(cancel=cancel)
            if report.indexing_by is not None:
                self._wait_for_others(folder, report)
            return report

        return hold.until_done(self.executor.submit_long(f"embed:{folder.root}", run), run)

    def _wait_for_others(self, folder: Folder, report: IndexReport) -> None:
        """Another process was running on ``folder``'s index, so our run did
        nothing: that process embeds what is pending (ours included), and once
        it is done a refresh of ours catches up (buffers, what it left)."""
        if folder.waiting:
            return
        folder.waiting = True
        log.info(
            "%s: %s is indexing it; this process goes on when it is done",
            folder.root,
            describe(report.indexing_by or {}),
        )
        index = folder.ready.result()
        threading.Thread(
            target=self._follow, args=(folder, index), name="kenning-follow", daemon=True
        ).start()

    def _follow(self, folder: Folder, index: Index) -> None:
        # Blocks in the kernel until the other process lets go: no polling.
        try:
            index.run_lock.wait_released()
        except Exception:  # the index closed under us
            folder.waiting = False
            return
        folder.waiting = False
        if folder.closed or self.closing:
            return
        log.info("%s: the other process is done; catching up", folder.root)
        self.refresh_job(folder)

    # -- editor buffers (index thread) ------------------------------------------------

    def set_buffer(
        self, folder: Folder, path: Path, text: str, current: Callable[[], bool]
    ) -> Future[bool]:
        """Index ``text`` as ``path``'s content, unless ``current()`` says a newer
        edit superseded it by the time the executor gets to it. True when indexed."""

        def apply() -> bool:
            if folder.closed or not current():
                return False
            index = folder.ready.result()
            limit = self.settings.index.max_file_bytes
            ok = len(text) <= limit and index.set_buffer(path, text)
            if not ok:
                if len(text) > limit:
                    index.drop_buffer(path, reload=False)
                if path not in self._skipped:
                    self._skipped.add(path)
                    log.info(
                        "%s: not indexed (ignored or excluded, binary, or over %d bytes)",
                        index.rel(path),
                        limit,
                    )
            else:
                self._skipped.discard(path)
            return ok

        return self._then_embed(folder, self.executor.submit(apply))

    def drop_buffer(self, folder: Folder, path: Path, current: Callable[[], bool]) -> Future[bool]:
        """The editor closed ``path``: index it from disk again."""

        def drop() -> bool:
            self._skipped.discard(path)
            if folder.closed or not current():
                return False
            folder.ready.result().drop_buffer(path)
            return True

        return self._then_embed(folder, self.executor.submit(drop))

    def _then_embed(self, folder: Folder, future: Future[bool]) -> Future[bool]:
        def done(f: Future[bool]) -> None:
            if not f.cancelled() and f.exception() is None and f.result() and not self.closing:
                self.embed_soon(folder)

        future.add_done_callback(done)
        return future

    def files_changed(self, folder: Folder, paths: list[Path], urgent: bool = False) -> Future[str]:
        """Files changed on disk: re-read them ("paths"), or refresh the whole
        folder when the list cannot describe the change ("full"); then embed.
        ``urgent``: ahead of the long job running, without its minimum slice."""

        def apply() -> str:
            if folder.closed:
                return "none"
            index = folder.ready.result()
            if len(paths) > MAX_PATHS:
                return "full"
            rels: list[str] = []
            known: dict[str, Any] | None = None
            for p in paths:
                if p.name in IGNORE_FILES or p.is_dir():
                    return "full"
                try:
                    rel = index.rel(p)
                except LocationError:
                    continue
                if not p.exists() and index.store.file(rel) is None:
                    # Not a file we know: maybe a folder that was removed.
                    known = known if known is not None else index.store.files()
                    if any(k.startswith(rel + "/") for k in known):
                        return "full"
                    continue
                rels.append(rel)
            if rels:
                report = index.refresh_paths(rels)
                log.info(
                    "%s: %d changed file(s) re-read, %d removed",
                    folder.root,
                    report.changed,
                    report.deleted,
                )
            return "paths" if rels else "none"

        future = self.executor.submit(apply, urgent=urgent)

        def done(f: Future[str]) -> None:
            if f.cancelled() or f.exception() is not None or folder.closed or self.closing:
                return
            if f.result() == "paths":
                self.embed_soon(folder)

        future.add_done_callback(done)
        return future

    # -- near-duplicates --------------------------------------------------------------

    def sync_duplicates(self) -> None:
        """Start, restart or stop the folders' near-duplicate state to match the
        settings and the open folders. Thread-safe."""
        with self._dup_lock:
            on = self._duplicates_on() and not self.closing
            threshold = self.settings.duplicates.threshold
            gone = [r for r in self.duplicates if not on or r not in self.folders]
            for root in gone:
                state = self.duplicates.pop(root)
                state.index.remove_listener(state.listener)
            if not on:
                if gone:
                    log.info("duplicate hints are off")
            else:
                for root, folder in list(self.folders.items()):
                    index = folder.index
                    if index is None or folder.closed:
                        continue
                    old = self.duplicates.get(root)
                    if old is not None and old.index is index and old.threshold == threshold:
                        continue
                    if old is not None:
                        old.index.remove_listener(old.listener)
                    from kenning.engine.duplicates import FolderHints

                    state = FolderHints(index, threshold)
                    state.listener = lambda change, root=root, state=state: self._dup_changed(
                        root, state, change
                    )
                    self.duplicates[root] = state
                    index.add_listener(state.listener)
                    self._build_duplicates(folder)
        for root in gone:
            self.emit(DuplicatesChanged(root))

    def _build_duplicates(self, folder: Folder) -> None:
        root = folder.root

        def run(cancel: threading.Event) -> _BuildResult:
            # The state current when the job runs: a queued job with this key
            # is reused when the threshold changes meanwhile.
            state = self.duplicates.get(root)
            if folder.closed or state is None or state.ready:
                return _BuildResult()
            if not state.build(cancel):
                return _BuildResult(cancelled=True)
            self._duplicates_built(root, state)
            return _BuildResult()

        self.executor.submit_long(f"duplicates:{root}", run)

    def _duplicates_built(self, root: Path, state: FolderHints) -> None:
        log.info("%s: duplicate hints ready (%d chunks compared)", root, len(state))
        with self._dup_ready:
            self._dup_ready.notify_all()
        self.emit(DuplicatesChanged(root))

    def want_duplicates(self, folder: Folder) -> Future[None]:
        """Keep near-duplicates whatever the setting says, and build ``folder``'s
        now, ahead of the index work queued (a door that answers duplicates on
        request: the first one should not wait for a whole first index)."""
        if not self.keep_duplicates:
            self.keep_duplicates = True
            self.sync_duplicates()

        def build() -> None:
            state = self.duplicates.get(folder.root)
            if state is not None and not state.ready and not folder.closed:
                state.build()
                self._duplicates_built(folder.root, state)

        return self.call(build)

    def _dup_changed(self, root: Path, state: FolderHints, change: IndexChange) -> None:
        # On the index thread, after the write.
        if self.duplicates.get(root) is not state or not state.ready:
            return  # an old state, or the build (still to come) reads everything
        from kenning.engine.duplicates import MAX_UPDATE_PATHS

        if len(change.paths) > MAX_UPDATE_PATHS:
            state.ready = False
            folder = self.folders.get(root)
            if folder is not None:
                self._build_duplicates(folder)
            return
        if change.paths:
            state.update(change.paths)
        self.emit(DuplicatesChanged(root))

    def duplicate_state(self, root: Path) -> FolderHints | None:
        return self.duplicates.get(root)

    def hints(self, state: FolderHints, path: Path) -> list[Hint]:
        """The chunks of ``path`` with near-duplicates in ``state`` (any thread)."""
        try:
            rel = state.index.rel(path)
        except KenningError:
            return []
        return state.hints(rel)

    def _duplicates_on(self) -> bool:
        return self.keep_duplicates or self.settings.duplicates.diagnostics

    def duplicates_of(
        self, folder: Folder, path: Path, line: int, wait_s: float = 0.0
    ) -> Duplicates:
        """The near-duplicates of the chunk at ``path``:``line`` (1-based; any thread),
        waiting up to ``wait_s`` for the folder's near-duplicate index to be built."""
        if not self._duplicates_on():
            raise KenningError(
                "near-duplicate detection is off: set kenning.duplicates.diagnostics to true"
            )
        deadline = time.monotonic() + wait_s
        with self._dup_ready:
            while True:
                index = folder.index
                state = self.duplicates.get(folder.root)
                if state is not None and state.ready and index is not None and state.index is index:
                    break
                left = deadline - time.monotonic()
                if left <= 0 or folder.closed or self.closing:
                    raise KenningError(
                        "the near-duplicate index is still being built; try again shortly"
                    )
                self._dup_ready.wait(left)
        from kenning.engine.duplicates import duplicates_at

        return duplicates_at(state, index.rel(path), line)

    # -- requests ---------------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the index thread (it may write: signatures, patterns)
        as soon as the job running there reaches a safe point."""
        return self.executor.submit(fn, urgent=True)

    def paths_changed(self, paths: list[Path]) -> None:
        """Files changed on disk under any folder (a watcher's report; any
        thread): each folder re-reads its own at once. The session's home (its
        indexes, logs) is left out."""
        home = kenning_home()
        by_folder: dict[Path, list[Path]] = {}
        for p in paths:
            if p == home or home in p.parents:
                continue
            folder = self.folder_of(p)
            if folder is not None:
                by_folder.setdefault(folder.root, []).append(p)
        for root, group in by_folder.items():
            folder = self.folders.get(root)
            if folder is None:
                continue
            # An agent searches right after it writes: no minimum slice for
            # the job running (an editor's typing goes through buffers instead).
            self._track(self.files_changed(folder, group, urgent=True), folder)

    def _track(self, future: Future[Any], folder: Folder) -> None:
        with self._changes_lock:
            self._changes.add(future)
        future.add_done_callback(lambda f: self._change_applied(f, folder))

    def _change_applied(self, future: Future[Any], folder: Folder) -> None:
        full = (
            not future.cancelled()
            and future.exception() is None
            and future.result() == "full"
            and not folder.closed
            and not self.closing
        )
        if full:
            # The list could not say what changed (a checkout, an ignore file, a
            # folder removed): read the folder again, words first when the model
            # is on a thread of its own.
            self._track(self.refresh_job(folder, embed=self._model_thread is None).future, folder)
        with self._changes_lock:
            self._changes.discard(future)
            self._changes_lock.notify_all()

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until the changes reported to :meth:`paths_changed`
        so far are in the indexes (words; vectors follow). True when they are."""
        deadline = time.monotonic() + timeout
        with self._changes_lock:
            while self._changes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changes_lock.wait(left)
        return True

    def phase(self) -> str:
        """What the index thread is at: "reading" (files, words first), "loading
        model", "embedding" or "ready"."""
        keys = [k for k in [self.executor.running(), *self.executor.queued()] if k]
        with self._changes_lock:
            changes = bool(self._changes)
        if changes or any(k.startswith("refresh:") for k in keys):
            return "reading"
        if self._model_thread is not None and self._model_thread.is_alive():
            return "loading model"
        if any(k.startswith("embed:") for k in keys):
            return "embedding"
        return "ready"

    # -- shutting down ----------------------------------------------------------------

    def close(self) -> None:
        """Stop indexing and close the indexes; queued work is dropped."""
        if self.closing:
            return
        self.closing = True
        folders = list(self.folders.values())
        self.folders.clear()
        for folder in folders:
            folder.closed = True

        def close_all() -> None:
            for folder in folders:
                index = folder.index
                if index is not None:
                    try:
                        index.close()
                    except Exception:
                        log.warning("closing %s failed", folder.root, exc_info=True)

        closed = self.executor.submit(close_all)
        self.executor.close(wait=True)
        if not closed.done():
            close_all()
