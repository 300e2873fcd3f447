"""Shard files: normal kenning indexes whose paths carry their repository.

A shard is the index schema of a workspace (``Store``), so the local engine
opens it as it is. It holds files of many repositories, so a stored path is
``REPO//PATH``: a repository id (``host/owner/name`` or a folder name) and the
path inside it; ``//`` never occurs in a relative path. Which shard a file goes
to is a stable hash of (repository, path), so a re-run puts it where it was.

Nothing here imports Ray: a shard answers the same in a Serve replica, in a
benchmark's single process, or in a test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from kenning.engine.search import Searcher, SearchResult, to_hit
from kenning.engine.store import Store
from kenning.engine.vectors import VectorIndex

SEP = "//"
MANIFEST = "cluster.json"


def shard_key(repo: str, rel: str) -> str:
    return f"{repo}{SEP}{rel}"


def split_key(key: str) -> tuple[str, str]:
    repo, sep, rel = key.partition(SEP)
    return (repo, rel) if sep else ("", key)


def shard_of(repo: str, rel: str, shards: int) -> int:
    """Stable across runs, machines and Python versions (not ``hash()``)."""
    return xxhash.xxh3_64_intdigest(f"{repo}\0{rel}".encode()) % shards


def shard_dir(out: Path, shard: int) -> Path:
    return out / f"shard-{shard}"


def shard_db(out: Path, shard: int) -> Path:
    return shard_dir(out, shard) / "index.db"


def read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class ShardCounts:
    files: int
    chunks: int
    embedded: int


class ShardIndex:
    """One shard opened for queries: candidates for a query text and vector."""

    def __init__(self, path: Path, shard_id: int) -> None:
        self.path = path
        self.id = shard_id
        self.store = Store(path)
        self.vectors = VectorIndex(self.store)
        self.searcher = Searcher(self.store, self.vectors)

    def close(self) -> None:
        self.store.close()

    def warm(self) -> None:
        """Load what the first query would wait for (vectors in memory, word lists)."""
        self.vectors.size()
        self.store.fts.warm()

    def counts(self) -> dict[str, int]:
        c = self.store.counts()
        return {
            "id": self.id,
            "files": c["files"],
            "chunks": c["chunks"],
            "embedded": c["embedded"],
        }

    def _file_ids(self, globs: Sequence[str]) -> list[int]:
        from kenning.engine.scan import filter_spec

        spec = filter_spec(globs)
        return [
            row.id for key, row in self.store.files().items() if spec.match_file(split_key(key)[1])
        ]

    def search(
        self,
        query: str,
        vector: np.ndarray | None,
        k: int = 10,
        mode: str = "hybrid",
        languages: Sequence[str] | None = None,
        globs: Sequence[str] | None = None,
        space: str | None = None,
    ) -> SearchResult:
        file_ids = self._file_ids(globs) if globs else None
        result = self.searcher.search(query, vector, k, mode, languages, file_ids, space)
        for hit in result.results:
            hit.repo, hit.path = split_key(hit.path)
        return result

    def similar(self, vector: np.ndarray, k: int = 10, space: str | None = None) -> SearchResult:
        started = time.perf_counter()
        held = self.vectors.model_id
        nearest = self.vectors.nearest(vector, k) if space is None or held == space else []
        rows = self.store.chunk_rows([cid for cid, _ in nearest])
        hits = []
        for cid, sim in nearest:
            row = rows.get(cid)
            if row is None:
                continue
            hit = to_hit(row, max(0.0, sim), {"similarity": round(sim, 4)})
            hit.repo, hit.path = split_key(hit.path)
            hits.append(hit)
        took = (time.perf_counter() - started) * 1000
        return SearchResult("", "vector", hits, took)
