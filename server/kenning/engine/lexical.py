"""Lexical search: bm25 over the chunks' FTS5 rows, beside :mod:`kenning.engine.vectors`.

The FTS5 table (``chunks_fts``) is written with the chunks by the store; this
module ranks it. On a large index the words most chunks hold are dropped from
a query (they add almost nothing to bm25 and cost the most to rank), and a
query made only of such words is ranked from per-word champion lists.
Fusion with the vector ranking is :mod:`kenning.engine.search`'s.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import apsw

from kenning.engine.sql import chunk_filters, json_ids, one_row, phrase
from kenning.engine.text import fts_text

# Chunks that lexical search may rank for one query before dropping common terms.
LEXICAL_BUDGET = 5_000
# Champion lists (see LexicalIndex._champion_list): chunks kept per common term,
# and how long a list is reused before it is computed again.
CHAMPIONS = 500
CHAMPION_TTL_S = 600.0
# Column weights, in the order of the chunks_fts columns: a word of a chunk's
# qualified symbol counts 4x, of its path 2x, of the definition's own name 6x
# (tuned on the dev benchmark; from 4 to 8 for names all within 0.002 MRR@10).
BM25_WEIGHTS = (4.0, 1.0, 2.0, 6.0)
_BM25 = "bm25(chunks_fts, {})".format(", ".join(map(str, BM25_WEIGHTS)))
# As in the chunks_fts definition (migrations.py).
_FTS_TOKENIZER_ARGS = ("unicode61", "remove_diacritics", "2")

_stem_lock = threading.Lock()
_stemmer: list[Any] = []


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """``word``'s stem as the lexical index has it (FTS5's porter tokenizer):
    "returns" and "return", "entries" and "entry" meet."""
    with _stem_lock:
        if not _stemmer:
            conn = apsw.Connection(":memory:")
            _stemmer.append(conn.fts5_tokenizer("porter", list(_FTS_TOKENIZER_ARGS)))
        got = _stemmer[0](word.encode("utf-8"), apsw.FTS5_TOKENIZE_DOCUMENT, None)
    return str(got[0][2]) if got else word


class _Store(Protocol):
    def reader(self) -> apsw.Connection: ...

    def counts(self) -> dict[str, int]: ...


class LexicalIndex:
    """bm25 ranking of one store's chunks. Thread-safe; each thread reads with
    its own connection (``store.reader()``)."""

    def __init__(self, store: _Store) -> None:
        # Weak: the store holds this index, and a store that nobody holds any
        # more must close at once (its connections, its WAL checkpoint).
        self._store = weakref.ref(store)
        # Guards the caches below, never held across a query.
        self._state = threading.Lock()
        self._local = threading.local()
        # Document frequency of query terms, valid while the index size holds.
        self._df: dict[str, int] = {}
        self._df_total = 0
        # Champion lists by stem: (when computed, [(chunk id, bm25)]).
        self._champions: dict[str, tuple[float, list[tuple[int, float]]]] = {}

    @property
    def store(self) -> _Store:
        store = self._store()
        if store is None:
            raise RuntimeError("the store of this lexical index is gone")
        return store

    def search(
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
        ones remain (see :meth:`_selective`). A query made only of such words is
        ranked from each word's champion list instead (see :meth:`_champion_list`).
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
        match = " OR ".join(phrase(t) for t in terms)
        sql = [f"SELECT f.rowid, {_BM25} AS score FROM chunks_fts f"]
        params: list[object] = [match]
        where = ["chunks_fts MATCH ?"]
        if languages or file_ids is not None:
            sql.append("JOIN chunks c ON c.id = f.rowid")
            where.extend(chunk_filters(languages, file_ids, params))
        sql.append("WHERE " + " AND ".join(where))
        sql.append("ORDER BY score LIMIT ?")
        params.append(limit)
        try:
            return [(r[0], r[1]) for r in self.store.reader().execute(" ".join(sql), params)]
        except apsw.SQLError:
            # A query FTS5 cannot parse has no lexical answer; vector search may still help.
            return []

    def _budget(self) -> int | None:
        """Chunks one query may rank, or None when the index is small enough to rank all."""
        total = self.store.counts()["chunks"]
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
                self.store.reader().execute(
                    "SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"
                    " LIMIT ?)",
                    (phrase(term), cap),
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
                *chunk_filters(languages, file_ids, params),
            ]
            rows = self.store.reader().execute(
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
        conn = self.store.reader()
        # A tokenizer belongs to its connection: a thread's reader may be renewed.
        made: tuple[apsw.Connection, Any] | None = getattr(self._local, "tokenizer", None)
        if made is None or made[0] is not conn:
            made = (conn, conn.fts5_tokenizer("porter", list(_FTS_TOKENIZER_ARGS)))
            self._local.tokenizer = made
        tokenizer = made[1]
        tokens: Iterable[Any] = tokenizer(data, reason, None)
        return [(int(t[0]), int(t[1]), str(t[2])) for t in tokens]

    def warm(self, sample: int = 400, max_terms: int = 64) -> int:
        """Compute the champion lists of the words most chunks hold; returns how many.

        The words are read off a random sample of chunks, so the lists a user's
        common words need are ready before the first query asks for them. For
        a background thread: each list costs one full ranking of its word.
        """
        budget = self._budget()
        if budget is None:
            return 0
        total = self.store.counts()["chunks"]
        rows = self.store.reader().execute(
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
