"""Indexes kept fresh in the background for a door with no editor (the MCP server).

:class:`LiveIndexes` opens one :class:`~kenning.engine.workspace.Index` per root
and does every index write on one thread of its own, in this order of urgency:

1. work asked for by a request (signatures for duplicates, patterns);
2. files the watcher saw change: re-read at once, so their words are
   searchable within a fraction of a second;
3. a full refresh of a root (the first one, a checkout, an ignore file edited),
   words only: searches answer from what each commit holds meanwhile;
4. embedding what is pending, newest first, in batches that the work above
   interrupts; it resumes when that is done.

The model loads on a thread of its own, never on a request's path nor in the
way of the first words: until it has, searches are lexical and say so. Nothing here
polls: the thread sleeps on a condition until there is work.

This is the live state the language server keeps in its own classes today;
when the engine's session object lands, the MCP server can move onto it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from kenning.config import Settings
from kenning.engine.embedder import Embedder, default_threads
from kenning.engine.locks import describe
from kenning.engine.watch import FolderWatcher
from kenning.engine.workspace import Index
from kenning.errors import KenningError, LocationError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Most chunking worker processes one big refresh may start (each a Python with
# its own parsers, 35 MB), as in the language server.
INDEX_PROCESSES = 4
# More changed paths than this at once (a checkout) is cheaper as one full refresh.
MAX_PATHS = 300
# A change to one of these may bring files in or leave them out.
IGNORE_FILES = frozenset({".gitignore", ".ignore", ".kenningignore"})
# While another process runs on an index, how long to wait before trying again.
RETRY_S = 2.0

EmbedderFactory = Callable[[], Embedder]


class LiveIndexes:
    """The indexes of a set of roots, kept up to date while files change on disk."""

    def __init__(
        self,
        settings: Settings,
        embedder_factory: EmbedderFactory | None,
        owner: str = "mcp server",
        watch: bool = True,
        home: Path | None = None,
    ) -> None:
        self.settings = settings
        self.owner = owner
        self.watch = watch
        self.home = home
        self._factory = embedder_factory
        self._embedder: Embedder | None = None
        self.model_error: str | None = None
        self.model_tried = threading.Event()
        self._model_thread: threading.Thread | None = None
        self.indexes: dict[Path, Index] = {}
        self._cond = threading.Condition()
        self._asked: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._paths: dict[Path, set[Path]] = {}
        self._full: list[Path] = []
        self._waiting_for_others: dict[Path, float] = {}
        self._to_close: list[Index] = []
        self._cancel = threading.Event()
        self._busy = ""  # what the thread is doing now: "" when idle
        self._closed = False
        self._first_words = threading.Event()
        self.watcher: FolderWatcher | None = None
        self.watch_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="kenning-live", daemon=True)
        self._thread.start()

    # -- roots ------------------------------------------------------------------

    def set_roots(self, roots: Sequence[Path]) -> list[str]:
        """Index these roots (and stop indexing others). Returns the problems met
        (a root that is not a folder, an index that cannot be opened), one line each."""
        problems: list[str] = []
        wanted: dict[Path, None] = {}
        for root in roots:
            try:
                wanted[Path(root).expanduser().resolve()] = None
            except OSError as exc:
                problems.append(f"{root}: {exc.strerror or exc}")
        with self._cond:
            for root in [r for r in self.indexes if r not in wanted]:
                self._to_close.append(self.indexes.pop(root))
                self._paths.pop(root, None)
            for root in wanted:
                if root in self.indexes:
                    continue
                try:
                    self.indexes[root] = self._open(root)
                except KenningError as exc:
                    problems.append(str(exc))
                    continue
                self._full.append(root)
            self._first_words.clear()
            self._cancel.set()
            self._cond.notify_all()
        self._restart_watcher()
        if self.indexes:
            self._start_model()
        return problems

    def _open(self, root: Path) -> Index:
        index = Index(
            root,
            self.settings,
            embedder=self.embedder_now,
            home=self.home,
            workers=min(INDEX_PROCESSES, default_threads()),
            # Chunk in a worker process even for one: requests wait on the GIL
            # while tree-sitter parses.
            offload=True,
            owner=self.owner,
        )
        if index.rebuilt:
            log.warning("the index of %s was damaged; it was moved aside and is rebuilt", root)
        log.info("opened the index of %s at %s", root, index.store.path)
        return index

    @property
    def roots(self) -> list[Path]:
        return list(self.indexes)

    def index_for(self, path: str | Path) -> tuple[Index, str]:
        """The index of the innermost root holding ``path`` (absolute, or relative
        to the first root), and the path relative to it."""
        p = Path(path).expanduser()
        roots = list(self.indexes)
        if not roots:
            raise LocationError("no workspace folder is open")
        if not p.is_absolute():
            p = roots[0] / p
        with contextlib.suppress(OSError):
            p = p.resolve()
        best: Path | None = None
        for root in roots:
            if (p == root or root in p.parents) and (
                best is None or len(root.parts) > len(best.parts)
            ):
                best = root
        if best is None:
            shown = ", ".join(str(r) for r in roots)
            raise LocationError(f"{path}: outside the workspace ({shown})")
        index = self.indexes[best]
        return index, index.rel(p)

    # -- the model --------------------------------------------------------------

    def embedder_now(self) -> Embedder | None:
        """The model if it has loaded; never waits (searches are lexical until then)."""
        return self._embedder

    def wait_model(self, timeout: float) -> Embedder | None:
        self.model_tried.wait(timeout)
        return self._embedder

    def _start_model(self) -> None:
        """Load the model on a thread of its own: the first words need not wait for it."""
        with self._cond:
            if self._model_thread is not None:
                return
            self._model_thread = threading.Thread(
                target=self._load_model, name="kenning-model", daemon=True
            )
        self._model_thread.start()

    def _load_model(self) -> None:
        try:
            if self._factory is not None:
                self._embedder = self._factory()
                log.info("embedding model %s on %s", self._embedder.model_id, self._embedder.device)
        except Exception as exc:
            self.model_error = str(exc) or type(exc).__name__
            log.warning("no embedding model (%s): search is lexical only", self.model_error)
        finally:
            self.model_tried.set()
            with self._cond:
                self._cond.notify_all()  # what is pending can be embedded now

    # -- requests from the door -----------------------------------------------------

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the index thread ahead of any other work (it may write)."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                future.set_exception(KenningError("the server is shutting down"))
                return future
            self._asked.append((fn, future))
            self._cancel.set()
            self._cond.notify_all()
        return future

    def files_changed(self, paths: Sequence[Path]) -> None:
        """Files changed on disk (any thread): re-read them before anything else."""
        with self._cond:
            for p in paths:
                if self.home is not None and (p == self.home or self.home in p.parents):
                    continue
                root = self._root_of(p)
                if root is not None:
                    self._paths.setdefault(root, set()).add(p)
            if self._paths:
                self._cancel.set()
                self._cond.notify_all()

    def _root_of(self, p: Path) -> Path | None:
        best: Path | None = None
        for root in self.indexes:
            if (p == root or root in p.parents) and (
                best is None or len(root.parts) > len(best.parts)
            ):
                best = root
        return best

    def wait_words(self, timeout: float) -> bool:
        """Wait until every root's files have been read once (or ``timeout``)."""
        return self._first_words.wait(timeout)

    def settle(self, timeout: float) -> bool:
        """Wait until the changes seen so far are in the index (words, not vectors)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._paths or self._busy == "files":
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def state(self) -> dict[str, Any]:
        """What the index thread is doing: ``phase`` is "reading" (files, words
        first), "loading model", "embedding" or "ready"."""
        with self._cond:
            busy = self._busy
            waiting = bool(self._full or self._paths)
        if not busy and not waiting and not self.model_tried.is_set() and self.indexes:
            busy = "loading model"
        phase = busy or ("reading" if waiting else "ready")
        if phase in ("files", "refresh") or (phase == "request" and waiting):
            phase = "reading"
        elif phase == "request":
            phase = "ready"
        return {
            "phase": phase,
            "words_ready": self._first_words.is_set(),
            "watching": bool(self.watcher and self.watcher.running),
            "others": sorted(str(r) for r in self._waiting_for_others),
        }

    # -- the index thread ---------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._has_work():
                    self._cond.wait(self._sleep_for())
                if self._closed:
                    break
                self._cancel.clear()
                job = self._next_job()
            if job is not None:
                try:
                    job()
                except Exception:
                    log.error("index work failed", exc_info=True)
                finally:
                    with self._cond:
                        self._busy = ""
                        self._cond.notify_all()
        self._close_all()

    def _has_work(self) -> bool:
        if self._asked or self._paths or self._full or self._to_close:
            return True
        if not self.indexes:
            return False
        if not self._first_words.is_set():
            return True
        return self._embed_due() is not None

    def _sleep_for(self) -> float | None:
        if not self._waiting_for_others:
            return None
        return max(0.05, min(self._waiting_for_others.values()) - time.monotonic())

    def _next_job(self) -> Callable[[], None] | None:
        """Pick the most urgent work (with the condition held)."""
        if self._to_close:
            closing, self._to_close = self._to_close, []
            return lambda: self._close(closing)
        if self._asked:
            fn, future = self._asked.pop(0)
            self._busy = "request"
            return lambda: _fulfil(fn, future)
        if self._paths:
            root, paths = next(iter(self._paths.items()))
            del self._paths[root]
            index = self.indexes.get(root)
            if index is None:
                return None
            self._busy = "files"
            return functools.partial(self._apply_paths, index, paths)
        if self._full:
            root = self._full.pop(0)
            index = self.indexes.get(root)
            if index is None:
                return None
            self._busy = "refresh"
            return functools.partial(self._refresh, index)
        if not self._first_words.is_set():
            self._first_words.set()
            self._cond.notify_all()
        index = self._embed_due()
        if index is not None:
            self._busy = "embedding"
            return lambda: self._embed(index)
        return None

    def _embed_due(self) -> Index | None:
        if self._embedder is None:
            return None
        now = time.monotonic()
        for root, index in self.indexes.items():
            if self._waiting_for_others.get(root, 0) > now:
                continue
            if index.vectors.pending_count() > 0 or root in self._waiting_for_others:
                return index
        return None

    def _refresh(self, index: Index) -> None:
        # Interruptible: a request or a changed file goes first, then the
        # refresh resumes (what it committed is not read again).
        report = index.refresh(embed=False, cancel=self._cancel)
        if report.cancelled:
            with self._cond:
                if index.root in self.indexes and index.root not in self._full:
                    self._full.insert(0, index.root)
            return
        if report.indexing_by is not None:
            # That process reads the files and embeds them; what it commits is
            # searchable meanwhile. Ours goes on when it is done.
            self._wait_for_other(index, report.indexing_by, full=True)
            return
        self._waiting_for_others.pop(index.root, None)
        for err in report.errors[:20]:
            log.warning("skipped %s", err)
        log.info(
            "%s: %d files, %d chunks; %d changed, %d to embed (%.2fs)",
            index.root,
            report.files,
            report.chunks,
            report.changed,
            report.pending,
            report.took_s,
        )
        threading.Thread(target=index.warm_search, name="kenning-warm", daemon=True).start()

    def _apply_paths(self, index: Index, paths: set[Path]) -> None:
        if len(paths) > MAX_PATHS or any(p.name in IGNORE_FILES or p.is_dir() for p in paths):
            self._refresh(index)
            return
        rels: list[str] = []
        for p in paths:
            try:
                rel = index.rel(p)
            except LocationError:
                continue
            if not p.exists() and index.store.file(rel) is None:
                # A folder removed (or a file never indexed): only a scan knows what went.
                self._refresh(index)
                return
            rels.append(rel)
        if rels:
            report = index.refresh_paths(rels)
            log.debug(
                "%s: re-read %d changed file(s) (%d changed)", index.root, len(rels), report.changed
            )

    def _embed(self, index: Index) -> None:
        report = index.embed_pending(cancel=self._cancel)
        if report.indexing_by is not None:
            self._wait_for_other(index, report.indexing_by, full=False)
        else:
            self._waiting_for_others.pop(index.root, None)

    def _wait_for_other(self, index: Index, holder: dict[str, Any], full: bool) -> None:
        if index.root not in self._waiting_for_others:
            log.info(
                "%s: %s is indexing it; going on when it is done", index.root, describe(holder)
            )
        with self._cond:
            self._waiting_for_others[index.root] = time.monotonic() + RETRY_S
            if full and index.root not in self._full:
                # Tried again after the wait (the other run will have done most of it).
                self._retry_full_later(index.root)

    def _retry_full_later(self, root: Path) -> None:
        def later() -> None:
            with self._cond:
                if root in self.indexes and root not in self._full and not self._closed:
                    self._full.append(root)
                    self._cond.notify_all()

        timer = threading.Timer(RETRY_S, later)
        timer.daemon = True
        timer.start()

    # -- watching -----------------------------------------------------------------

    def _restart_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if not self.watch or not self.indexes:
            return
        watcher = FolderWatcher(list(self.indexes), self.files_changed, self._watch_failed)
        if watcher.start():
            self.watcher = watcher

    def _watch_failed(self, exc: Exception) -> None:
        self.watch_error = str(exc)

    # -- closing ------------------------------------------------------------------

    def _close(self, indexes: list[Index]) -> None:
        for index in indexes:
            try:
                index.close()
            except Exception:
                log.warning("closing %s failed", index.root, exc_info=True)

    def _close_all(self) -> None:
        with self._cond:
            indexes = [*self._to_close, *self.indexes.values()]
            self._to_close = []
            self.indexes = {}
            asked, self._asked = self._asked, []
        for _, future in asked:
            future.set_exception(KenningError("the server is shutting down"))
        self._close(indexes)

    def close(self, timeout: float = 10.0) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        with self._cond:
            self._closed = True
            self._cancel.set()
            self._cond.notify_all()
        self._thread.join(timeout)


def _fulfil(fn: Callable[[], T], future: Future[T]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)
