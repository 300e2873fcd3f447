"""Query latency and recall at 10k and 100k chunks, side by side.

Chunks get synthetic text (words drawn from a code-like vocabulary) and
synthetic clustered unit vectors, which is enough to measure scale. For each
size it reports lexical, vector and hybrid latency through the real Searcher,
the recall@10 of the binary coarse pass against exact brute force, and, for
comparison, a sqlite-vec vec0 brute-force KNN over the same vectors.

Latency is measured twice on the same index, each time through a freshly
opened store: ``cold`` as a one-shot CLI search sees it (the champion lists of
common words are computed by the first query that needs them), then warm, as
the language server sees it after ``Index.warm_search`` ran in the background
(its time is ``lexical_warm_s``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kenning.engine import search as search_module
from kenning.engine.search import Searcher
from kenning.engine.store import Store
from kenning.engine.types import Chunk
from kenning.engine.vectors import VectorIndex

WORDS = [
    "parse",
    "load",
    "save",
    "config",
    "json",
    "yaml",
    "http",
    "request",
    "response",
    "retry",
    "timeout",
    "client",
    "server",
    "user",
    "account",
    "order",
    "payment",
    "invoice",
    "cache",
    "queue",
    "worker",
    "job",
    "schedule",
    "token",
    "auth",
    "session",
    "login",
    "logout",
    "error",
    "handler",
    "route",
    "render",
    "template",
    "component",
    "state",
    "reducer",
    "action",
    "store",
    "fetch",
    "update",
    "delete",
    "create",
    "list",
    "sort",
    "filter",
    "map",
    "reduce",
    "stream",
    "file",
    "path",
    "read",
    "write",
    "buffer",
    "socket",
    "connect",
    "close",
    "open",
    "lock",
    "mutex",
    "thread",
    "async",
    "await",
    "promise",
    "future",
    "channel",
    "select",
]


def vocabulary(rng: np.random.Generator, size: int = 5000) -> tuple[list[str], np.ndarray]:
    """A code-like vocabulary with Zipf frequencies: few words everywhere, most rare."""
    words = list(WORDS)
    while len(words) < size:
        a, b = rng.choice(WORDS, 2)
        words.append(f"{a}{b.capitalize()}{len(words)}")
    weights = 1.0 / np.arange(1, size + 1) ** 1.1
    return words, weights / weights.sum()


def build(
    store: Store, vectors: VectorIndex, n: int, dims: int, rng: np.random.Generator
) -> np.ndarray:
    centroids = rng.standard_normal((max(50, n // 200), dims)).astype(np.float32)
    owner = rng.integers(0, len(centroids), n)
    matrix = centroids[owner] + 0.6 * rng.standard_normal((n, dims)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    vectors.ensure_model("synthetic", dims)
    vocab, freq = vocabulary(rng)
    per_file = 10
    with store.write():
        for f in range(n // per_file):
            chunks = []
            for j in range(per_file):
                words = rng.choice(vocab, 60, p=freq)
                text = f"def {words[0]}_{words[1]}_{f}_{j}():\n    " + " ".join(words)
                chunks.append(
                    Chunk(
                        f"src/m{f}.py",
                        j * 5 + 1,
                        j * 5 + 4,
                        "function",
                        f"{words[0]}_{words[1]}",
                        "python" if f % 4 else "go",
                        text,
                        f"{f}-{j}",
                    )
                )
            store.write_file(f"src/m{f}.py", 100, 1, str(f), "python", chunks)
    ids = [r[0] for r in store.reader().execute("SELECT id FROM chunks ORDER BY id")]
    # Name vectors near their code's cluster, as a definition's name is near its code.
    names = centroids[owner] + 0.9 * rng.standard_normal((n, dims)).astype(np.float32)
    names /= np.linalg.norm(names, axis=1, keepdims=True)
    for start in range(0, n, 5000):
        end = start + 5000
        vectors.write(ids[start:end], matrix[start:end], names=names[start:end])
    return matrix


def block_prior_only(outline: object, words: object = frozenset()) -> float:
    """The ranking's prior as it was before the size, kind and name priors: the
    baseline of ``hybrid_no_priors``, measured interleaved with ``hybrid``."""
    return search_module.BLOCK_PRIOR if getattr(outline, "kind", None) == "block" else 1.0


def code_only(nearest: Any, *args: Any, **kwargs: Any) -> Any:
    """``VectorIndex.nearest`` without the name vectors: ``hybrid_no_names``."""
    kwargs["names"] = False
    return nearest(*args, **kwargs)


def pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(values, p)), 2)


def run_size(n: int, dims: int, queries: int, with_vec0: bool) -> dict[str, object]:
    rng = np.random.default_rng(n)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "index.db")
        vectors = VectorIndex(store)
        t = time.perf_counter()
        matrix = build(store, vectors, n, dims, rng)
        vocab, freq = vocabulary(np.random.default_rng(n))
        build_s = time.perf_counter() - t
        store.close()
        out: dict[str, object] = {"chunks": n, "build_s": round(build_s, 1)}
        for phase in ("cold", "warm"):
            store = Store(Path(tmp) / "index.db")
            vectors = VectorIndex(store)
            searcher = Searcher(store, vectors)
            ids = np.array(
                [r[0] for r in store.reader().execute("SELECT id FROM chunks ORDER BY id")]
            )
            t = time.perf_counter()
            vectors.size()  # first load of the coarse index
            load_ms = (time.perf_counter() - t) * 1000
            if phase == "warm":
                t = time.perf_counter()
                out["lexical_warm_lists"] = store.fts.warm()
                out["lexical_warm_s"] = round(time.perf_counter() - t, 2)
            lat: dict[str, list[float]] = {
                "lexical": [],
                "vector": [],
                "hybrid": [],
                "hybrid_no_priors": [],
                # The code's vectors alone, without the names' (the vector pass
                # before name vectors): what the names cost a query.
                "hybrid_no_names": [],
            }
            recalls = []
            for q in range(queries):
                qv = matrix[rng.integers(0, n)] + 0.3 * rng.standard_normal(dims).astype(np.float32)
                qv /= np.linalg.norm(qv)
                text = " ".join(rng.choice(vocab[:2000], 3, p=freq[:2000] / freq[:2000].sum()))
                # The hybrids take turns going first: a later one finds the
                # earlier ones' pages in the cache.
                hybrids = list(lat)[2:]
                turn = q % len(hybrids)
                order = list(lat)[:2] + hybrids[turn:] + hybrids[:turn]
                for mode in order:
                    priors = search_module.prior
                    nearest = vectors.nearest
                    if mode == "hybrid_no_priors":
                        search_module.prior = block_prior_only  # type: ignore[assignment]
                    if mode == "hybrid_no_names":
                        vectors.nearest = functools.partial(code_only, nearest)  # type: ignore[method-assign]
                    try:
                        t = time.perf_counter()
                        searcher.search(text, qv, 10, mode.split("_no_")[0])
                        lat[mode].append((time.perf_counter() - t) * 1000)
                    finally:
                        search_module.prior = priors
                        vectors.nearest = nearest  # type: ignore[method-assign]
                exact = set(ids[np.argsort(-(matrix @ qv))[:10]].tolist())
                got = {cid for cid, _ in vectors.nearest(qv, 10)}
                recalls.append(len(exact & got) / 10)
            suffix = "_cold" if phase == "cold" else ""
            out[f"coarse_load_ms{suffix}"] = round(load_ms, 1)
            out[f"recall_at_10{suffix}"] = round(float(np.mean(recalls)), 4)
            for mode, values in lat.items():
                out[f"{mode}{suffix}_ms_p50"] = pct(values, 50)
                out[f"{mode}{suffix}_ms_p95"] = pct(values, 95)
            if phase == "cold":
                store.close()
        if with_vec0:
            conn = store.conn
            conn.execute(
                f"CREATE VIRTUAL TABLE v0 USING vec0(embedding float[{dims}] distance_metric=cosine)"
            )
            with conn:
                conn.executemany(
                    "INSERT INTO v0(rowid, embedding) VALUES (?, ?)",
                    ((int(i), matrix[k].tobytes()) for k, i in enumerate(ids)),
                )
            v0 = []
            for _ in range(min(queries, 20)):
                qv = matrix[rng.integers(0, n)]
                t = time.perf_counter()
                conn.execute(
                    "SELECT rowid FROM v0 WHERE embedding MATCH ? AND k = 10", (qv.tobytes(),)
                ).fetchall()
                v0.append((time.perf_counter() - t) * 1000)
            out["vec0_knn_ms_p50"] = pct(v0, 50)
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--no-vec0", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("KENNING_HOME", tempfile.mkdtemp())
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"building {n} chunks...", file=sys.stderr)
        results.append(run_size(n, args.dims, args.queries, not args.no_vec0))
    print(
        json.dumps(
            {
                "dims": args.dims,
                "sizes": results,
                "target": "hybrid p95 < 30 ms at 100k (query embedding not included), warm",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
