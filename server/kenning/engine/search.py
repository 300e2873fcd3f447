"""Queries over one index: lexical (FTS5 bm25), vector (cosine), hybrid (fusion).

Hybrid fuses the two candidate lists by relative score: bm25 and cosine live
on unrelated scales, so each list is min-max scaled to [0, 1] within itself and
the two are averaged. Unlike reciprocal rank fusion this keeps the margins: a
chunk far ahead in one list is not overtaken by chunks that rank middling in
both, which is what happens with OR-matched bm25 lists where many chunks share
a common query word. On the dev benchmark of real code (see bench/README.md)
RRF, z-score and fixed-scale blends all ranked below it.

One result per definition: the parts of a definition split over several chunks
answer once, by their best part, and a function's result shows its whole range.

The scores a user reads are not the relative ones (the best of every query
would read 1.0, for nonsense too): the best result reads its own evidence on a
fixed scale (cosine and bm25 each mapped by a fixed calibration, blended as in
fusion), the rest in proportion, and a query whose best evidence is weak says
so in ``notes``. Every hit carries ``explain``: its lexical rank and raw bm25,
its vector rank and cosine similarity (its code's, or its name's less
``vectors.NAME_MARGIN`` where that is higher), and its prior, so a surprising
result can be understood.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kenning.engine.chunking import MIN_CHUNK_LINES
from kenning.engine.lexical import stem
from kenning.engine.store import ChunkOutline, ChunkRow, Store
from kenning.engine.text import STOPWORDS, query_terms, query_words, words_of
from kenning.engine.types import SearchHit
from kenning.engine.vectors import VectorIndex
from kenning.errors import NeedsEmbeddingsError, UsageError

MODES = ("hybrid", "vector", "lexical")
# Weight of the vector list in hybrid fusion: best on the dev benchmark of real
# code (0.45, 0.55 and 0.6 all within 0.01 below it; bench/README.md).
VECTOR_WEIGHT = 0.5
# ...and for a query of one word (`parse_args`, `crc32`): the words are the
# question, and a sentence model reads a lone name poorly. With the dev
# benchmark's function names as queries, MRR@10 0.694 against 0.676 at 0.5.
IDENTIFIER_VECTOR_WEIGHT = 0.3
# Scores a user reads are evidence on fixed scales, the same for every query:
# cosine similarity from COSINE_FLOOR (what unrelated text scores with the
# default model) to COSINE_FULL (a close paraphrase) maps to 0..1; word
# evidence is x / (x + BM25_HALF) for a bm25 of -x. Below WEAK_EVIDENCE the
# answer says that nothing matched well.
# Top-level statements outside any definition (imports, a package's doc
# comment, script lines) match many descriptions a little and rarely answer
# one: their scores count this much.
BLOCK_PRIOR = 0.8
# What else a chunk is, besides how well its words and meaning match, measured
# on the dev benchmark (bench/README.md, "priors"): a long chunk matches many
# descriptions a little (its score counts (SIZE_PRIOR_LINES / lines) **
# SIZE_PRIOR_POWER past that many lines); a type, class or impl block holds
# what its methods do and answers a description of doing less often than they
# do (TYPE_PRIOR); and a definition whose own name says what the query says is
# likelier the answer: up to 1 + NAME_BONUS when every word of its name is in
# the query (two of them at least, or all of a shorter name).
SIZE_PRIOR_LINES = 10
SIZE_PRIOR_POWER = 0.2
# The chunker's kinds for what holds definitions (chunking.py: a class chunk is
# its header and fields, each method its own chunk).
TYPE_KINDS = frozenset({"class", "interface", "type", "impl", "module"})
TYPE_PRIOR = 0.6
NAME_BONUS = 0.35
COSINE_FLOOR = 0.2
COSINE_FULL = 0.75
BM25_HALF = 15.0
WEAK_EVIDENCE = 0.35
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


# Kinds whose parts read as one answer: a result shows the whole function. A class's
# parts (its header, its fields after the methods) are shown one by one: the class's
# whole range would hold every method.
WHOLE_UNIT_KINDS = frozenset({"function", "method"})


def to_hit(
    row: ChunkRow,
    score: float,
    explain: dict[str, float | int | None],
    words: set[str] | frozenset[str] = frozenset(),
) -> SearchHit:
    """The answer a chunk gives to a query of ``words``: the chunk, or the small
    definition joined into it (``ChunkRow.parts``) whose name says more of what
    the query says than the chunk's own name, from that definition's first line.

    No answer is under MIN_CHUNK_LINES lines (the rule that keeps fragments out
    of results holds for a whole two-line definition too): a shorter one's
    answer takes in the chunk's lines after it, or at the chunk's end those
    before it, and its snippet still opens on its code.
    """
    symbol, kind, text = row.symbol, row.kind, row.text
    start, end = row.start_line, row.end_line
    part = named_part(row, words)
    if part is not None:
        symbol, start, end, kind = part
        end = min(row.end_line, max(end, start + MIN_CHUNK_LINES - 1))
        start = max(row.start_line, min(start, end - MIN_CHUNK_LINES + 1))
        # The chunk's text ends with its lines; a signature prefix may come first.
        lines = row.text.split("\n")
        first = max(0, len(lines) - (row.end_line - row.start_line + 1) + start - row.start_line)
        shown = lines[first : first + end - start + 1]
        while len(shown) > 1 and not shown[0].strip():
            shown = shown[1:]  # lines taken in from before: the snippet opens on code
        text = "\n".join(shown)
    elif row.unit_start is not None and row.unit_end is not None and row.kind in WHOLE_UNIT_KINDS:
        start, end = row.unit_start, row.unit_end
    return SearchHit(
        path=row.path,
        start_line=start,
        end_line=end,
        symbol=symbol,
        kind=kind,
        language=row.language,
        score=score,
        snippet=snippet(text),
        chunk_id=row.id,
        explain=explain,
    )


def name_words(symbol: str | None) -> set[str]:
    """The stems of a definition's own name's words (``Stack.is_empty``:
    "empti"), to meet a query's (:func:`lexical.stem`): a doc comment says
    "Returns the entries", the name ``get_entry``."""
    if not symbol:
        return set()
    return {stem(w) for w in words_of(symbol.rsplit(".", 1)[-1]) if w not in STOPWORDS}


def names(name: set[str], words: set[str] | frozenset[str]) -> int:
    """How many of the query's ``words`` a name of words ``name`` says, when that
    is enough to say the name answers the query; 0 otherwise. One shared word of
    a longer name is too weak a sign ("read a json config file" and
    `read_since`): two, or the whole name, it takes."""
    said = len(words & name)
    return said if name and said >= min(2, len(name)) else 0


def named_part(row: ChunkRow, words: set[str] | frozenset[str]) -> tuple[str, int, int, str] | None:
    """The definition joined into ``row`` that a query of ``words`` names, by the
    rule of :func:`prior`'s name bonus and with strictly more of its words than
    the chunk's own name; None when there is none (the chunk answers)."""
    if not row.parts or not words:
        return None
    best, most = None, len(words & name_words(row.symbol))
    for part in row.parts:
        said = names(name_words(part[0]), words)
        if said > most:
            best, most = part, said
    return best


