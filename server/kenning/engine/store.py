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
from kenning.engine.migrations import MIGRATIONS, SCHEMA_VERSION
from kenning.engine.text import fts_columns, fts_path, fts_text
from kenning.engine.types import Chunk
from kenning.errors import HomeError, IndexBusyError, IndexCorruptError

BUSY_TIMEOUT_MS = 10_000
# Chunks that lexical search may rank for one query before dropping common terms.
LEXICAL_BUDGET = 5_000
# Champion lists (see Store._champion_list): chunks kept per common term, and
# how long a list is reused before it is computed again.
CHAMPIONS = 500
CHAMPION_TTL_S = 600.0
# Column weights, in the order of the chunks_fts columns: a word of a chunk's
# qualified symbol counts 4x, of its path 2x, of the definition's own name 6x
# (tuned on the dev benchmark; from 4 to 8 for names all within 0.002 MRR@10).
BM25_WEIGHTS = (4.0, 1.0, 2.0, 6.0)
_BM25 = "bm25(chunks_fts, {})".format(", ".join(map(str, BM25_WEIGHTS)))
# As in the chunks_fts definition (migrations.py).
_FTS_TOKENIZER_ARGS = ("unicode61", "remove_diacritics", "2")


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
class ChunkRow:
    id: int
    path: str
    start_line: int
    end_line: int
    kind: str
    symbol: str | None
    language: str
    digest: str
    text: str
    unit_start: int | None = None
    unit_end: int | None = None


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


FileRecord = tuple[int, int, str, str | None, str, str, str, int | None, int | None, str, str, str]
"""One chunk of a file as :meth:`Store.write_records` takes it: (start_line, end_line,
kind, symbol, language, text, digest, unit_start, unit_end, FTS symbol, FTS body, FTS
name); the FTS columns are ``text.fts_symbol(symbol)``, ``text.fts_text(text)`` and
``text.fts_name(symbol)``, computed by the caller (an indexing worker process)."""

