"""Queries over one index: lexical (FTS5 bm25), vector (cosine), hybrid (fusion).

Hybrid fuses the two rankings with reciprocal rank fusion. Rank fusion needs
no calibration between bm25 and cosine, which live on unrelated scales, and
``tests/integration/test_search_quality.py`` checks that it beats either mode
alone on MRR@10. Every hit carries ``explain``: its lexical rank and bm25, its
vector rank and cosine similarity, so a surprising result can be understood.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kenning.engine.store import ChunkRow, Store
from kenning.engine.text import query_terms
from kenning.engine.types import SearchHit
from kenning.engine.vectors import VectorIndex
from kenning.errors import NeedsEmbeddingsError, UsageError

MODES = ("hybrid", "vector", "lexical")
RRF_K = 60
SNIPPET_LINES = 8
SNIPPET_CHARS = 400


@dataclass
class SearchResult:
    query: str
    mode: str
    results: list[SearchHit]
    took_ms: float
    # Share of chunks that have a vector; below 1.0 while embedding is under way.
    complete: float = 1.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "query": self.query,
            "mode": self.mode,
            "took_ms": round(self.took_ms, 2),
            "complete": round(self.complete, 4),
            "results": [h.to_json() for h in self.results],
        }
        if self.notes:
            out["notes"] = self.notes
        return out


def snippet(text: str) -> str:
    lines = text.splitlines()[:SNIPPET_LINES]
    out = "\n".join(lines)
    if len(out) > SNIPPET_CHARS:
        out = out[: SNIPPET_CHARS - 1].rstrip() + "…"
    return out


def to_hit(row: ChunkRow, score: float, explain: dict[str, float | int | None]) -> SearchHit:
    return SearchHit(
        path=row.path,
        start_line=row.start_line,
        end_line=row.end_line,
        symbol=row.symbol,
        kind=row.kind,
        language=row.language,
        score=score,
        snippet=snippet(row.text),
        chunk_id=row.id,
        explain=explain,
    )


def lexical_score(bm25: float) -> float:
    """bm25 (negative, unbounded) squashed into (0, 1) for display."""
    x = -bm25
    return x / (x + 5.0) if x > 0 else 0.0


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion scaled so a chunk first in every list scores 1.0."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    top = len(rankings) / (k + 1)
    return {cid: s / top for cid, s in scores.items()}


class Searcher:
    def __init__(self, store: Store, vectors: VectorIndex) -> None:
        self.store = store
        self.vectors = vectors

    def search(
        self,
        query: str,
        query_vector: np.ndarray | None,
        k: int = 10,
        mode: str = "hybrid",
        languages: Sequence[str] | None = None,
        file_ids: Sequence[int] | None = None,
    ) -> SearchResult:
        started = time.perf_counter()
        if mode not in MODES:
            raise UsageError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        if k < 1:
            raise UsageError("k must be at least 1")
        if not query.strip():
            raise UsageError("the query is empty")
        counts = self.store.counts()
        complete = counts["embedded"] / counts["chunks"] if counts["chunks"] else 1.0
        notes: list[str] = []
        if mode == "vector" and query_vector is None:
            raise NeedsEmbeddingsError("vector search needs an embedding model; none is loaded")
        pool = max(k * 3, 50)
        lexical: list[tuple[int, float]] = []
        vector: list[tuple[int, float]] = []
        if mode in ("lexical", "hybrid"):
            lexical = self.store.lexical(query_terms(query), pool, languages, file_ids)
        if mode in ("vector", "hybrid") and query_vector is not None:
            vector = self.vectors.nearest(query_vector, pool, languages, file_ids)
        if mode == "hybrid" and query_vector is None:
            notes.append("no embedding model loaded: lexical results only")
        if complete < 1.0 and mode != "lexical":
            notes.append(f"embeddings {complete:.0%} complete: results may be missing")

        lex_rank = {cid: i for i, (cid, _) in enumerate(lexical, start=1)}
        lex_bm25 = dict(lexical)
        vec_rank = {cid: i for i, (cid, _) in enumerate(vector, start=1)}
        vec_sim = dict(vector)
        if mode == "lexical":
            ranked = [(cid, lexical_score(b)) for cid, b in lexical]
        elif mode == "vector":
            ranked = [(cid, max(0.0, sim)) for cid, sim in vector]
        else:
            lists = [[cid for cid, _ in lexical]]
            if vector:
                lists.append([cid for cid, _ in vector])
            fused = rrf(lists)
            ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        ranked = ranked[:k]
        rows = self.store.chunk_rows([cid for cid, _ in ranked])
        hits: list[SearchHit] = []
        for cid, score in ranked:
            row = rows.get(cid)
            if row is None:
                continue  # replaced by a concurrent write since the query ran
            explain: dict[str, float | int | None] = {
                "lexical_rank": lex_rank.get(cid),
                "bm25": round(lex_bm25[cid], 4) if cid in lex_bm25 else None,
                "vector_rank": vec_rank.get(cid),
                "similarity": round(vec_sim[cid], 4) if cid in vec_sim else None,
            }
            hits.append(to_hit(row, score, explain))
        took = (time.perf_counter() - started) * 1000
        return SearchResult(query, mode, hits, took, complete, notes)