def lexical_score(bm25: float) -> float:
    """bm25 (negative, unbounded) squashed into [0, 1) on a fixed scale."""
    x = -bm25
    return x / (x + BM25_HALF) if x > 0 else 0.0


def vector_score(similarity: float) -> float:
    """Cosine similarity mapped onto [0, 1] on a fixed scale."""
    return min(1.0, max(0.0, (similarity - COSINE_FLOOR) / (COSINE_FULL - COSINE_FLOOR)))


def evidence(bm25: float | None, similarity: float | None, vector_weight: float) -> float:
    """How well one chunk matches, on a fixed scale: the two lists' evidence blended
    as fusion blends them. A missing value counts as no evidence from that list."""
    lex = lexical_score(bm25) if bm25 is not None else 0.0
    if similarity is None:
        return lex
    return (1.0 - vector_weight) * lex + vector_weight * vector_score(similarity)


def looks_like_identifier(query: str) -> bool:
    """One word with no spaces: a name someone remembers, not a description."""
    return len(query.split()) == 1


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
    lexical: Sequence[tuple[int, float]],
    vector: Sequence[tuple[int, float]],
    vector_weight: float = VECTOR_WEIGHT,
) -> list[tuple[int, float]]:
    """:func:`fuse`'s scores, best first. Equal scores go to the chunk with word
    evidence first, then by each list's own order: a vector list whose scores all
    tie (it tells nothing apart) must not bury a chunk the words single out."""
    lex_rank = {cid: i for i, (cid, _) in enumerate(lexical)}
    vec_rank = {cid: i for i, (cid, _) in enumerate(vector)}
    last = len(lexical) + len(vector)
    return sorted(
        fuse(lexical, vector, vector_weight).items(),
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
            lexical = self.store.fts.search(query_terms(query), pool, languages, file_ids)
        held = self.vectors.model_id if space is not None else None
        if held is not None and held != space:
            # The model changed and the index is not re-embedded yet: vectors of
            # two models never meet, so until then only words can answer.
            notes.append(f"the index holds vectors of {held}, not {space}: words only for now")
        elif mode in ("vector", "hybrid") and query_vector is not None:
            vector = self.vectors.nearest(query_vector, pool, languages, file_ids, names=True)
        if mode == "hybrid" and query_vector is None:
            notes.append("no embedding model loaded: lexical results only")
        if held is not None and held != space:
            query_vector = None  # nor does the score read a vector of the old model
        if complete < 1.0 and mode != "lexical":
            notes.append(f"embeddings {complete:.0%} complete: results may be missing")

        lex_rank = {cid: i for i, (cid, _) in enumerate(lexical, start=1)}
        lex_bm25 = dict(lexical)
        vec_rank = {cid: i for i, (cid, _) in enumerate(vector, start=1)}
        vec_sim = dict(vector)
        weight = IDENTIFIER_VECTOR_WEIGHT if looks_like_identifier(query) else VECTOR_WEIGHT
        if mode == "lexical":
            ranked = [(cid, lexical_score(b)) for cid, b in lexical]
        elif mode == "vector":
            ranked = [(cid, max(0.0, sim)) for cid, sim in vector]
        else:
            ranked = rank_fused(lexical, vector, weight)
        priors: dict[int, float] = {}
        words = {stem(w) for w in query_words(query)}  # as name_words
        ranked = self._one_per_unit(ranked, k, words, priors)
        best = 0.0
        if mode == "hybrid" and ranked:
            ranked, best = self._anchor(ranked, lex_bm25, vec_sim, query_vector, weight)
        elif ranked:
            # The best result reads its own evidence (a cosine similarity, or
            # word evidence), the rest in proportion, as in hybrid.
            top = ranked[0][0]
            shown = max(0.0, vec_sim[top]) if mode == "vector" else lexical_score(lex_bm25[top])
            best = vector_score(vec_sim[top]) if mode == "vector" else shown
            scale = shown / ranked[0][1] if ranked[0][1] > 0 else 0.0
            ranked = [(cid, score * scale) for cid, score in ranked]
        if ranked and best < WEAK_EVIDENCE:
            notes.append(f"no strong match: the best result scores {best:.2f}")
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
                "prior": round(priors.get(cid, 1.0), 4),
            }
            hits.append(to_hit(row, score, explain, words))
        took = (time.perf_counter() - started) * 1000
        return SearchResult(query, mode, hits, took, complete, notes)

    def _anchor(
        self,
        ranked: list[tuple[int, float]],
        lex_bm25: dict[int, float],
        vec_sim: dict[int, float],
        query_vector: np.ndarray | None,
        weight: float,
    ) -> tuple[list[tuple[int, float]], float]:
        """Fused scores put on a fixed scale: the order is fusion's, and the best
        result reads its own evidence (:func:`evidence`) instead of 1.0, the rest
        in proportion. Returns the scores and that best evidence.

        A hit the vector list did not reach still has a cosine similarity; its
        code's is read exactly (and kept in ``vec_sim`` for ``explain``), so a
        word match is never scored as if it meant nothing.
        """
        top = ranked[0][0]
        if query_vector is not None and top not in vec_sim:
            got = self.vectors.vectors_of([top]).get(top)
            if got is not None:
                vec_sim[top] = float(np.dot(got, query_vector))
        best = evidence(
            lex_bm25.get(top), vec_sim.get(top) if query_vector is not None else None, weight
        )
        scale = best / ranked[0][1] if ranked[0][1] > 0 else 0.0
        return [(cid, score * scale) for cid, score in ranked], best

    def _one_per_unit(
        self,
        ranked: list[tuple[int, float]],
        k: int,
        words: set[str] | frozenset[str] = frozenset(),
        priors: dict[int, float] | None = None,
    ) -> list[tuple[int, float]]:
        """The first ``k`` of ``ranked``, with one answer per definition: the parts of
        a split definition answer once, by their best part, and a chunk that shares
        lines with a better one (overlapping line windows) is left out. Each score
        counts its chunk's :func:`prior` for a query of ``words`` (kept in
        ``priors``), and a chunk under ``MIN_CHUNK_LINES`` lines (a lone import) is
        no answer unless its file holds nothing larger."""
        outlines = self.store.outlines([cid for cid, _ in ranked], MIN_CHUNK_LINES)
        found = {cid: prior(outlines.get(cid), words) for cid, _ in ranked}
        if priors is not None:
            priors.update(found)
        # Stable: equal scores keep fusion's order.
        ranked = sorted(((cid, score * found[cid]) for cid, score in ranked), key=lambda kv: -kv[1])
        units: set[tuple[int, int]] = set()
        taken: list[tuple[int, int, int]] = []
        out: list[tuple[int, float]] = []
        for cid, score in ranked:
            o = outlines.get(cid)
            if o is not None:
                if o.small:
                    continue
                if o.unit_start is not None:
                    if (o.file_id, o.unit_start) in units:
                        continue
                    units.add((o.file_id, o.unit_start))
                elif any(
                    # (A definition may start on the line where another ends.)
                    f == o.file_id and min(e, o.end_line) - max(s, o.start_line) > 0
                    for f, s, e in taken
                ):
                    continue
                taken.append((o.file_id, o.start_line, o.end_line))
            out.append((cid, score))
            if len(out) == k:
                break
        return out


def prior(outline: ChunkOutline | None, words: set[str] | frozenset[str] = frozenset()) -> float:
    """How much a chunk's match counts for a query of ``words``, from what the chunk
    is: its kind, its size, and how much its name says what the query says."""
    if outline is None:
        return 1.0
    p = 1.0
    if outline.kind == "block":
        p *= BLOCK_PRIOR
    elif outline.kind in TYPE_KINDS:
        p *= TYPE_PRIOR
    lines = outline.end_line - outline.start_line + 1
    if lines > SIZE_PRIOR_LINES:
        p *= (SIZE_PRIOR_LINES / lines) ** SIZE_PRIOR_POWER
    if words and outline.symbol:
        name = name_words(outline.symbol)
        said = names(name, words)
        if said:
            p *= 1.0 + NAME_BONUS * said / len(name)
    return p


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