_CHUNK_COLS = (
    "c.id, f.path, c.start_line, c.end_line, c.kind, c.symbol, c.language, c.digest, c.text,"
    " c.unit_start, c.unit_end"
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
        # Document frequency of query terms, valid while the index size holds.
        self._df: dict[str, int] = {}
        self._df_total = 0
        # Champion lists by stem: (when computed, [(chunk id, bm25)]).
        self._champions: dict[str, tuple[float, list[tuple[int, float]]]] = {}
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
        self._local.tokenizer = None
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
        fts: Sequence[tuple[str, str, str]] | None = None,
    ) -> None:
        """Replace a file's chunks and FTS rows in one transaction.

        ``fts`` holds each chunk's (symbol, body, name) as the FTS index takes them,
        when a worker process has already computed them.
        """
        if fts is None:
            fts = [fts_columns(ch.symbol, ch.also, ch.text) for ch in chunks]
        records = [
            (
                ch.start_line,
                ch.end_line,
                ch.kind,
                ch.symbol,
                ch.language,
                ch.text,
                ch.digest,
                ch.unit_start,
                ch.unit_end,
                *f,
            )
            for ch, f in zip(chunks, fts, strict=True)
        ]
        self.write_records(path, size, mtime_ns, content_hash, language, records)

    def write_records(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        content_hash: str,
        language: str,
        records: Sequence[FileRecord],
    ) -> None:
        """:meth:`write_file` for chunks given as :data:`FileRecord` tuples."""
        with self.write() as db:
            existed = db.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            # Keyed by what is embedded: the text and the kind and symbol in its
            # header (see text.embed_input; the path is this file's).
            kept: dict[tuple[str, str, str | None], tuple[bytes, bytes]] = {}
            if existed is None:
                file_id = self._file_row(
                    db, None, path, language, size, mtime_ns, content_hash, None
                )
            else:
                file_id = int(existed[0])
                # Chunks whose text did not change keep their vectors: an edit to
                # one function re-embeds that function only.
                kept = {
                    (r[0], r[1], r[2]): (r[3], r[4])
                    for r in db.execute(
                        "SELECT c.digest, c.kind, c.symbol, v.bits, v.vec FROM chunks c JOIN vectors v"
                        " ON v.chunk_id = c.id WHERE c.file_id = ?",
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
                " language, text, digest, unit_start, unit_end, has_vector)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (base + n, file_id, n, *r[:9], int((r[6], r[2], r[3]) in kept))
                    for n, r in enumerate(records)
                ],
            )
            fts_path_words = fts_path(path)
            db.executemany(
                "INSERT INTO chunks_fts(rowid, symbol, body, path, name) VALUES (?, ?, ?, ?, ?)",
                [(base + n, r[9], r[10], fts_path_words, r[11]) for n, r in enumerate(records)],
            )
            if kept:
                db.executemany(
                    "INSERT INTO vectors(chunk_id, bits, vec) VALUES (?, ?, ?)",
                    [
                        (base + n, *kept[r[6], r[2], r[3]])
                        for n, r in enumerate(records)
                        if (r[6], r[2], r[3]) in kept
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
        return {r[0]: ChunkRow(*r) for r in rows}

    def outlines(self, ids: Sequence[int], min_lines: int) -> dict[int, ChunkOutline]:
        """What search needs to know of each chunk in ``ids`` beyond its score."""
        if not ids:
            return {}
        rows = self.reader().execute(
            "SELECT c.id, c.kind, c.file_id, c.start_line, c.end_line, c.unit_start,"
            " c.end_line - c.start_line + 1 < ?1 AND EXISTS(SELECT 1 FROM chunks o"
            " WHERE o.file_id = c.file_id AND o.end_line - o.start_line + 1 >= ?1)"
            " FROM chunks c WHERE c.id IN (SELECT value FROM json_each(?2))",
            (min_lines, json_ids(ids)),
        )
        return {r[0]: ChunkOutline(r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows}

    def chunks_of(self, path: str) -> list[ChunkRow]:
        rows = self.reader().execute(
            f"SELECT {_CHUNK_COLS} FROM chunks c JOIN files f ON f.id = c.file_id"
            " WHERE f.path = ? ORDER BY c.ord",
            (path,),
        )
        return [ChunkRow(*r) for r in rows]

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
        return ChunkRow(*row) if row else None

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

    # -- lexical search -----------------------------------------------------

    def lexical(
        self,
        terms: Sequence[str],
        limit: int,
        languages: Sequence[str] | None = None,
        file_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """(chunk id, bm25) for chunks holding any of ``terms``, best first.

        bm25 is negative, lower is better. Ranking every chunk that holds a
        word found nearly everywhere ("data", "self") is what makes lexical
        search slow on a large index, and such words add almost nothing to
        bm25; so on a large index the commonest terms are dropped while rarer
        ones remain (see _selective). A query made only of such words is
        ranked from each word's champion list instead (see _champion_list).
        """
        terms = list(dict.fromkeys(terms))
        if not terms:
            return []
        kept = self._selective(terms)
        if kept is None:
            found = self._from_champions(terms, limit, languages, file_ids)
            if found is not None:
                return found
            kept = terms
        return self._rank(kept, limit, languages, file_ids)

    def _rank(
        self,
        terms: Sequence[str],
        limit: int,
        languages: Sequence[str] | None = None,
        file_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """bm25 over every chunk holding any of ``terms``: exact, and slow for common ones."""
        match = " OR ".join(_phrase(t) for t in terms)
        sql = [f"SELECT f.rowid, {_BM25} AS score FROM chunks_fts f"]
        params: list[object] = [match]
        where = ["chunks_fts MATCH ?"]
        if languages or file_ids is not None:
            sql.append("JOIN chunks c ON c.id = f.rowid")
            where.extend(_filters(languages, file_ids, params))
        sql.append("WHERE " + " AND ".join(where))
        sql.append("ORDER BY score LIMIT ?")
        params.append(limit)
        try:
            return [(r[0], r[1]) for r in self.reader().execute(" ".join(sql), params)]
        except apsw.SQLError:
            # A query FTS5 cannot parse has no lexical answer; vector search may still help.
            return []

    def _budget(self) -> int | None:
        """Chunks one query may rank, or None when the index is small enough to rank all."""
        total = self.counts()["chunks"]
        if total <= LEXICAL_BUDGET:
            return None
        with self._state:
            if not (0.8 * self._df_total <= total <= 1.25 * self._df_total):
                self._df.clear()
                self._champions.clear()
                self._df_total = total
        return max(LEXICAL_BUDGET, int(total * 0.05))

    def _selective(self, terms: list[str]) -> list[str] | None:
        """The query terms worth ranking by, rarest first, within a document budget.

        None when even the rarest term is over the budget: ranking by it would
        mean scoring a large share of the index.
        """
        budget = self._budget()
        if budget is None:
            return terms
        freq = sorted((self._doc_freq(t, budget + 1), t) for t in terms)
        if freq[0][0] > budget:
            return None
        kept = [freq[0][1]]
        spent = freq[0][0]
        for df, t in freq[1:]:
            if spent + df > budget:
                break
            kept.append(t)
            spent += df
        return kept

    def _doc_freq(self, term: str, cap: int) -> int:
        """Chunks holding ``term``, counted no further than ``cap``.

        Past the budget a term is dropped whatever its count, so counting stops
        there: a word in every chunk costs as little as a rare one.
        """
        cached = self._df.get(term)
        if cached is None:
            row = one_row(
                self.reader().execute(
                    "SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"
                    " LIMIT ?)",
                    (_phrase(term), cap),
                )
            )
            cached = self._df[term] = int(row[0])
        return cached

    # Champion lists (Manning, Raghavan and Schütze, Introduction to Information
    # Retrieval, 7.1.3): for a term held by a large share of the index, the
    # CHAMPIONS chunks where it weighs most, with that term's bm25. bm25 over
    # OR-ed terms is the sum of each term's part, so a query made only of
    # common terms is ranked by summing its terms' lists: exact for a chunk in
    # every list, an underestimate for one missing from some. Computing a list
    # costs one full ranking of the term; it is then reused until the index
    # has grown or shrunk by a fifth or CHAMPION_TTL_S has passed, so chunks
    # written since may be missing from it (vector search still finds them).

    def _from_champions(
        self,
        terms: Sequence[str],
        limit: int,
        languages: Sequence[str] | None,
        file_ids: Sequence[int] | None,
    ) -> list[tuple[int, float]] | None:
        scores: dict[int, float] = {}
        for term in terms:
            for cid, score in self._champion_list(term):
                scores[cid] = scores.get(cid, 0.0) + score
        ranked = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))
        if languages or file_ids is not None:
            params: list[object] = [json_ids([cid for cid, _ in ranked])]
            where = [
                "c.id IN (SELECT value FROM json_each(?))",
                *_filters(languages, file_ids, params),
            ]
            rows = self.reader().execute(
                "SELECT c.id FROM chunks c WHERE " + " AND ".join(where), params
            )
            allowed = {r[0] for r in rows}
            ranked = [r for r in ranked if r[0] in allowed]
            if len(ranked) < limit:
                return None  # the filter kept too few: rank everything after all
        return ranked[:limit]

    def _champion_list(self, term: str) -> list[tuple[int, float]]:
        key = self._stem(term)
        now = time.monotonic()
        with self._state:
            cached = self._champions.get(key)
        if cached is not None and now - cached[0] < CHAMPION_TTL_S:
            return cached[1]
        found = self._rank([term], CHAMPIONS)
        with self._state:
            self._champions[key] = (now, found)
        return found

    def _stem(self, term: str) -> str:
        """The token FTS5 indexes for ``term``: "parse" and "parsing" share one list."""
        tokens = self._tokenize(term.encode("utf-8"), apsw.FTS5_TOKENIZE_QUERY)
        return " ".join(token for _, _, token in tokens) or term

    def _tokenize(self, data: bytes, reason: int) -> list[tuple[int, int, str]]:
        """(start, end, token) as FTS5's own tokenizer gives them, for this thread."""
        tokenizer: Any = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self.reader().fts5_tokenizer("porter", list(_FTS_TOKENIZER_ARGS))
            self._local.tokenizer = tokenizer
        return [(int(t[0]), int(t[1]), str(t[2])) for t in tokenizer(data, reason, None)]

    def warm_lexical(self, sample: int = 400, max_terms: int = 64) -> int:
        """Compute the champion lists of the words most chunks hold; returns how many.

        The words are read off a random sample of chunks, so the lists a user's
        common words need are ready before the first query asks for them. For
        a background thread: each list costs one full ranking of its word.
        """
        budget = self._budget()
        if budget is None:
            return 0
        total = self.counts()["chunks"]
        rows = self.reader().execute(
            "SELECT text FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY random() LIMIT ?)",
            (sample,),
        )
        holders: dict[str, int] = {}
        surface: dict[str, str] = {}
        seen = 0
        for (text,) in rows:
            seen += 1
            body = fts_text(text)
            data = body.encode("utf-8")
            stems: set[str] = set()
            for start, end, stem in self._tokenize(data, apsw.FTS5_TOKENIZE_DOCUMENT):
                stems.add(stem)
                if stem not in surface:
                    surface[stem] = data[start:end].decode("utf-8", "replace").lower()
            for stem in stems:
                holders[stem] = holders.get(stem, 0) + 1
        if not seen:
            return 0
        # A word in more than the budget's share of the sample is likely over
        # the budget in the index too.
        common = [s for s, n in holders.items() if n / seen * total > budget]
        common.sort(key=lambda s: -holders[s])
        warmed = 0
        for stem in common[:max_terms]:
            word = surface[stem]
            if self._stem(word) != stem:
                continue
            if self._doc_freq(word, budget + 1) > budget:
                self._champion_list(word)
                warmed += 1
        return warmed


def one_row(cursor: apsw.Cursor) -> Any:
    """The row of a query that always has one (an aggregate, a PRAGMA)."""
    row = cursor.fetchone()
    if row is None:
        raise IndexCorruptError("the index answered an aggregate query with no row")
    return row


def _phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _filters(
    languages: Sequence[str] | None, file_ids: Sequence[int] | None, params: list[object]
) -> list[str]:
    """WHERE clauses on ``chunks c`` for the search filters; appends their parameters."""
    where = []
    if languages:
        where.append("c.language IN (SELECT value FROM json_each(?))")
        params.append(json_strs(languages))
    if file_ids is not None:
        where.append("c.file_id IN (SELECT value FROM json_each(?))")
        params.append(json_ids(file_ids))
    return where


@contextlib.contextmanager
def transaction(conn: apsw.Connection) -> Iterator[apsw.Connection]:
    """One transaction on ``conn``: committed on success, rolled back on any error.

    Not apsw's ``with conn:``: its commit holds the GIL, and a commit that runs
    a WAL checkpoint waits on fsync for tens of milliseconds. Every other thread
    stopped meanwhile: the language server's request handlers, and the threads
    that carry results from the indexing workers (which then stalled on a full
    pipe). Statements run through ``execute`` release the GIL.

    IMMEDIATE: the write lock is taken at the start, where SQLite's busy
    timeout waits for another process's transaction to end. A deferred
    transaction that reads first gets SQLITE_BUSY at once, with no wait, when
    another process commits between its read and its first write: an editor's
    small writes failed that way while a ``kenning index`` ran.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        raise


def bump_generation(db: apsw.Connection) -> None:
    """Mark that chunk vectors changed, so in-memory search structures reload."""
    db.execute(
        "INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key)"
        " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def json_ids(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def json_strs(values: Sequence[str]) -> str:
    return json.dumps(list(values))
