"""Chunk vectors: the shared embedding cache, the per-index vector table, and
the in-memory coarse index used for nearest-neighbour search.

Design, measured in ``bench/bench_search.py`` on the 2-core reference machine
(100k vectors of 384 dims): a sqlite-vec ``vec0`` brute-force KNN took ~90 ms
(float) and ~110 ms (bit); a numpy popcount pass over sign bits held in memory
takes ~5 ms and rescoring its best few hundred candidates exactly with
sqlite-vec's ``vec_distance_cosine`` ~2 ms. So the index keeps float32 vectors
and their sign bits in SQLite, loads only the bits (48 bytes a chunk) into
memory, and rescores exactly in SQL.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import apsw
import numpy as np

from kenning.engine.home import SQLITE_COMPANIONS, open_owned, repair, sqlite_problem
from kenning.engine.sql import json_ids, json_strs, one_row, transaction
from kenning.engine.store import BUSY_TIMEOUT_MS, Store
from kenning.errors import DamagedFileError, HomeError

T = TypeVar("T")


def quantize(vectors: np.ndarray) -> np.ndarray:
    """Sign bits of each row, packed: (n, dims) float -> (n, dims/8) uint8."""
    return np.packbits(vectors > 0, axis=1)


def to_int8(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to fill int8 and rounded. Cosine ignores a row's scale,
    so sqlite-vec's cosine over ``vec_int8`` rows stays within 0.003 of the
    float one (0.0004 on average, real name vectors and queries), at a quarter
    of the bytes."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    peak[peak == 0] = 1.0
    return np.round(vectors / peak * 127).astype(np.int8)


# A name vector's cosine counts, less this margin, when it beats the code's:
# the best of 0-0.15 on the dev benchmark and on the second check set
# (bench/README.md, "Name vectors"). Without the margin a short name that
# shares one word with the query outranks code that does what it asks.
NAME_MARGIN = 0.07


class EmbeddingCache:
    """Vectors by (model id, chunk digest), shared by every workspace.

    A second clone, a worktree or a branch switch re-embeds nothing seen
    before. Lives in its own database so indexes can be deleted freely.
    Being a cache, it is never worth an error: a damaged one (found on open,
    or by a read or write later) is moved aside and started anew, and the
    vectors it held are embedded again as they are needed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.conn, self.rebuilt = open_owned(path, _open_cache)
        self._inode = _inode(path)

    def _run(self, work: Callable[[apsw.Connection], T]) -> T:
        """``work(connection)`` under the lock; on damage, repair and try once more."""
        with self._lock:
            try:
                return work(self.conn)
            except (apsw.CorruptError, apsw.NotADBError) as exc:
                with contextlib.suppress(apsw.Error):
                    self.conn.close()
                # Another process may have repaired it already: then its new
                # file is in place, and it is not ours to move.
                if _inode(self.path) == self._inode:
                    repair(
                        self.path,
                        f"{self.path}: the embedding cache is damaged ({exc})",
                        SQLITE_COMPANIONS,
                    )
                self.conn, _ = open_owned(self.path, _open_cache)
                self._inode = _inode(self.path)
                self.rebuilt = True
                return work(self.conn)

    def get_many(self, model: str, digests: Sequence[str]) -> dict[str, bytes]:
        if not digests:
            return {}

        def work(conn: apsw.Connection) -> dict[str, bytes]:
            rows = conn.execute(
                "SELECT digest, vec FROM cache WHERE model = ? AND digest IN"
                " (SELECT value FROM json_each(?))",
                (model, json_strs(digests)),
            )
            return {r[0]: r[1] for r in rows}

        return self._run(work)

    def put_many(self, model: str, items: Sequence[tuple[str, bytes]]) -> None:
        if not items:
            return

        def work(conn: apsw.Connection) -> None:
            with transaction(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO cache(model, digest, vec) VALUES (?, ?, ?)",
                    ((model, d, v) for d, v in items),
                )

        self._run(work)

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._run(
                lambda conn: int(one_row(conn.execute("SELECT count(*) FROM cache"))[0])
            )
        return self._run(
            lambda conn: int(
                one_row(conn.execute("SELECT count(*) FROM cache WHERE model = ?", (model,)))[0]
            )
        )

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _open_cache(path: Path) -> apsw.Connection:
    """A connection to the cache at ``path``; DamagedFileError when it is damaged."""
    problem = sqlite_problem(path)
    if problem is not None:
        raise DamagedFileError(f"{path}: the embedding cache is damaged ({problem})")
    try:
        conn = apsw.Connection(str(path))
    except apsw.CantOpenError as exc:
        raise HomeError(f"cannot open the embedding cache {path} ({exc})") from None
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS cache(model TEXT NOT NULL, digest TEXT NOT NULL,"
            " vec BLOB NOT NULL, PRIMARY KEY(model, digest)) WITHOUT ROWID"
        )
    except (apsw.CorruptError, apsw.NotADBError) as exc:
        conn.close()
        raise DamagedFileError(f"{path}: the embedding cache is damaged ({exc})") from None
    return conn


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass
class _Coarse:
    """The sign bits of one epoch's vectors, held in memory.

    It starts empty and grows by appends. Its row width is that of the
    epoch's model (``dims``, from the same snapshot as ``epoch``), or of the
    first row appended when the index names no model yet; a row of another
    width (written by a process that had not seen a model change) is never
    appended, so every row can be compared with a query of this width.
    """

    epoch: str | None
    dims: int | None  # the float vectors' length; None until a model is set
    generation: str | None = None
    seq: int = 0  # highest vectors.seq seen
    tomb_seq: int = 0  # highest vector_tombstones.seq applied
    width: int | None = None  # bytes of sign bits per row
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1: removed
    bits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    # The name vectors' sign bits, row for row; has_name False where a row has none.
    name_bits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    has_name: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    languages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    file_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    language_names: list[str] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dims is not None:
            self.width = (self.dims + 7) // 8
            self.bits = np.zeros((0, _words(self.width)), np.uint64)
            self.name_bits = np.zeros((0, _words(self.width)), np.uint64)


