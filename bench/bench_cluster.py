"""`kenning cluster` at scale on a local Ray instance; prints one JSON object.

* ``serve``: ``--chunks`` synthetic chunks (code-like text, random unit
  vectors of the default model's 384 dims) in ``--shards`` shards, served by
  ``kenning cluster serve``'s application; query latency p50/p95 through HTTP
  (``POST /v1/search``, hybrid, k=10, the real query embedder, one client),
  against one process searching the same shards one after another with the same
  embedder (``one_process``), and each shard replica's peak RSS.
  Synthetic because embedding 1M real chunks on 2 CPU cores takes hours
  (about 40 chunks/s here); search cost does not depend on where vectors came from.
* ``build``: the quality corpus (tests/fixtures/quality/corpus, 7 repositories)
  built with the real model by ``--workers`` 1 and 2 embedding actors, side by
  side: files/s and chunks/s embedded (cold: a fresh output folder, no cache).

    python bench/bench_cluster.py [--chunks 1000000] [--shards 8] [--queries 200]
        [--cpus 2] [--skip-build] [--skip-serve]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "server"))

import numpy as np  # noqa: E402

from kenning.cluster.shards import MANIFEST, ShardIndex, shard_db, shard_key, shard_of  # noqa: E402
from kenning.engine.store import Store  # noqa: E402
from kenning.engine.text import fts_columns  # noqa: E402
from kenning.engine.types import Chunk  # noqa: E402
from kenning.engine.vectors import VectorIndex  # noqa: E402

CORPUS = REPO / "tests" / "fixtures" / "quality" / "corpus"
WORDS = [
    "parse",
    "load",
    "save",
    "config",
    "user",
    "invoice",
    "payment",
    "retry",
    "client",
    "server",
    "token",
    "cache",
    "queue",
    "worker",
    "schedule",
    "render",
    "template",
    "email",
    "notify",
    "request",
    "response",
    "session",
    "password",
    "hash",
    "encode",
    "decode",
    "stream",
    "buffer",
    "file",
    "path",
    "read",
    "write",
    "lock",
    "index",
    "search",
    "rank",
    "score",
    "vector",
    "shard",
    "merge",
    "split",
    "join",
    "filter",
    "map",
    "reduce",
    "sort",
]
QUERIES = [
    "retry a failed http request",
    "parse the config file",
    "hash a password",
    "send an invoice email",
    "merge sorted shards",
    "decode a token",
    "lock the cache",
    "render a template",
]
CHUNKS_PER_FILE = 25
DIMS = 384


def synth(out: Path, chunks: int, shards: int, seed: int = 7) -> dict[str, Any]:
    """Shards of ``chunks`` synthetic chunks; the space of the default model."""
    from kenning.engine.embedder import load_embedder

    emb = load_embedder(None, "cpu", 1)
    space, dims = emb.space, emb.dims
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    stores = [Store(shard_db(out, i)) for i in range(shards)]
    vectors = [VectorIndex(s) for s in stores]
    for v in vectors:
        v.ensure_model(space, dims)
    started = time.perf_counter()
    files = chunks // CHUNKS_PER_FILE
    pending: dict[int, list[tuple[str, int]]] = {i: [] for i in range(shards)}
    for f in range(files):
        repo = f"synth/repo{f % 500}"
        rel = f"src/mod{f // 500}/{rng.choice(WORDS)}_{f}.py"
        shard = shard_of(repo, rel, shards)
        key = shard_key(repo, rel)
        chunks = []
        for c in range(CHUNKS_PER_FILE):
            name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{c}"
            body = " ".join(rng.choice(WORDS) for _ in range(40))
            text = f"def {name}(arg):\n    # {body}\n    return arg\n"
            start = c * 4 + 1
            chunks.append(
                Chunk(key, start, start + 2, "function", name, "python", text, f"{f}-{c}",
                      lexical=fts_columns(name, (), text))
            )  # fmt: skip
        stores[shard].write_file(key, 1000, 1, f"h{f}", "python", chunks)
        pending[shard].append((key, CHUNKS_PER_FILE))
        if len(pending[shard]) >= 40 or f == files - 1:
            _embed_synthetic(stores[shard], vectors[shard], space, dims, nrng)
            pending[shard] = []
    for i in range(shards):
        _embed_synthetic(stores[i], vectors[i], space, dims, nrng)
        stores[i].close()
    manifest = {"version": 1, "shards": shards, "space": space, "model": emb.model_id,
                "dims": dims, "device": "cpu", "repos": {}, "built_at": time.time()}  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(manifest))
    return {"chunks": files * CHUNKS_PER_FILE, "files": files,
            "write_s": round(time.perf_counter() - started, 1)}  # fmt: skip


def _embed_synthetic(store: Store, vectors: VectorIndex, space: str, dims: int, rng: Any) -> None:
    ids = [r[0] for r in store.reader().execute("SELECT id FROM chunks WHERE has_vector = 0")]
    if not ids:
        return
    v = rng.standard_normal((len(ids), dims)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    vectors.write(ids, v, space)


def _percentiles(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "p50_ms": round(statistics.median(s), 2),
        "p95_ms": round(s[min(len(s) - 1, int(0.95 * (len(s) - 1) + 0.5))], 2),
    }


def one_process(out: Path, shards: int, queries: int) -> dict[str, Any]:
    from kenning.engine.embedder import load_embedder
    from kenning.engine.search import merge_results

    emb = load_embedder(None, "cpu", 1)
    idx = [ShardIndex(shard_db(out, i), i) for i in range(shards)]
    for s in idx:
        s.warm()
    times = []
    for q in range(queries):
        query = QUERIES[q % len(QUERIES)]
        t = time.perf_counter()
        vec = emb.embed_query(query)
        merge_results([s.search(query, vec, 10, "hybrid", space=emb.space) for s in idx], 10, query)
        times.append((time.perf_counter() - t) * 1000)
    for s in idx:
        s.close()
    return _percentiles(times[3:] or times)


def serve_bench(out: Path, queries: int) -> dict[str, Any]:
    import ray
    from ray import serve

    from kenning.cluster.serve import APP_NAME, build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench-token"
    serve.start(http_options={"host": "127.0.0.1", "port": port},
                logging_config={"log_level": "WARNING"})  # fmt: skip
    started = time.perf_counter()
    serve.run(build_app(out, token), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"

    def post(path: str, body: Any) -> Any:
        req = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST")
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    # Warm: the shards load their vectors on start; wait until a query answers fast.
    for _ in range(600):
        t = time.perf_counter()
        post("/v1/search", {"query": "warm up", "k": 10})
        if (time.perf_counter() - t) < 1.0:
            break
    ready_s = time.perf_counter() - started
    times = []
    for q in range(queries):
        t = time.perf_counter()
        post("/v1/search", {"query": QUERIES[q % len(QUERIES)], "k": 10})
        times.append((time.perf_counter() - t) * 1000)
    rss = _replica_rss()
    serve.delete(APP_NAME)
    serve.shutdown()
    shard_rss = [v for k, v in rss.items() if k.startswith("shard") and "." not in k]
    return {
        **_percentiles(times),
        "queries": queries,
        "ready_s": round(ready_s, 1),
        "peak_rss_mb_per_shard": max(shard_rss) if shard_rss else None,
        "peak_rss_mb": rss,
    }, ray


def _replica_rss() -> dict[str, int]:
    """Peak RSS (MB) of each Serve replica of this app, by its process title
    (the state API needs the dashboard, which the benchmark does not start)."""
    rss: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            if not title.startswith("ray::ServeReplica:kenning:"):
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        hwm = next((ln for ln in status.splitlines() if ln.startswith("VmHWM")), None)
        now = next((ln for ln in status.splitlines() if ln.startswith("VmRSS")), None)
        if hwm and now:
            name = title.split(":")[-1].split()[0]
            rss[name] = int(hwm.split()[1]) // 1024
            rss[name + ".now"] = int(now.split()[1]) // 1024
    return rss


def build_bench(workers: int, tmp: Path) -> dict[str, Any]:
    from kenning.cluster.build import build

    out = tmp / f"build-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    sources = sorted(str(p) for p in CORPUS.iterdir() if p.is_dir())
    t = time.perf_counter()
    s = build(sources, out, 2, workers=workers, say=lambda _m: None)
    took = time.perf_counter() - t
    return {
        "workers": workers,
        "files": s["files"],
        "chunks": s["chunks"],
        "embedded": s["embedded"],
        "took_s": round(took, 1),
        "files_per_s": round(s["files"] / took, 1),
        "chunks_embedded_per_s": round(s["embedded"] / took, 1),
        "device": s["device"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-serve", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    # Ray's processes write to our stdout (a raylet line at shutdown): the JSON
    # alone goes there, so everything else goes to stderr meanwhile.
    stdout = os.dup(1)
    os.dup2(2, 1)
    env = {k: os.environ[k] for k in ("KENNING_HOME", "HF_HUB_OFFLINE") if k in os.environ}
    env["PYTHONPATH"] = str(REPO / "server")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})  # fmt: skip
    result: dict[str, Any] = {
        "cpus": args.cpus,
        "note": "synthetic vectors and texts for the serve figures: embedding this many "
        "chunks on 2 CPU cores takes hours",
    }
    try:
        if not args.skip_serve:
            out = tmp / "shards"
            result["data"] = {"shards": args.shards, **synth(out, args.chunks, args.shards)}
            result["one_process"] = one_process(out, args.shards, min(args.queries, 100))
            result["http"], _ = serve_bench(out, args.queries)
            result["fanout_overhead_p50_ms"] = round(
                result["http"]["p50_ms"] - result["one_process"]["p50_ms"], 2
            )
        if not args.skip_build:
            result["build"] = [build_bench(w, tmp) for w in (1, 2)]
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
