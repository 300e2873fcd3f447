"""Queries over one index: lexical (FTS5 bm25), vector (cosine), hybrid (fusion).

Hybrid fuses the two candidate lists by relative score: bm25 and cosine live
on unrelated scales, so each list is min-max scaled to [0, 1] within itself and
the two are averaged. Unlike reciprocal rank fusion this keeps the margins: a
chunk far ahead in one list is not overtaken by chunks that rank middling in
both, which is what happens with OR-matched bm25 lists where many chunks share
a common query word. On the quality corpus (``bench/bench_quality.py``) it
lifts MRR@10 from 0.731 to 0.777 with line-window chunks and from 0.767 to
0.817 with tree-sitter chunks, where plain RRF fell below vector search alone;
``tests/integration/test_search_quality.py`` checks that hybrid beats either
mode alone. Every hit carries ``explain``: its lexical rank and bm25, its
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
# Weight of the vector list in hybrid fusion; 0.5 and 0.6 were best and about
# equal on the quality corpus, 0.3 and 0.7 clearly worse.
VECTOR_WEIGHT = 0.5
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


def _minmax(values: dict[int, float]) -> dict[int, float]:
    """Scale to [0, 1] within the list; a list whose values are all equal scores 1.0."""
    if not values:
        return {}
    lo, hi = min(values.values()), max(values.values())
    span = hi - lo
    if span <= 0:
        return dict.fromkeys(values, 1.0)
    return {cid: (v - lo) / span for cid, v in values.items()}


def fuse(
    lexical: Sequence[tuple[int, float]],
    vector: Sequence[tuple[int, float]],
    vector_weight: float = VECTOR_WEIGHT,
) -> dict[int, float]:
    """Relative score fusion of (chunk id, bm25) and (chunk id, cosine) lists.

    Each list is min-max scaled within itself, then the two are blended with
    ``vector_weight``. An empty list gives its weight to the other, so a chunk
    at the top of every list that has answers scores 1.0.
    """
    lex = _minmax({cid: -bm25 for cid, bm25 in lexical})
    vec = _minmax(dict(vector))
    w_vec = vector_weight if lex and vec else (1.0 if vec else 0.0)
    w_lex = 1.0 - w_vec
    return {cid: w_lex * lex.get(cid, 0.0) + w_vec * vec.get(cid, 0.0) for cid in lex.keys() | vec}


def rank_fused(
    lexical: Sequence[tuple[int, float]], vector: Sequence[tuple[int, float]]
) -> list[tuple[int, float]]:
    """:func:`fuse`'s scores, best first. Equal scores go to the chunk with word
    evidence first, then by each list's own order: a vector list whose scores all
    tie (it tells nothing apart) must not bury a chunk the words single out."""
    lex_rank = {cid: i for i, (cid, _) in enumerate(lexical)}
    vec_rank = {cid: i for i, (cid, _) in enumerate(vector)}
    last = len(lexical) + len(vector)
    return sorted(
        fuse(lexical, vector).items(),
        key=lambda kv: (
            -kv[1],
            lex_rank.get(kv[0], last),
            vec_rank.get(kv[0], last),
            kv[0],
        ),
    )


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
        space: str | None = None,
    ) -> SearchResult:
        """``space`` names the vector space of ``query_vector`` (see ``Embedder.space``)."""
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
        held = self.vectors.model_id if space is not None else None
        if held is not None and held != space:
            # The model changed and the index is not re-embedded yet: vectors of
            # two models never meet, so until then only words can answer.
            notes.append(f"the index holds vectors of {held}, not {space}: words only for now")
        elif mode in ("vector", "hybrid") and query_vector is not None:
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
            ranked = rank_fused(lexical, vector)
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


def merge_results(results: Sequence[SearchResult], k: int, query: str) -> SearchResult:
    """One answer from several workspace roots: best scores first, at most ``k``.

    Shared by the CLI and the language server, so both merge roots the same way.
    """
    hits = sorted((h for r in results for h in r.results), key=lambda h: -h.score)[:k]
    return SearchResult(
        query=query,
        mode=results[0].mode if results else "hybrid",
        results=hits,
        took_ms=sum(r.took_ms for r in results),
        complete=min((r.complete for r in results), default=1.0),
        notes=sorted({n for r in results for n in r.notes}),
    )
