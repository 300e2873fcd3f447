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

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import apsw
import numpy as np

from kenning.engine.store import BUSY_TIMEOUT_MS, Store, _json_ids, bump_generation


def quantize(vectors: np.ndarray) -> np.ndarray:
    """Sign bits of each row, packed: (n, dims) float -> (n, dims/8) uint8."""
    return np.packbits(vectors > 0, axis=1)


class EmbeddingCache:
    """Vectors by (model id, chunk digest), shared by every workspace.

    A second clone, a worktree or a branch switch re-embeds nothing seen
    before. Lives in its own database so indexes can be deleted freely.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self.conn = apsw.Connection(str(path))
        self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS cache(model TEXT NOT NULL, digest TEXT NOT NULL,"
            " vec BLOB NOT NULL, PRIMARY KEY(model, digest)) WITHOUT ROWID"
        )

    def get_many(self, model: str, digests: Sequence[str]) -> dict[str, bytes]:
        if not digests:
            return {}
        with self._lock:
            rows = self.conn.execute(
                "SELECT digest, vec FROM cache WHERE model = ? AND digest IN"
                " (SELECT value FROM json_each(?))",
                (model, _json_strs(digests)),
            )
            return {r[0]: r[1] for r in rows}

    def put_many(self, model: str, items: Sequence[tuple[str, bytes]]) -> None:
        if not items:
            return
        with self._lock, self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO cache(model, digest, vec) VALUES (?, ?, ?)",
                ((model, d, v) for d, v in items),
            )

    def count(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return int(self.conn.execute("SELECT count(*) FROM cache").fetchone()[0])
            return int(
                self.conn.execute(
                    "SELECT count(*) FROM cache WHERE model = ?", (model,)
                ).fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _json_strs(values: Sequence[str]) -> str:
    return "[" + ",".join('"' + v + '"' for v in values) + "]"


@dataclass
class _Coarse:
    generation: str | None
    ids: np.ndarray  # int64 chunk ids
    bits: np.ndarray  # (n, words) uint64
    languages: np.ndarray  # int32 codes into language_names
    file_ids: np.ndarray  # int64
    language_names: list[str]


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
            db.execute("UPDATE chunks SET has_vector = 0 WHERE has_vector = 1")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('vector_model', ?)", (model_id,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('vector_dims', ?)", (str(dims),))
            bump_generation(db)
        return current is not None

    @property
    def model_id(self) -> str | None:
        return self.store.get_meta("vector_model")

    # -- writing ------------------------------------------------------------

    def pending(self, limit: int) -> list[tuple[int, str, str]]:
        """(chunk id, digest, text) of chunks still waiting for a vector."""
        rows = self.store.reader().execute(
            "SELECT id, digest, text FROM chunks WHERE has_vector = 0 ORDER BY id LIMIT ?",
            (limit,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def pending_count(self) -> int:
        return int(
            self.store.reader()
            .execute("SELECT count(*) FROM chunks WHERE has_vector = 0")
            .fetchone()[0]
        )

    def write(self, ids: Sequence[int], vectors: np.ndarray) -> int:
        """Store vectors for chunk ids (rows of ``vectors``); chunks gone meanwhile are skipped."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        bits = quantize(vectors)
        written = 0
        with self.store.write() as db:
            for i, chunk_id in enumerate(ids):
                # The chunk may have been replaced by a newer edit since it was read.
                db.execute("UPDATE chunks SET has_vector = 1 WHERE id = ?", (chunk_id,))
                if db.changes() == 0:
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO vectors(chunk_id, bits, vec) VALUES (?, ?, ?)",
                    (chunk_id, bits[i].tobytes(), vectors[i].tobytes()),
                )
                written += 1
            bump_generation(db)
        return written

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
            (_json_ids(chunk_ids),),
        )
        return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}

    # -- search -------------------------------------------------------------

    def _load(self) -> _Coarse:
        generation = self.store.get_meta("generation")
        with self._lock:
            if self._coarse is not None and self._coarse.generation == generation:
                return self._coarse
            rows = (
                self.store.reader()
                .execute(
                    "SELECT v.chunk_id, v.bits, c.language, c.file_id FROM vectors v"
                    " JOIN chunks c ON c.id = v.chunk_id ORDER BY v.chunk_id"
                )
                .fetchall()
            )
            names: list[str] = []
            codes: dict[str, int] = {}
            n = len(rows)
            ids = np.empty(n, dtype=np.int64)
            langs = np.empty(n, dtype=np.int32)
            files = np.empty(n, dtype=np.int64)
            raw = bytearray()
            for i, (chunk_id, bits, language, file_id) in enumerate(rows):
                ids[i] = chunk_id
                files[i] = file_id
                code = codes.get(language)
                if code is None:
                    code = codes[language] = len(names)
                    names.append(language)
                langs[i] = code
                raw += bits
            width = len(rows[0][1]) if rows else 8
            # Pad each row to whole 64-bit words for a fast popcount.
            arr = (
                np.frombuffer(bytes(raw), dtype=np.uint8).reshape(n, width)
                if n
                else np.zeros((0, width), dtype=np.uint8)
            )
            pad = (-width) % 8
            if pad:
                arr = np.pad(arr, ((0, 0), (0, pad)))
            self._coarse = _Coarse(generation, ids, arr.view(np.uint64), langs, files, names)
            return self._coarse

    def size(self) -> int:
        return len(self._load().ids)

    def nearest(
        self,
        query: np.ndarray,
        k: int,
        languages: Sequence[str] | None = None,
        file_ids: Sequence[int] | None = None,
        exclude: Sequence[int] = (),
        candidates: int | None = None,
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks, best first."""
        coarse = self._load()
        if len(coarse.ids) == 0 or k <= 0:
            return []
        mask = np.ones(len(coarse.ids), dtype=bool)
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
        want = candidates or max(400, 40 * k)
        if len(pool) > want:
            qbits = quantize(query.reshape(1, -1))
            pad = (-qbits.shape[1]) % 8
            if pad:
                qbits = np.pad(qbits, ((0, 0), (0, pad)))
            q = qbits.view(np.uint64)[0]
            dist = np.bitwise_count(coarse.bits[pool] ^ q).sum(axis=1)
            pool = pool[np.argpartition(dist, want)[:want]]
        chosen = coarse.ids[pool]
        rows = self.store.reader().execute(
            "SELECT chunk_id, 1.0 - vec_distance_cosine(vec, ?) AS sim FROM vectors"
            " WHERE chunk_id IN (SELECT value FROM json_each(?)) ORDER BY sim DESC LIMIT ?",
            (
                np.ascontiguousarray(query, dtype=np.float32).tobytes(),
                _json_ids(chosen.tolist()),
                k,
            ),
        )
        return [(r[0], float(r[1])) for r in rows]
