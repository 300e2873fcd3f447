"""Search quality on the hand-written corpus; prints one JSON object on stdout.

    PYTHONPATH=server python3 bench/bench_quality.py [--home DIR] [--k 10]

The corpus (tests/fixtures/quality/corpus) is a small invoicing application in
six languages, written for this purpose; queries.json holds questions a
developer would type, each with the definitions that answer it. The script
indexes the corpus with the default model, then reports MRR@10 and recall@10
(the share of queries with an answer in the top 10) for lexical, vector and the
shipped hybrid search, overall and per query class (lexical, semantic, mixed).

Fusion variants are compared side by side on the same candidate lists: the
lexical and vector pools that ``Searcher.search`` draws for hybrid are fetched
once per query and every variant re-ranks them, so differences come from the
fusion alone. ``current`` is ``search.fuse`` (relative score fusion with
``VECTOR_WEIGHT``) on those lists; ``shipped`` runs the real
``Searcher.search`` end to end and should match it.
``--home`` keeps the embedding cache between runs (the first run embeds every
chunk, a minute or two on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kenning.engine.embedder import load_embedder
from kenning.engine.search import VECTOR_WEIGHT, fuse
from kenning.engine.text import query_terms
from kenning.engine.workspace import Index

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "quality"

# (chunk id, score) lists, best first.
Ranked = list[tuple[int, float]]
Fusion = Callable[[Ranked, Ranked], list[int]]
RRF_K = 60  # the usual constant, from Cormack et al. (2009)


def rrf(k: float, w_lex: float = 1.0, w_vec: float = 1.0, floor: float | None = None) -> Fusion:
    """Reciprocal rank fusion; ``floor``: a chunk found only by vector needs that similarity."""

    def fuse(lexical: Ranked, vector: Ranked) -> list[int]:
        in_lex = {cid for cid, _ in lexical}
        scores: dict[int, float] = {}
        for rank, (cid, _) in enumerate(lexical, start=1):
            scores[cid] = scores.get(cid, 0.0) + w_lex / (k + rank)
        for rank, (cid, sim) in enumerate(vector, start=1):
            if floor is not None and cid not in in_lex and sim < floor:
                continue
            scores[cid] = scores.get(cid, 0.0) + w_vec / (k + rank)
        return [cid for cid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]

    return fuse


def linear(alpha: float) -> Fusion:
    """alpha * cosine + (1 - alpha) * bm25, each min-max normalised within its list."""

    def norm(values: dict[int, float]) -> dict[int, float]:
        if not values:
            return {}
        lo, hi = min(values.values()), max(values.values())
        span = hi - lo or 1.0
        return {cid: (v - lo) / span for cid, v in values.items()}

    def fuse(lexical: Ranked, vector: Ranked) -> list[int]:
        lex = norm({cid: -bm25 for cid, bm25 in lexical})
        vec = norm(dict(vector))
        ids = set(lex) | set(vec)
        scores = {cid: alpha * vec.get(cid, 0.0) + (1 - alpha) * lex.get(cid, 0.0) for cid in ids}
        return [cid for cid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]

    return fuse


def dbsf(alpha: float) -> Fusion:
    """Distribution-based score fusion: each list scaled by its mean +- 3 standard deviations."""

    def norm(values: dict[int, float]) -> dict[int, float]:
        if not values:
            return {}
        xs = list(values.values())
        mean = sum(xs) / len(xs)
        sd = (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5 or 1.0
        lo, hi = mean - 3 * sd, mean + 3 * sd
        return {cid: min(1.0, max(0.0, (v - lo) / (hi - lo))) for cid, v in values.items()}

    def fuse(lexical: Ranked, vector: Ranked) -> list[int]:
        lex = norm({cid: -bm25 for cid, bm25 in lexical})
        vec = norm(dict(vector))
        ids = set(lex) | set(vec)
        scores = {cid: alpha * vec.get(cid, 0.0) + (1 - alpha) * lex.get(cid, 0.0) for cid in ids}
        return [cid for cid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]

    return fuse


def linear_max(alpha: float) -> Fusion:
    """Like linear, but bm25 divided by the best bm25 (no shift), cosine min-max."""

    def fuse(lexical: Ranked, vector: Ranked) -> list[int]:
        top = max((-b for _, b in lexical), default=1.0) or 1.0
        lex = {cid: -b / top for cid, b in lexical}
        sims = dict(vector)
        lo, hi = min(sims.values(), default=0.0), max(sims.values(), default=1.0)
        vec = {cid: (s - lo) / ((hi - lo) or 1.0) for cid, s in sims.items()}
        ids = set(lex) | set(vec)
        scores = {cid: alpha * vec.get(cid, 0.0) + (1 - alpha) * lex.get(cid, 0.0) for cid in ids}
        return [cid for cid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]

    return fuse


VARIANTS: dict[str, Fusion] = {
    "lexical": lambda lex, vec: [cid for cid, _ in lex],
    "current": lambda lex, vec: [
        cid for cid, _ in sorted(fuse(lex, vec).items(), key=lambda kv: (-kv[1], kv[0]))
    ],
    "vector": lambda lex, vec: [cid for cid, _ in vec],
    f"rrf_k{RRF_K}": rrf(RRF_K),
    "rrf_k10": rrf(10),
    "rrf_k20": rrf(20),
    "rrf_k30": rrf(30),
    "rrf_k60_vec1.5": rrf(60, w_vec=1.5),
    "rrf_k60_vec2": rrf(60, w_vec=2.0),
    "rrf_k20_vec1.5": rrf(20, w_vec=1.5),
    "rrf_k60_floor0.2": rrf(60, floor=0.2),
    "rrf_k60_floor0.3": rrf(60, floor=0.3),
    "linear_a0.3": linear(0.3),
    "linear_a0.4": linear(0.4),
    "linear_a0.5": linear(0.5),
    "linear_a0.6": linear(0.6),
    "linear_max_a0.5": linear_max(0.5),
    "dbsf_a0.5": dbsf(0.5),
    "linear_a0.7": linear(0.7),
}


def load_queries(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["queries"]


def first_hit_rank(
    spans: list[tuple[str, int, int]], expected: list[dict[str, Any]], k: int
) -> int:
    """1-based rank of the first result whose line range holds an expected line; 0 if none."""
    for rank, (path, start, end) in enumerate(spans[:k], start=1):
        if any(e["path"] == path and start <= e["line"] <= end for e in expected):
            return rank
    return 0


def summarise(ranks: list[int]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "mrr": round(sum(1 / r for r in ranks if r) / n, 4),
        "recall": round(sum(1 for r in ranks if r) / n, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, help="KENNING_HOME to keep the embedding cache in")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--per-query", action="store_true", help="add each query's ranks")
    args = ap.parse_args()
    k = args.k
    queries = load_queries(FIXTURE / "queries.json")

    with tempfile.TemporaryDirectory(prefix="kenning-quality-") as tmp:
        root = Path(tmp) / "corpus"
        shutil.copytree(FIXTURE / "corpus", root)
        home = args.home or Path(tmp) / "home"
        t0 = time.perf_counter()
        index = Index(root, embedder=load_embedder(), home=home)
        report = index.refresh()
        print(
            f"indexed {report.files} files, {report.chunks} chunks "
            f"({report.embedded} embedded) in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
        embedder = index.embedder
        assert embedder is not None
        pool = max(k * 3, 50)  # what Searcher.search draws for hybrid
        spans: dict[int, tuple[str, int, int]] = {}
        ranks: dict[str, list[int]] = {name: [] for name in [*VARIANTS, "shipped"]}
        for q in queries:
            lexical = index.store.fts.search(query_terms(q["query"]), pool)
            vector = index.vectors.nearest(embedder.embed_query(q["query"]), pool, names=True)
            missing = [cid for cid, _ in lexical + vector if cid not in spans]
            for cid, row in index.store.chunk_rows(missing).items():
                spans[cid] = (row.path, row.start_line, row.end_line)
            for name, fuse in VARIANTS.items():
                ranked = [spans[cid] for cid in fuse(lexical, vector)]
                ranks[name].append(first_hit_rank(ranked, q["expected"], k))
            shipped = index.search(q["query"], k=k, mode="hybrid").results
            ranks["shipped"].append(
                first_hit_rank(
                    [(h.path, h.start_line, h.end_line) for h in shipped], q["expected"], k
                )
            )
        index.close()

    classes = sorted({q["class"] for q in queries})
    out: dict[str, Any] = {
        "k": k,
        "queries": len(queries),
        "per_class_queries": {c: sum(q["class"] == c for q in queries) for c in classes},
        "files": report.files,
        "chunks": report.chunks,
        "vector_weight": VECTOR_WEIGHT,
        "variants": {},
    }
    for name, rs in ranks.items():
        entry = summarise(rs)
        for c in classes:
            entry[c] = summarise([r for r, q in zip(rs, queries, strict=True) if q["class"] == c])
        out["variants"][name] = entry
    if args.per_query:
        out["per_query"] = [
            {"query": q["query"], "class": q["class"], **{n: ranks[n][i] for n in ranks}}
            for i, q in enumerate(queries)
        ]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