def _words(width: int) -> int:
    """64-bit words that hold ``width`` bytes of sign bits."""
    return (width + 7) // 8


def _closest(bits: np.ndarray, rows: np.ndarray, q: np.ndarray, want: int) -> np.ndarray:
    """The ``want`` of ``rows`` whose sign bits are nearest ``q`` (all when fewer)."""
    if len(rows) <= want:
        return rows
    # All rows (no filter) are read in place: a fancy-indexed copy of 100k rows
    # cost as much as the popcount itself.
    held = bits if len(rows) == len(bits) else bits[rows]
    dist = np.bitwise_count(held ^ q).sum(axis=1, dtype=np.uint16)
    return rows[np.argpartition(dist, want)[:want]]


# Rows of tombstones kept for readers that lag behind; one further behind reloads.
TOMBSTONES_KEPT = 100_000


class VectorIndex:
    """The vectors of one workspace index, for its current model only."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._coarse: _Coarse | None = None
        self._lock = threading.Lock()

    # -- model --------------------------------------------------------------

    def ensure_model(self, model_id: str, dims: int) -> bool:
        """Make the index hold vectors of ``model_id`` only. True if it dropped others."""
        current = self.store.get_meta("vector_model")
        if current == model_id and self.store.get_meta("vector_dims") == str(dims):
            return False
        with self.store.write() as db:
            db.execute("DELETE FROM vectors")
            db.execute("DELETE FROM vector_tombstones")
            db.execute("UPDATE chunks SET has_vector = 0 WHERE has_vector = 1")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('vector_model', ?)", (model_id,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('vector_dims', ?)", (str(dims),))
            # A new epoch makes every in-memory index reload from scratch.
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('vector_epoch', '1') ON CONFLICT(key)"
                " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
        return current is not None

    @property
    def model_id(self) -> str | None:
        return self.store.get_meta("vector_model")

    # -- writing ------------------------------------------------------------

    def pending_count(self) -> int:
        return int(
            one_row(
                self.store.reader().execute("SELECT count(*) FROM chunks WHERE has_vector = 0")
            )[0]
        )

    def write(
        self,
        ids: Sequence[int],
        vectors: np.ndarray,
        space: str | None = None,
        names: np.ndarray | None = None,
    ) -> int:
        """Store vectors for chunk ids (rows of ``vectors``, and of ``names``, the
        vectors of their names, when given); chunks gone meanwhile are skipped.

        With ``space``, nothing is written unless the index still holds that
        model's vectors: another process may have switched it to another model
        since this one read its pending chunks.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        bits = quantize(vectors)
        name_bits = quantize(names) if names is not None else None
        name_vecs = to_int8(names) if names is not None else None
        written = 0
        with self.store.write() as db:
            if space is not None:
                model, dims = db.execute(
                    "SELECT (SELECT value FROM meta WHERE key = 'vector_model'),"
                    " (SELECT value FROM meta WHERE key = 'vector_dims')"
                ).fetchone() or (None, None)
                if model != space or dims != str(vectors.shape[1]):
                    return 0
            for i, chunk_id in enumerate(ids):
                # The chunk may have been replaced by a newer edit since it was read.
                db.execute(
                    "UPDATE chunks SET has_vector = 1 WHERE id = ? AND has_vector = 0", (chunk_id,)
                )
                if db.changes() == 0:
                    continue
                db.execute(
                    "INSERT INTO vectors(chunk_id, bits, vec, name_bits, name_vec)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        chunk_id,
                        bits[i].tobytes(),
                        vectors[i].tobytes(),
                        name_bits[i].tobytes() if name_bits is not None else None,
                        name_vecs[i].tobytes() if name_vecs is not None else None,
                    ),
                )
                written += 1
            if written:
                self._prune_tombstones(db)
        return written

    def _prune_tombstones(self, db: apsw.Connection) -> None:
        top = one_row(db.execute("SELECT max(seq) FROM vector_tombstones"))[0]
        if top is not None and top > 2 * TOMBSTONES_KEPT:
            db.execute("DELETE FROM vector_tombstones WHERE seq <= ?", (top - TOMBSTONES_KEPT,))

    def vector_of(self, chunk_id: int) -> np.ndarray | None:
        row = (
            self.store.reader()
            .execute("SELECT vec FROM vectors WHERE chunk_id = ?", (chunk_id,))
            .fetchone()
        )
        return np.frombuffer(row[0], dtype=np.float32) if row else None

    def vectors_of(self, chunk_ids: Sequence[int]) -> dict[int, np.ndarray]:
        rows = self.store.reader().execute(
            "SELECT chunk_id, vec FROM vectors WHERE chunk_id IN (SELECT value FROM json_each(?))",
            (json_ids(chunk_ids),),
        )
        return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}

    # -- the in-memory coarse index -------------------------------------------

    def _rows(self, since_seq: int) -> list[tuple[int, int, bytes, str, int, bytes | None]]:
        # apsw types a row as tuple of any SQLite value; these columns are known.
        rows: list[Any] = (
            self.store.reader()
            .execute(
                "SELECT v.seq, v.chunk_id, v.bits, c.language, c.file_id, v.name_bits"
                " FROM vectors v"
                " JOIN chunks c ON c.id = v.chunk_id WHERE v.seq > ? ORDER BY v.seq",
                (since_seq,),
            )
            .fetchall()
        )
        return rows

    def _append(
        self, coarse: _Coarse, rows: list[tuple[int, int, bytes, str, int, bytes | None]]
    ) -> None:
        if not rows:
            return
        coarse.seq = max(coarse.seq, rows[-1][0])
        if coarse.width is None:
            coarse.width = len(rows[0][2])
            coarse.bits = np.zeros((0, _words(coarse.width)), np.uint64)
            coarse.name_bits = np.zeros((0, _words(coarse.width)), np.uint64)
        width = coarse.width
        rows = [r for r in rows if len(r[2]) == width]
        if not rows:
            return
        n = len(rows)
        raw = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint8).reshape(n, width)
        has_name = np.fromiter((r[5] is not None and len(r[5]) == width for r in rows), bool, n)
        names = np.frombuffer(
            b"".join(
                r[5] if ok and r[5] else bytes(width) for r, ok in zip(rows, has_name, strict=True)
            ),
            dtype=np.uint8,
        ).reshape(n, width)
        pad = (-width) % 8
        if pad:
            # Whole 64-bit words make the popcount one vectorised pass.
            raw = np.pad(raw, ((0, 0), (0, pad)))
            names = np.pad(names, ((0, 0), (0, pad)))
        langs = np.empty(n, dtype=np.int32)
        for i, r in enumerate(rows):
            code = coarse.codes.get(r[3])
            if code is None:
                code = coarse.codes[r[3]] = len(coarse.language_names)
                coarse.language_names.append(r[3])
            langs[i] = code
        new_ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
        if len(coarse.ids):
            # A chunk re-embedded in place must not appear twice.
            coarse.ids[np.isin(coarse.ids, new_ids)] = -1
        coarse.ids = np.concatenate([coarse.ids, new_ids])
        coarse.bits = np.concatenate([coarse.bits, np.ascontiguousarray(raw).view(np.uint64)])
        coarse.name_bits = np.concatenate(
            [coarse.name_bits, np.ascontiguousarray(names).view(np.uint64)]
        )
        coarse.has_name = np.concatenate([coarse.has_name, has_name])
        coarse.languages = np.concatenate([coarse.languages, langs])
        coarse.file_ids = np.concatenate(
            [coarse.file_ids, np.fromiter((r[4] for r in rows), dtype=np.int64, count=n)]
        )

    def _load(self) -> _Coarse:
        """The coarse index, brought up to date with what other writers committed."""
        generation = self.store.get_meta("generation")
        with self._lock:
            coarse = self._coarse
            if coarse is not None and coarse.generation == generation:
                return coarse
            db = self.store.reader()
            # One statement, so the epoch and its model's dims come from one snapshot.
            epoch, dims = db.execute(
                "SELECT (SELECT value FROM meta WHERE key = 'vector_epoch'),"
                " (SELECT value FROM meta WHERE key = 'vector_dims')"
            ).fetchone() or (None, None)
            floor = one_row(db.execute("SELECT min(seq) FROM vector_tombstones"))[0]
            if (
                coarse is None
                or coarse.epoch != epoch
                or (floor is not None and floor > coarse.tomb_seq + 1)
            ):
                coarse = _Coarse(epoch, int(dims) if dims else None)
                top = one_row(db.execute("SELECT max(seq) FROM vector_tombstones"))[0]
                coarse.tomb_seq = int(top or 0)
                self._append(coarse, self._rows(0))
            else:
                gone: list[Any] = db.execute(
                    "SELECT seq, chunk_id FROM vector_tombstones WHERE seq > ? ORDER BY seq",
                    (coarse.tomb_seq,),
                ).fetchall()
                self._append(coarse, self._rows(coarse.seq))
                if gone:
                    # Tombstones older than a row's own write do not apply to it:
                    # a chunk id is never reused, so any tombstone means gone.
                    dead = np.fromiter((g[1] for g in gone), dtype=np.int64, count=len(gone))
                    coarse.ids[np.isin(coarse.ids, dead)] = -1
                    coarse.tomb_seq = int(gone[-1][0])
            coarse.generation = generation
            self._coarse = coarse
            return coarse

    def size(self) -> int:
        return int(np.count_nonzero(self._load().ids >= 0))

    def nearest(
        self,
        query: np.ndarray,
        k: int,
        languages: Sequence[str] | None = None,
        file_ids: Sequence[int] | None = None,
        exclude: Sequence[int] = (),
        candidates: int | None = None,
        names: bool = False,
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks, best first.

        With ``names``, a chunk's similarity is the better of its code's cosine
        and its name's less NAME_MARGIN, and the name vectors' own nearest are
        candidates too: for a question in words. Code compared with code
        (similar code) leaves names out."""
        coarse = self._load()
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if len(coarse.ids) == 0 or k <= 0:
            return []
        if (coarse.dims is not None and len(query) != coarse.dims) or (
            coarse.width is not None and (len(query) + 7) // 8 != coarse.width
        ):
            # A query from another model than the index's vectors (the model
            # changed and the index is not re-embedded yet): nothing compares.
            return []
        mask = coarse.ids >= 0
        if languages:
            wanted = [
                coarse.language_names.index(x) for x in languages if x in coarse.language_names
            ]
            mask &= np.isin(coarse.languages, wanted)
        if file_ids is not None:
            mask &= np.isin(coarse.file_ids, np.asarray(list(file_ids), dtype=np.int64))
        if exclude:
            mask &= ~np.isin(coarse.ids, np.asarray(list(exclude), dtype=np.int64))
        pool = np.flatnonzero(mask)
        if len(pool) == 0:
            return []
        # At least 1% of the index: the coarse pass's misses grow with its size.
        want = candidates or max(256, 8 * k, len(coarse.ids) // 100)
        qbits = quantize(query.reshape(1, -1))
        pad = (-qbits.shape[1]) % 8
        if pad:
            qbits = np.pad(qbits, ((0, 0), (0, pad)))
        q = qbits.view(np.uint64)[0]
        code_rows = _closest(coarse.bits, pool, q, want)
        found = self._rescore("vec", query.tobytes(), coarse.ids[code_rows], k)
        if not names:
            return found
        named = pool if coarse.has_name.all() else pool[coarse.has_name[pool]]
        if len(named) == 0:
            return found  # none written with a name (a shard built before names)
        # Names take no 1% floor: rescoring costs a row read each, and a name
        # worth finding is near the query. At 100k chunks 1,000 name candidates
        # rescored with the code's doubled the vector pass; 400 rescored apart
        # add 4-6 ms (bench_search.py, hybrid_no_names).
        name_rows = _closest(coarse.name_bits, named, q, candidates or max(256, 8 * k))
        # Rescored apart, each list against its own vectors: a chunk in one
        # list's top k alone is scored by that list, its other cosine having
        # missed the other list's top k.
        best = dict(found)
        for cid, sim in self._rescore(
            "vec_int8(name_vec)", to_int8(query)[0].tobytes(), coarse.ids[name_rows], k, "vec_int8"
        ):
            best[cid] = max(best.get(cid, -2.0), sim - NAME_MARGIN)
        return sorted(best.items(), key=lambda kv: -kv[1])[:k]

    def _rescore(
        self, column: str, query: bytes, ids: np.ndarray, k: int, cast: str = ""
    ) -> list[tuple[int, float]]:
        """(chunk id, exact cosine of ``column`` to ``query``) of the best ``k`` of ``ids``."""
        rows = self.store.reader().execute(
            f"SELECT chunk_id, 1.0 - vec_distance_cosine({column}, {cast}(?)) AS sim"
            f" FROM vectors WHERE chunk_id IN (SELECT value FROM json_each(?))"
            f"{' AND name_vec IS NOT NULL' if cast else ''} ORDER BY sim DESC LIMIT ?",
            (query, json_ids(ids.tolist()), k),
        )
        return [(r[0], float(r[1])) for r in rows]
