"""A workspace index: scan -> prepare -> persist -> embed, incrementally.

One :class:`Index` per workspace root, stored under ``KENNING_HOME``: a facade
over the stages of an index run, one module each (``scan.py``: which files
changed; ``prepare.py``: read and chunk them, in worker processes on a big run;
``persist.py``: write them, whole files per transaction; ``embed.py``: vectors
for the chunks still pending), plus the queries and the status report.

A refresh does only the work that changed: files whose (size, mtime) match the
index are not opened; files whose bytes hash the same are not re-chunked; chunks
whose digest has a vector (in this index or in the shared cache) are not
re-embedded. Each stage is resumable: a killed run leaves committed files and
vectors behind, and the next run picks up the files and the chunks still pending.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import apsw
import numpy as np
import xxhash

from kenning.config import Settings, kenning_home
from kenning.engine import scan
from kenning.engine.embed import Embedded, embed_pending
from kenning.engine.embedder import Embedder, model_of_space, plan_embedding, precision_of
from kenning.engine.home import check_home, open_owned
from kenning.engine.languages import language_filter
from kenning.engine.locks import RunLock, buffer_owners, busy_note
from kenning.engine.persist import Persisted, Persister
from kenning.engine.prepare import prepare_files, prepare_job
from kenning.engine.scan import (
    CONTENT_RULES,
    FileEntry,
    FileJob,
    KnownFile,
    Scanner,
    content_skip_reason,
    decode_text,
    filter_spec,
    scan_changes,
)
from kenning.engine.search import Searcher, SearchResult, to_hit
from kenning.engine.store import ChunkRow, FileRow, Store
from kenning.engine.templates import TemplateLibrary, TemplateMatch
from kenning.engine.types import Cancelled, Progress
from kenning.engine.vectors import EmbeddingCache, VectorIndex
from kenning.errors import (
    LocationError,
    NeedsEmbeddingsError,
    UsageError,
    WorkspaceError,
)

if TYPE_CHECKING:
    # Imported where used: patterns pulls in datasketch and scipy (most of a second),
    # which every indexing worker process would pay for at start-up.
    from kenning.engine.patterns import PatternReport

log = logging.getLogger(__name__)

# A callable may return None until the model has loaded (searches are lexical meanwhile).
EmbedderSource = Embedder | Callable[[], Embedder | None] | None

LATENCY_WINDOW = 500
# `kenning status --skipped` lists at most this many files left out by the path
# rules (the counts are always complete).
MAX_SKIPPED_LISTED = 10_000


@dataclass(frozen=True)
class IndexChange:
    """What one write to the index did, for listeners (see :meth:`Index.add_listener`).

    ``paths``: files whose chunks were replaced or removed, or whose editor
    buffer was set or dropped (even when its text turned out unchanged: the
    language server publishes a document's hints when it opens). ``vectors``:
    chunk vectors were written.
    """

    paths: frozenset[str] = frozenset()
    vectors: bool = False


IndexListener = Callable[[IndexChange], None]


@dataclass
class IndexReport:
    files: int = 0
    changed: int = 0
    chunks: int = 0
    embedded: int = 0
    cached: int = 0
    deleted: int = 0
    skipped: int = 0
    took_s: float = 0.0
    model: str | None = None
    device: str | None = None
    pending: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    cancelled: bool = False
    # (path, why) of the files in ``errors``.
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Set when another process was running on the index, so this run did nothing:
    # {"pid", "command", "since"} as that process wrote them (pid None if unknown).
    indexing_by: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "changed": self.changed,
            "chunks": self.chunks,
            "embedded": self.embedded,
            "cached": self.cached,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "took_s": round(self.took_s, 3),
            "model": self.model,
            "device": self.device,
            "pending": self.pending,
            "skip_reasons": dict(sorted(self.skip_reasons.items())),
            "errors": self.errors,
            "cancelled": self.cancelled,
            **({"indexing_by": self.indexing_by} if self.indexing_by else {}),
        }


def index_path(root: Path, home: Path | None = None) -> Path:
    """Where the index of ``root`` lives: one folder per absolute root path."""
    home = home or kenning_home()
    key = xxhash.xxh3_64_hexdigest(str(root).encode())
    name = re.sub(r"[^A-Za-z0-9._-]", "_", root.name or "root")[:40]
    return home / "indexes" / f"{name}-{key}" / "index.db"


def open_store(path: Path) -> tuple[Store, bool]:
    """Open the index at ``path``; a damaged one is moved aside and rebuilt."""
    return open_owned(path, Store)


class Index:
    """The incremental index of one workspace root."""

    def __init__(
        self,
        root: Path,
        settings: Settings | None = None,
        embedder: EmbedderSource = None,
        home: Path | None = None,
        workers: int = 1,
        offload: bool = False,
        owner: str = "kenning",
    ) -> None:
        """``owner`` names this process to others on the same index ("kenning
        index", "language server"): status and search notes show it."""
        root = Path(root).expanduser()
        if not root.exists():
            raise WorkspaceError(f"{root}: no such folder")
        if not root.is_dir():
            raise WorkspaceError(f"{root}: not a folder")
        self.root = root.resolve()
        self.settings = settings or Settings()
        self.home = home or kenning_home()
        # Processes that read and chunk files on a big run; 1 keeps it inline...
        self.workers = max(1, workers)
        # ...unless offload: then even one runs apart, so that this process stays
        # free for other work (a language server's requests wait on the GIL while
        # tree-sitter parses).
        self.offload = offload
        self.scanner = Scanner(
            self.root,
            exclude=self.settings.exclude,
            include=self.settings.include,
            max_file_bytes=self.settings.index.max_file_bytes,
        )
        check_home(self.home)
        db = index_path(self.root, self.home)
        self.store, self.rebuilt = open_store(db)
        # One index run at a time across processes (see engine/locks.py).
        self.run_lock = RunLock(db.parent / "indexing.lock", owner)
        self.owners = buffer_owners(self.home / "locks")
        self.vectors = VectorIndex(self.store)
        # The persist stage: every write of files and chunks goes through it.
        self.persist = Persister(self.store)
        self.searcher = Searcher(self.store, self.vectors)
        self._embedder_source = embedder
        self._embedder: Embedder | None = embedder if _is_embedder(embedder) else None
        self._embedder_lock = threading.Lock()
        self._cache: EmbeddingCache | None = None
        self._refresh_lock = threading.Lock()
        # Editor buffers, by relative path: their text is what gets indexed.
        self._buffers: dict[str, str] = {}
        self._latencies: deque[float] = deque(self._load_latencies(), maxlen=LATENCY_WINDOW)
        self._templates: TemplateLibrary | None = None
        # Listeners (the paths written since they were last told: persist.touched).
        self._listeners: tuple[IndexListener, ...] = ()
        self._warm_lock = threading.Lock()

    # -- embedder -----------------------------------------------------------

    @property
    def embedder(self) -> Embedder | None:
        """The embedder, loaded on first use; None when the index is lexical-only."""
        if self._embedder is None and self._embedder_source is not None:
            with self._embedder_lock:
                source = self._embedder_source
                if self._embedder is None:
                    if _is_embedder(source):
                        self._embedder = source
                    elif callable(source):
                        self._embedder = source()
        return self._embedder

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            self._cache = EmbeddingCache(self.home / "cache" / "embeddings.db")
        return self._cache

    def close(self) -> None:
        self._listeners = ()
        self._save_latencies()
        if self._cache is not None:
            self._cache.close()
        self.run_lock.close()
        self.store.close()

    def warm_search(self) -> int:
        """Compute what a large index's first searches would otherwise wait for.

        That is the lexical champion lists of its commonest words (a few
        seconds at 100k chunks, nothing on a small index). For a background
        thread, whose read connection it closes when done; a second call while
        one runs returns at once. Returns the number of lists computed.
        """
        if not self._warm_lock.acquire(blocking=False):
            return 0
        try:
            return self.store.fts.warm()
        except apsw.Error as exc:  # the index was closed under it: nothing to warm
            log.debug("%s: warming search stopped: %s", self.root, exc)
            return 0
        finally:
            self.store.release_reader()
            self._warm_lock.release()

    # -- listeners ----------------------------------------------------------

    def add_listener(self, listener: IndexListener) -> None:
        """Call ``listener(change)`` after every write, on the writing thread.

        The language server keeps in-memory structures (near-duplicate hints)
        in step with the index this way instead of polling it. A listener
        must be quick and must not write to the index; its errors are logged.
        """
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: IndexListener) -> None:
        self._listeners = tuple(fn for fn in self._listeners if fn is not listener)

    def _notify(self, paths: Sequence[str] = (), vectors: bool = False) -> None:
        touched = self.persist.take_touched()
        touched.update(paths)
        listeners = self._listeners
        if not listeners or (not touched and not vectors):
            return
        change = IndexChange(frozenset(touched), vectors)
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                log.error("an index listener failed", exc_info=True)

    # -- paths --------------------------------------------------------------

    def rel(self, path: str | Path) -> str:
        """Workspace-relative posix path of ``path`` (absolute or relative to the root)."""
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        try:
            rel = p.resolve().relative_to(self.root)
        except ValueError:
            raise LocationError(f"{path}: outside the workspace {self.root}") from None
        return rel.as_posix()

    def resolve_location(self, spec: str) -> tuple[str, int]:
        """``FILE:LINE`` -> (relative path, 1-based line)."""
        path, sep, line_s = spec.rpartition(":")
        if not sep or not path or not line_s.isdigit() or int(line_s) < 1:
            raise UsageError(f"{spec}: expected FILE:LINE with a 1-based line number")
        rel = self.rel(path)
        if rel not in self._buffers and not (self.root / rel).is_file():
            raise LocationError(f"{path}: no such file in {self.root}")
        return rel, int(line_s)

    # -- refresh ------------------------------------------------------------

    def refresh(
        self,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        embed: bool = True,
        embed_budget_s: float | None = None,
        wait_s: float = 0.0,
    ) -> IndexReport:
        """Bring the index up to date with the files on disk (and open buffers).

        With ``embed_budget_s``, embedding stops after that many seconds and the
        rest stays pending (``report.pending``) for the next run.

        When another process is running on this index, waits up to ``wait_s``
        seconds for it to finish; if it is still running, does nothing and says
        who it is in ``report.indexing_by`` (that process finishes the job, and
        what it commits is searchable meanwhile).
        """
        started = time.perf_counter()
        report = IndexReport()
        with self._refresh_lock:
            report.indexing_by = self._start_run(wait_s, cancel)
            if report.indexing_by is not None:
                self._fill_report(report, started)
                return report
            try:
                try:
                    self._index_files(report, progress, cancel)
                    if embed and self.embedder is not None:
                        deadline = (
                            None if embed_budget_s is None else time.perf_counter() + embed_budget_s
                        )
                        self._embed(report, progress, cancel, deadline)
                except Cancelled:
                    report.cancelled = True
                self._fill_report(report, started)
                self.store.set_meta(
                    "last_refresh", json.dumps({"at": time.time(), **report.to_json()})
                )
            finally:
                self.run_lock.release()
        self._notify(vectors=report.embedded + report.cached > 0)
        return report

    def _start_run(self, wait_s: float, cancel: threading.Event | None) -> dict[str, Any] | None:
        """Take the run lock; None when taken, else who holds it."""
        for _ in range(3):
            if self.run_lock.acquire(wait_s, cancel):
                return None
            holder = self.run_lock.holder()
            if holder is not None:
                return holder
            # It finished between our try and our look: try again.
        return {"pid": None, "command": None, "since": None}

    def _fill_report(self, report: IndexReport, started: float) -> None:
        counts = self.store.counts()
        report.files = counts["files"]
        report.chunks = counts["chunks"]
        report.pending = counts["chunks"] - counts["embedded"]
        emb = self._embedder
        report.model = emb.model_id if emb else None
        report.device = emb.device if emb else None
        report.took_s = time.perf_counter() - started

    def indexing_by(self) -> dict[str, Any] | None:
        """Who else is running on this index now (see :class:`RunLock`), or None."""
        return self.run_lock.holder()

    def _foreign_buffer(self, row: KnownFile | None) -> bool:
        """Whether ``row`` holds a live editor buffer of another process."""
        return (
            row is not None
            and row.mtime_ns < 0
            and row.mtime_ns != -os.getpid()
            and self.owners.alive(row.mtime_ns)
        )

    def _index_files(
        self, report: IndexReport, progress: Progress | None, cancel: threading.Event | None
    ) -> None:
        """The file stages of a run: scan, then prepare and persist what changed."""
        if progress:
            progress(scan.STAGE, 0, 0)
        known = self.store.files()
        self.persist.restore_buffers(self._buffers, known, self.owners.mark)
        # Files skipped for their content under older rules get another look.
        recheck = self.store.get_meta("content_rules") != CONTENT_RULES
        plan = scan_changes(
            self.scanner,
            known,
            lambda rel, row: rel in self._buffers or self._foreign_buffer(row),
            recheck,
        )
        written = Persisted()
        report.deleted = self.persist.delete(plan.gone)
        prepared = prepare_files(plan.todo, self.workers, self.offload)
        try:
            self.persist.write_all(prepared, len(plan.todo), written, progress, cancel)
        finally:
            # Shuts the worker pool down now, not whenever the generator is collected.
            prepared.close()
            _add_persisted(report, written)
        reasons = dict(plan.scan.skipped)
        for reason, n in self.store.skip_reasons().items():
            reasons[reason] = reasons.get(reason, 0) + n
        report.skip_reasons = reasons
        report.skipped = sum(reasons.values())
        # Written only when they change: a refresh with nothing to do stays cheap.
        self.store.set_meta_if_changed("skip_reasons", json.dumps(reasons, sort_keys=True))
        # Content skips are rows of the files table; the rest is kept here for
        # `kenning status --skipped`. Failed reads are tried again every run.
        listed = [[p, r, None] for p, r in sorted(plan.scan.skipped_paths)]
        listed += [[p, "error", why] for p, why in sorted(report.failed)]
        self.store.set_meta_if_changed("skipped_paths", json.dumps(listed[:MAX_SKIPPED_LISTED]))
        if recheck:
            self.store.set_meta("content_rules", CONTENT_RULES)

    def _index_entry(self, entry: FileEntry, row: FileRow | None, report: IndexReport) -> None:
        """Prepare and persist one file, here and now (a watcher's or a closed buffer's)."""
        written = Persisted()
        self.persist.write(prepare_job(FileJob.of(entry, row)), written)
        _add_persisted(report, written)

    # -- editor buffers -----------------------------------------------------

    def set_buffer(self, path: str | Path, text: str) -> bool:
        """Index an editor buffer's text in place of the file on disk.

        Returns False (and indexes nothing) when the path is outside the
        workspace rules or the text is unfit (binary, too large).
        """
        rel = self.rel(path)
        data = text.encode("utf-8", errors="replace")
        if self.scanner.accepts(rel, len(data)) is not None or content_skip_reason(rel, data):
            self.drop_buffer(rel, reload=False)
            return False
        # The mtime of a buffer's row is this process's mark (minus its pid): the
        # next refresh after the buffer closes, or after this process is gone,
        # reads the file from disk again, and none meanwhile (see BufferOwners).
        with self._refresh_lock:
            self._buffers[rel] = text
            self.persist.write_buffer(rel, text, self.owners.mark, self.store.file(rel))
        self._notify([rel])
        return True

    def drop_buffer(self, path: str | Path, reload: bool = True) -> None:
        """Stop using an editor buffer; the file on disk (if any) is indexed again."""
        rel = self.rel(path)
        with self._refresh_lock:
            self._drop_buffer(rel, reload)
        self._notify([rel])

    def _drop_buffer(self, rel: str, reload: bool) -> None:
        if self._buffers.pop(rel, None) is None or not reload:
            return
        row = self.store.file(rel)
        if self._foreign_buffer(row):
            return  # another editor's buffer of the same file: it is that one's now
        file = self.root / rel
        if not file.is_file():
            self.persist.delete([rel])
            return
        st = file.stat()
        entry = FileEntry(rel, file, st.st_size, st.st_mtime_ns)
        if self.scanner.accepts(rel, st.st_size) is None:
            self._index_entry(entry, row, IndexReport())
        else:
            self.persist.delete([rel])

    def refresh_paths(self, paths: Sequence[str | Path]) -> IndexReport:
        """Re-read just these files (a watcher saw them change), without a full scan."""
        report = IndexReport()
        with self._refresh_lock:
            for path in paths:
                rel = self.rel(path)
                if rel in self._buffers:
                    continue
                row = self.store.file(rel)
                if self._foreign_buffer(row):
                    continue
                file = self.root / rel
                if not file.is_file():
                    report.deleted += self.persist.delete([rel])
                    continue
                st = file.stat()
                if self.scanner.accepts(rel, st.st_size) is not None:
                    report.deleted += self.persist.delete([rel])
                    continue
                if row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
                    continue
                self._index_entry(FileEntry(rel, file, st.st_size, st.st_mtime_ns), row, report)
        self._notify()
        return report

    # -- embedding ----------------------------------------------------------

    def embed_pending(
        self, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> IndexReport:
        report = IndexReport()
        if self.embedder is None:
            return report
        with self._refresh_lock:
            # Never waits: whoever holds the run embeds what is pending, this
            # process's new chunks included (newest first).
            report.indexing_by = self._start_run(0.0, cancel)
            if report.indexing_by is not None:
                return report
            try:
                self._embed(report, progress, cancel)
            except Cancelled:
                report.cancelled = True
            finally:
                self.run_lock.release()
        self._notify(vectors=report.embedded + report.cached > 0)
        return report

    def _embed(
        self,
        report: IndexReport,
        progress: Progress | None,
        cancel: threading.Event | None,
        deadline: float | None = None,
    ) -> None:
        embedder = self.embedder
        assert embedder is not None
        done = Embedded()
        try:
            embed_pending(
                self.vectors, self.cache, embedder, done, progress, cancel, deadline, self.root
            )
        finally:
            report.embedded += done.embedded
            report.cached += done.cached

    # -- queries ------------------------------------------------------------

    def file_ids_for_globs(self, globs: Sequence[str]) -> list[int]:
        spec = filter_spec(globs)
        return [row.id for path, row in self.store.files().items() if spec.match_file(path)]

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        languages: Sequence[str] | None = None,
        globs: Sequence[str] | None = None,
    ) -> SearchResult:
        # Checked before any work: a filter that cannot match is a mistake to
        # report, not an empty answer.
        languages = language_filter(languages) if languages else None
        file_ids = self.file_ids_for_globs(globs) if globs else None
        query_vector = None
        space = None
        started = time.perf_counter()
        embedder = self.embedder
        if mode in ("vector", "hybrid") and embedder is not None:
            query_vector = embedder.embed_query(query)
            space = embedder.space
        result = self.searcher.search(query, query_vector, k, mode, languages, file_ids, space)
        self._note_busy(result)
        result.took_ms = (time.perf_counter() - started) * 1000
        for hit in result.results:
            hit.root = str(self.root)
        self._latencies.append(result.took_ms)
        return result

    def chunk_at(self, path: str | Path, line: int) -> ChunkRow:
        rel = self.rel(path)
        # A cursor on the blank lines between two functions means one of them.
        row = self.store.chunk_at(rel, line, near=3)
        if row is None:
            if self.store.file(rel) is None:
                raise LocationError(
                    f"{rel}: not in the index (ignored, skipped, or not indexed yet)"
                )
            raise LocationError(f"{rel}:{line}: no code at that line")
        return row

    def similar(
        self, path: str | Path, line: int, k: int = 10, end_line: int | None = None
    ) -> SearchResult:
        """Chunks most like the one holding ``line`` (or lines ``line..end_line``)."""
        started = time.perf_counter()
        if self.embedder is None:
            raise NeedsEmbeddingsError("similar code needs an embedding model; none is loaded")
        row = self.chunk_at(path, line)
        exclude = [row.id]
        vector = self.vectors.vector_of(row.id)
        text = row.text
        if end_line is not None and end_line > line:
            # A selection: embed exactly the selected lines.
            lines = self._file_lines(row.path)
            text = "\n".join(lines[line - 1 : end_line])
            vector = None
        if vector is None:
            vector = self.embedder.embed_documents([text])[0]
        label = f"{row.path}:{row.start_line}-{row.end_line}"
        return self._nearest(vector, k, exclude, label, started)

    def similar_code(self, code: str, k: int = 10) -> SearchResult:
        """Chunks most like a piece of code that need not be in the workspace."""
        started = time.perf_counter()
        if self.embedder is None:
            raise NeedsEmbeddingsError("similar code needs an embedding model; none is loaded")
        if not code.strip():
            raise UsageError("the code is empty")
        vector = self.embedder.embed_documents([code])[0]
        first = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")
        return self._nearest(vector, k, [], first[:80], started)

    def _nearest(
        self, vector: np.ndarray, k: int, exclude: list[int], label: str, started: float
    ) -> SearchResult:
        assert self.embedder is not None
        held = self.vectors.model_id
        # Vectors of another model (not re-embedded yet) are not comparable with this one.
        nearest = (
            self.vectors.nearest(vector, k, exclude=exclude)
            if held in (None, self.embedder.space)
            else []
        )
        rows = self.store.chunk_rows([cid for cid, _ in nearest])
        hits = [
            to_hit(rows[cid], max(0.0, sim), {"similarity": round(sim, 4)})
            for cid, sim in nearest
            if cid in rows
        ]
        for hit in hits:
            hit.root = str(self.root)
        took = (time.perf_counter() - started) * 1000
        self._latencies.append(took)
        result = SearchResult(label, "vector", hits, took, self._complete())
        self._note_busy(result)
        return result

    def stale(self, paths: Sequence[str]) -> set[str]:
        """Those of ``paths`` (relative) whose file on disk is not what the index holds:
        changed, removed, or never indexed. A line range from the index may have moved."""
        out: set[str] = set()
        for rel in set(paths):
            if rel in self._buffers:
                continue  # this process's own buffer is the truth, not the disk
            row = self.store.file(rel)
            try:
                st = (self.root / rel).stat()
            except OSError:
                out.add(rel)
                continue
            if row is None or row.size != st.st_size:
                out.add(rel)
            elif row.mtime_ns >= 0 and row.mtime_ns != st.st_mtime_ns:
                # A negative mtime marks another editor's unsaved buffer: its
                # size is the only thing to compare with the disk.
                out.add(rel)
        return out

    def _note_busy(self, result: SearchResult) -> None:
        holder = self.run_lock.holder()
        if holder is not None:
            result.notes.append(busy_note(holder))

    def _file_lines(self, rel: str) -> list[str]:
        if rel in self._buffers:
            return self._buffers[rel].splitlines()
        try:
            return decode_text((self.root / rel).read_bytes()).splitlines()
        except OSError as exc:
            raise LocationError(f"{rel}: {exc.strerror or exc}") from None

    def _complete(self) -> float:
        counts = self.store.counts()
        return counts["embedded"] / counts["chunks"] if counts["chunks"] else 1.0

    # -- templates and patterns ---------------------------------------------

    @property
    def templates(self) -> TemplateLibrary:
        """The template library for this workspace (built-in, user, ``.kenning/templates``)."""
        if self._templates is None:
            self._templates = TemplateLibrary(self.root, embedder=self.embedder)
        elif self._templates.embedder is None and self.embedder is not None:
            # Built before the model had loaded (the language server loads it in
            # the background): from now on, match by meaning.
            self._templates.embedder = self.embedder
        return self._templates

    def match_templates(
        self, path: str | Path, line: int, k: int = 5, end_line: int | None = None
    ) -> list[TemplateMatch]:
        """Templates that fit the chunk at ``line`` (or the selected lines)."""
        row = self.chunk_at(path, line)
        if end_line is not None and end_line > line:
            text = "\n".join(self._file_lines(row.path)[line - 1 : end_line])
            return self.templates.match(text, row.language, k)
        vector = self.vectors.vector_of(row.id) if self.embedder is not None else None
        if vector is not None and self.vectors.model_id == self.embedder.space:  # type: ignore[union-attr]
            return self.templates.match_vector(vector, row.text, row.language, k)
        return self.templates.match(row.text, row.language, k)

    def patterns(
        self, threshold: float | None = None, min_size: int = 2, limit: int | None = None
    ) -> PatternReport:
        """Clusters of near-duplicate code, largest first, each with its canonical example."""
        from kenning.engine.patterns import find_patterns

        if threshold is None:
            threshold = self.settings.duplicates.threshold
        with self._refresh_lock:
            return find_patterns(self.store, self.vectors, threshold, min_size, limit)

    def save_pattern_template(self, report: PatternReport, cluster_id: str) -> Path:
        from kenning.engine.patterns import save_template

        return save_template(self.root, self.store, report, cluster_id)

    # -- status -------------------------------------------------------------

    def status(self, skipped_files: bool = False) -> dict[str, Any]:
        """What the index holds and how it performs; ``skipped_files`` lists every skip."""
        counts = self.store.counts()
        last = self._meta_json("last_refresh", dict)
        skipped = self._meta_json("skip_reasons", dict) or {}
        cache_hits = last.get("cached", 0) if last else 0
        cache_total = cache_hits + (last.get("embedded", 0) if last else 0)
        lat = sorted(self._latencies)
        out = {
            "root": str(self.root),
            "index_path": str(self.store.path),
            "schema_version": self.store.schema_version,
            "files": counts["files"],
            "chunks": counts["chunks"],
            "embedded": counts["embedded"],
            "pending": counts["chunks"] - counts["embedded"],
            "complete": round(counts["embedded"] / counts["chunks"], 4)
            if counts["chunks"]
            else 1.0,
            "skipped": sum(skipped.values()),
            "skip_reasons": skipped,
            "languages": self.store.languages(),
            **self._embedding_status(counts["embedded"]),
            "rebuilt": self.rebuilt,
            "buffers": len(self._buffers),
            # Another process running on this index now: {"pid", "command", "since"}.
            "indexing_by": self.run_lock.holder(),
            "last_refresh": last,
            "metrics": {
                "index_bytes": self.store.size_bytes(),
                "embedding": self._meta_json("embed_rate", dict),
                # How narrow a cone the vectors lie in (embed.check_cone).
                "vector_cone": self._meta_json("vector_cone", dict),
                "cache_hit_rate": round(cache_hits / cache_total, 4) if cache_total else None,
                "queries": len(lat),
                "query_ms_p50": _percentile(lat, 50),
                "query_ms_p95": _percentile(lat, 95),
                "query_ms_p99": _percentile(lat, 99),
            },
        }
        if skipped_files:
            out["skipped_files"] = self.skipped_files()
        return out

    def _embedding_status(self, embedded: int) -> dict[str, Any]:
        """``model``, ``device`` and ``precision``, and where they come from.

        ``embedding_source``: "loaded" (this process runs the model), "index"
        (what embedded the vectors the index holds) or "planned" (what the next
        embedding would use: nothing is embedded yet).
        """
        emb = self._embedder
        if emb is not None:
            return {
                "model": emb.model_id,
                "device": emb.device,
                # int8 where the model runs with int8 matrix products (the CPU default).
                "precision": precision_of(emb),
                "embedding_source": "loaded",
            }
        space = self.vectors.model_id
        if embedded and space:
            try:
                made_by = json.loads(self.store.get_meta("embedded_with") or "{}")
            except ValueError:
                made_by = {}
            if made_by.get("space") == space:
                return {
                    "model": made_by.get("model"),
                    "device": made_by.get("device"),
                    "precision": made_by.get("precision"),
                    "embedding_source": "index",
                }
        plan = plan_embedding(self.settings.model, self.settings.device)
        if embedded and space:
            # Vectors from before kenning recorded their device, or all from
            # the shared cache: the model and precision are the index's own.
            plan["model"] = model_of_space(space)
            plan["precision"] = precision_of(None, space)
            return {**plan, "embedding_source": "index"}
        return {**plan, "embedding_source": "planned"}

    def skipped_files(self) -> list[dict[str, Any]]:
        """Every file (or folder, its path ending in "/") left out, with the reason.

        Path rules (ignored, vendored, too_large, ...) as of the last full
        refresh, content checks (binary, generated, minified) as the index
        records them, and files that could not be read or chunked last time
        ("error", with the cause in ``detail``).
        """
        try:
            listed = json.loads(self.store.get_meta("skipped_paths") or "[]")
        except ValueError:
            listed = []
        entries = [{"path": p, "reason": r, "detail": d} for p, r, d in listed]
        entries += [{"path": p, "reason": r, "detail": None} for p, r in self.store.skipped_files()]
        entries.sort(key=lambda e: (e["path"], e["reason"]))
        for e in entries:
            if e["detail"] is None:
                del e["detail"]
        return entries

    def _meta_json(self, key: str, kind: type) -> Any:
        """A JSON value kept in the index's meta table; None when absent or unreadable.

        These are metrics, remade by the next refresh or search: a garbled one
        must not cost the status report.
        """
        try:
            value = json.loads(self.store.get_meta(key) or "null")
        except ValueError:
            return None
        return value if isinstance(value, kind) else None

    def _load_latencies(self) -> list[float]:
        try:
            return [float(x) for x in json.loads(self.store.get_meta("latencies") or "[]")]
        except (ValueError, TypeError):
            return []

    def _save_latencies(self) -> None:
        # Kept across processes so `kenning status` can report recent searches.
        try:
            self.store.set_meta("latencies", json.dumps([round(x, 3) for x in self._latencies]))
        except Exception:
            log.debug("could not save query latencies", exc_info=True)


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    i = min(len(values) - 1, max(0, round(pct / 100 * (len(values) - 1))))
    return round(values[i], 3)


def _is_embedder(obj: object) -> TypeGuard[Embedder]:
    return obj is not None and hasattr(obj, "embed_documents")


def _add_persisted(report: IndexReport, written: Persisted) -> None:
    report.changed += written.changed
    report.errors += [f"{path}: {why}" for path, why in written.failed]
    report.failed += written.failed
