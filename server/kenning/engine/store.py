"""The per-workspace index: one SQLite database (through apsw) in WAL mode.

apsw bundles a SQLite with FTS5 and extension loading (the stock ``sqlite3``
on many machines cannot load sqlite-vec). Every write of a file's chunks is
one transaction, so a process killed at any moment leaves an index that opens
and is consistent: each file is either as it was or fully replaced.

Reads go through one connection per thread, so a search never waits for a
long write: WAL lets readers see the last committed state.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import sqlite_vec

from kenning.engine.home import sqlite_problem
from kenning.engine.lexical import LexicalIndex
from kenning.engine.migrations import MIGRATIONS, SCHEMA_VERSION
from kenning.engine.sql import json_ids, one_row, transaction
from kenning.engine.text import fts_columns, fts_path
from kenning.engine.types import Chunk, ChunkRow
from kenning.errors import HomeError, IndexBusyError, IndexCorruptError

BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    path: str
    language: str | None
    size: int
    mtime_ns: int
    hash: str | None
    skip_reason: str | None


@dataclass(frozen=True, slots=True)
class ChunkOutline:
    """A chunk's place, for search: ``unit_start`` is the first line of the
    definition it is one part of (None when it is whole); ``small`` says it has
    fewer lines than asked while its file has a chunk that does not."""

    kind: str
    file_id: int
    start_line: int
    end_line: int
    unit_start: int | None
    small: bool
    symbol: str | None = None


# In ChunkRow's order after the id, then parts (see _chunk_row).
_CHUNK_COLS = (
    "c.id, f.path, c.start_line, c.end_line, c.kind, c.symbol, c.language, c.text, c.digest,"
    " c.unit_start, c.unit_end, c.parts"
)


def _chunk_row(row: Sequence[Any]) -> ChunkRow:
    cid, path, start, end, kind, symbol, language, text, digest, us, ue, parts = row
    return ChunkRow(
        path,
        start,
        end,
        kind,
        symbol,
        language,
        text,
        digest,
        us,
        ue,
        parts=tuple((p[0], p[1], p[2], p[3]) for p in json.loads(parts)) if parts else (),
        id=cid,
    )


def _connect(path: Path) -> apsw.Connection:
    try:
        if path.is_dir():
            raise IndexCorruptError(f"{path}: the index is damaged (a folder stands in its place)")
        conn = apsw.Connection(str(path))
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.execute("PRAGMA foreign_keys = ON")
        # NORMAL is durable against a killed process in WAL mode; only an OS
        # crash can lose the last transactions, and the next run redoes them.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
    except (apsw.CorruptError, apsw.NotADBError) as exc:
        raise IndexCorruptError(f"{path}: the index is damaged ({exc})") from None
    except apsw.CantOpenError as exc:
        raise HomeError(
            f"cannot open the index {path} ({exc}); is KENNING_HOME writable?"
        ) from None
    return conn


class Store:
    """Files, chunks and their FTS rows for one workspace root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # _lock: the writer connection, held through a whole write transaction.
        # _state: the read connections and what readers cache, never held across
        # a query: a search must not wait for a write to commit.
        self._lock = threading.RLock()
        self._state = threading.Lock()
        self._local = threading.local()
        self._readers: list[apsw.Connection] = []
        self._counts: tuple[str | None, dict[str, int]] | None = None
        # The lexical ranking of this store's FTS rows.
        self.fts = LexicalIndex(self)
        problem = sqlite_problem(path)
        if problem is not None:
            raise IndexCorruptError(f"{path}: the index is damaged ({problem})")
        self.conn = _connect(path)
        try:
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise IndexCorruptError(f"{path}: could not switch the index to WAL mode")
            self._migrate()
            self._check()
        except (apsw.CorruptError, apsw.NotADBError) as exc:
            self.conn.close()
            raise IndexCorruptError(f"{path}: the index is damaged ({exc})") from None
        except apsw.BusyError:
            self.conn.close()
            raise IndexBusyError(f"{path}: the index is locked by another process") from None

    # -- set-up -------------------------------------------------------------

    def _migrate(self) -> None:
        version = one_row(self.conn.execute("PRAGMA user_version"))[0]
        if version > SCHEMA_VERSION:
            raise IndexCorruptError(
                f"{self.path}: written by a newer kenning (schema {version} > {SCHEMA_VERSION})"
            )
        for number, sql in MIGRATIONS:
            if number <= version:
                continue
            with transaction(self.conn):
                # Another process opening the same new index may have got here first.
                now = self.conn.execute("PRAGMA user_version").fetchone()
                if now is not None and now[0] >= number:
                    continue
                self.conn.execute(sql)
                self.conn.execute(f"PRAGMA user_version = {number}")

    def _check(self) -> None:
        # quick_check reads every page: cheap for the sizes we hold, and it is
        # what tells a torn or overwritten file from a healthy one.
        rows = self.conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise IndexCorruptError(f"{self.path}: integrity check failed: {rows[0][0]}")

    @property
    def schema_version(self) -> int:
        return int(one_row(self.reader().execute("PRAGMA user_version"))[0])

    def reader(self) -> apsw.Connection:
        """This thread's read connection (the writer's thread reads its own writes)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._state:
                self._readers.append(conn)
        return conn

    def release_reader(self) -> None:
        """Close this thread's read connection: for a thread that is about to end."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._state:
            if conn in self._readers:
                self._readers.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def close(self) -> None:
        with self._lock, self._state:
            for conn in self._readers:
                with contextlib.suppress(Exception):
                    conn.close()
            self._readers.clear()
            with contextlib.suppress(Exception):
                self.conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """One transaction on the writer connection."""
        with self._lock:
            if self.conn.in_transaction:
                # Inside a caller's batch: its transaction makes this write atomic,
                # and a savepoint per file would make FTS5 flush a segment each time.
                yield self.conn
                return
            try:
                with transaction(self.conn):
                    yield self.conn
                    # Readers cache what they derive from the index (counts, the
                    # coarse vector index) until the generation moves.
                    bump_generation(self.conn)
            except apsw.BusyError:
                raise IndexBusyError(
                    f"{self.path}: the index is locked by another process"
                ) from None

    # -- meta ---------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def set_meta_if_changed(self, key: str, value: str) -> None:
        """:meth:`set_meta` that writes only a new value: a run with nothing to do stays cheap."""
        if self.get_meta(key) != value:
            self.set_meta(key, value)

    # -- files --------------------------------------------------------------

    def files(self) -> dict[str, FileRow]:
        rows = self.reader().execute(
            "SELECT id, path, language, size, mtime_ns, hash, skip_reason FROM files"
        )
        return {r[1]: FileRow(*r) for r in rows}

    def file(self, path: str) -> FileRow | None:
        row = (
            self.reader()
            .execute(
                "SELECT id, path, language, size, mtime_ns, hash, skip_reason FROM files WHERE path = ?",
                (path,),
            )
            .fetchone()
        )
        return FileRow(*row) if row else None

    def write_file(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        content_hash: str,
        language: str,
        chunks: Sequence[Chunk],
    ) -> None:
        """Replace a file's chunks and FTS rows in one transaction.

        A chunk's lexical columns are computed here unless the prepare stage has
        (``Chunk.lexical``, in a worker process); its path is ``path``.
        """
        fts = [ch.lexical or fts_columns(ch.symbol, ch.also, ch.text) for ch in chunks]
        with self.write() as db:
            existed = db.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            # Keyed by what is embedded: the text and the kind and symbol in its
            # header (see text.embed_input; the path is this file's), so the
            # name's vector (text.name_input) is kept with the code's.
            kept: dict[tuple[str, str, str | None], tuple[bytes, bytes, bytes | None, bytes | None]]
            kept = {}
            if existed is None:
                file_id = self._file_row(
                    db, None, path, language, size, mtime_ns, content_hash, None
                )
            else:
                file_id = int(existed[0])
                # Chunks whose text did not change keep their vectors: an edit to
                # one function re-embeds that function only.
                kept = {
                    (r[0], r[1], r[2]): (r[3], r[4], r[5], r[6])
                    for r in db.execute(
                        "SELECT c.digest, c.kind, c.symbol, v.bits, v.vec, v.name_bits, v.name_vec"
                        " FROM chunks c JOIN vectors v ON v.chunk_id = c.id WHERE c.file_id = ?",
                        (file_id,),
                    )
                }
                self._delete_chunks(db, [file_id])
                self._file_row(db, file_id, path, language, size, mtime_ns, content_hash, None)
            # Explicit ids let one executemany insert a file's chunks and their
            # FTS rows (ids stay above every id ever used: AUTOINCREMENT).
            base = self._next_chunk_id(db)
            db.executemany(
                "INSERT INTO chunks(id, file_id, ord, start_line, end_line, kind, symbol,"
                " language, text, digest, unit_start, unit_end, parts, has_vector)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        base + n,
                        file_id,
                        n,
                        c.start_line,
                        c.end_line,
                        c.kind,
                        c.symbol,
                        c.language,
                        c.text,
                        c.digest,
                        c.unit_start,
                        c.unit_end,
                        json.dumps(c.parts) if c.parts else None,
                        int((c.digest, c.kind, c.symbol) in kept),
                    )
                    for n, c in enumerate(chunks)
                ],
            )
            fts_path_words = fts_path(path)
            db.executemany(
                "INSERT INTO chunks_fts(rowid, symbol, body, path, name) VALUES (?, ?, ?, ?, ?)",
                [(base + n, f[0], f[1], fts_path_words, f[2]) for n, f in enumerate(fts)],
            )
            if kept:
                db.executemany(
                    "INSERT INTO vectors(chunk_id, bits, vec, name_bits, name_vec)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (base + n, *kept[c.digest, c.kind, c.symbol])
                        for n, c in enumerate(chunks)
                        if (c.digest, c.kind, c.symbol) in kept
                    ],
                )

    def _next_chunk_id(self, db: apsw.Connection) -> int:
        row = one_row(
            db.execute(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'chunks'), 0),"
                " coalesce((SELECT max(id) FROM chunks), 0))"
            )
        )
        return int(row[0]) + 1

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        """Same content, new stat: remember the stat so the next run skips the read."""
        with self.write() as db:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def skip_file(self, path: str, size: int, mtime_ns: int, reason: str) -> None:
        """Remember a file whose content is unfit, so it is not re-read until it changes."""
        with self.write() as db:
            existed = db.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            known = int(existed[0]) if existed is not None else None
            file_id = self._file_row(db, known, path, None, size, mtime_ns, None, reason)
            if known is not None:
                self._delete_chunks(db, [file_id])

    def delete_files(self, paths: Iterable[str]) -> int:
        paths = list(paths)
        if not paths:
            return 0
        with self.write() as db:
            ids = [
                r[0] for p in paths for r in db.execute("SELECT id FROM files WHERE path = ?", (p,))
            ]
            self._delete_chunks(db, ids)
            for file_id in ids:
                db.execute("DELETE FROM files WHERE id = ?", (file_id,))
        return len(ids)

    def _file_row(
        self,
        db: apsw.Connection,
        file_id: int | None,
        path: str,
        language: str | None,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        reason: str | None,
    ) -> int:
        """Write the row of ``path``, a new one when ``file_id`` is None; its id.

        A plain INSERT or UPDATE, never an upsert: an upsert opens a statement
        savepoint, and at every savepoint FTS5 writes the rows still pending (the
        files before this one in the transaction) out as a segment of their own,
        which later costs merging. This was most of a cold index's write cost.
        """
        values = (language, size, mtime_ns, content_hash, reason, time.time())
        if file_id is None:
            db.execute(
                "INSERT INTO files(language, size, mtime_ns, hash, skip_reason, indexed_at, path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*values, path),
            )
            return int(db.last_insert_rowid())
        db.execute(
            "UPDATE files SET language = ?, size = ?, mtime_ns = ?, hash = ?, skip_reason = ?,"
            " indexed_at = ? WHERE id = ?",
            (*values, file_id),
        )
        return file_id

    def _delete_chunks(self, db: apsw.Connection, file_ids: Sequence[int]) -> None:
        for file_id in file_ids:
            ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE file_id = ?", (file_id,))]
            for chunk_id in ids:
                db.execute("DELETE FROM chunks_fts WHERE rowid = ?", (chunk_id,))
            db.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))

    # -- chunks -------------------------------------------------------------

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        if not ids:
            return {}
        rows = self.reader().execute(
            f"SELECT {_CHUNK_COLS} FROM chunks c JOIN files f ON f.id = c.file_id"
            " WHERE c.id IN (SELECT value FROM json_each(?))",
            (json_ids(ids),),
        )
        return {r[0]: _chunk_row(r) for r in rows}

    def outlines(self, ids: Sequence[int], min_lines: int) -> dict[int, ChunkOutline]:
        """What search needs to know of each chunk in ``ids`` beyond its score."""
        if not ids:
            return {}
        rows = self.reader().execute(
            "SELECT c.id, c.kind, c.file_id, c.start_line, c.end_line, c.unit_start,"
            " c.end_line - c.start_line + 1 < ?1 AND EXISTS(SELECT 1 FROM chunks o"
            " WHERE o.file_id = c.file_id AND o.end_line - o.start_line + 1 >= ?1), c.symbol"
            " FROM chunks c WHERE c.id IN (SELECT value FROM json_each(?2))",
            (min_lines, json_ids(ids)),
        )
        return {r[0]: ChunkOutline(r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7]) for r in rows}

    def chunks_of(self, path: str) -> list[ChunkRow]:
        rows = self.reader().execute(
            f"SELECT {_CHUNK_COLS} FROM chunks c JOIN files f ON f.id = c.file_id"
            " WHERE f.path = ? ORDER BY c.ord",
            (path,),
        )
        return [_chunk_row(r) for r in rows]

    def pending_chunks(self, limit: int) -> list[ChunkRow]:
        """Chunks still waiting for a vector (the embed stage's queue), newest first:
        the code just edited is what the user searches next."""
        rows = self.reader().execute(
            f"SELECT {_CHUNK_COLS} FROM chunks c JOIN files f ON f.id = c.file_id"
            " WHERE c.has_vector = 0 ORDER BY c.id DESC LIMIT ?",
            (limit,),
        )
        return [_chunk_row(r) for r in rows]

    def chunk_at(self, path: str, line: int, near: int = 0) -> ChunkRow | None:
        """The innermost chunk holding ``line`` (1-based) of ``path``.

        With ``near``, a line in the blank gap between two chunks (where a
        cursor often rests) takes the closest chunk within that many lines,
        the one below first.
        """
        row = (
            self.reader()
            .execute(
                f"SELECT {_CHUNK_COLS} FROM chunks c JOIN files f ON f.id = c.file_id"
                " WHERE f.path = ? AND c.start_line <= ? + ? AND c.end_line >= ? - ?"
                " ORDER BY CASE WHEN c.start_line <= ? AND c.end_line >= ? THEN 0 ELSE 1 END,"
                " min(abs(c.start_line - ?), abs(c.end_line - ?)), c.start_line < ?,"
                " c.end_line - c.start_line LIMIT 1",
                (path, line, near, line, near, line, line, line, line, line),
            )
            .fetchone()
        )
        return _chunk_row(row) if row else None

    def counts(self) -> dict[str, int]:
        generation = self.get_meta("generation")
        cached = self._counts
        if cached is not None and cached[0] == generation:
            return dict(cached[1])
        # One statement, so one snapshot: counts taken apart could straddle a commit.
        # Chunks are counted over small indexes (chunks_file, and chunks_pending,
        # which holds only chunks without a vector), not summed over the chunks
        # table: that read every chunk's text, 50-100 ms at 175k chunks, and
        # readers ask again after every commit.
        files, skipped, chunks, pending = one_row(
            self.reader().execute(
                "SELECT (SELECT count(*) FROM files WHERE skip_reason IS NULL),"
                " (SELECT count(*) FROM files WHERE skip_reason IS NOT NULL),"
                " (SELECT count(*) FROM chunks),"
                " (SELECT count(*) FROM chunks WHERE has_vector = 0)"
            )
        )
        embedded = chunks - pending
        counts = {
            "files": files,
            "skipped_content": skipped,
            "chunks": chunks,
            "embedded": embedded,
        }
        self._counts = (generation, counts)
        return dict(counts)

    def skip_reasons(self) -> dict[str, int]:
        rows = self.reader().execute(
            "SELECT skip_reason, count(*) FROM files WHERE skip_reason IS NOT NULL"
            " GROUP BY skip_reason"
        )
        return {r[0]: r[1] for r in rows}

    def skipped_files(self) -> list[tuple[str, str]]:
        """(path, reason) of every file left out for its content."""
        rows = self.reader().execute(
            "SELECT path, skip_reason FROM files WHERE skip_reason IS NOT NULL ORDER BY path"
        )
        return [(r[0], r[1]) for r in rows]

    def languages(self) -> dict[str, int]:
        rows = self.reader().execute(
            "SELECT language, count(*) FROM chunks GROUP BY language ORDER BY count(*) DESC"
        )
        return {r[0]: r[1] for r in rows}

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total


def bump_generation(db: apsw.Connection) -> None:
    """Mark that chunk vectors changed, so in-memory search structures reload."""
    db.execute(
        "INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key)"
        " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )
