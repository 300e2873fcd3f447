"""``kenning cluster build``: shard indexes of many repositories with Ray Data.

The pipeline is the local index's, spread over a Ray cluster:

1. **scan** (this process): every SOURCE is walked with the local index's rules
   (ignore files, include/exclude globs, size limit); each file goes to the shard
   ``shard_of(repo, path)``. A file whose size and mtime match its shard's row is
   not read again.
2. **read and chunk** (``map_batches``, CPU tasks): ``prepare_file`` as the local
   index runs it; a file whose bytes hash the same is only touched.
3. **write** (this process): each file's chunks replace its old ones in its shard
   in one transaction; chunks whose text did not change keep their vectors.
4. **embed** (``map_batches`` with a callable class, an actor pool): chunks still
   without a vector want two, their code's and their name's (as a local index
   makes them); both are looked up in the content-addressed cache beside the
   shards (``DIR/cache/embeddings.db``), and only the missing texts go to the
   actors, each of which opens the ONNX session once; on GPUs, one GPU each.
   A chunk's row is written as soon as both its vectors are known.

Chunking and embedding are two passes because the cache is a file here: the
actors embed only what it lacks, and nothing is embedded twice across runs.
Files are read by the Ray workers, so on a cluster of several machines the
sources must be at the same path on every node (a shared or synced folder).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kenning.cluster.shards import MANIFEST, read_manifest, shard_db, shard_key, shard_of, split_key
from kenning.config import Settings
from kenning.engine.persist import Persisted, Persister
from kenning.engine.prepare import Prepared, prepare_file
from kenning.engine.scan import Scanner
from kenning.engine.searchable import repo_id
from kenning.engine.store import Store
from kenning.engine.text import embed_header, embed_input, embed_key, name_input, name_key
from kenning.engine.vectors import EmbeddingCache, VectorIndex
from kenning.errors import UsageError, WorkspaceError

log = logging.getLogger(__name__)

CHUNK_BATCH = 16
EMBED_BATCH = 64
MAX_SHARDS = 4096
Say = Callable[[str], None]


def _stderr(message: str) -> None:
    sys.stderr.write(f"kenning: {message}\n")
    sys.stderr.flush()


# -- the Ray stages (run in Ray workers) -----------------------------------------


def chunk_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Read and chunk a batch of files; each comes back as a pickled ``Prepared.to_tuple``."""
    out = []
    for rel, path, size, mtime, known, key in zip(
        batch["rel"],
        batch["path"],
        batch["size"],
        batch["mtime_ns"],
        batch["known"],
        batch["key"],
        strict=True,
    ):
        prep = prepare_file(str(rel), str(path), int(size), int(mtime), str(known) or None)
        out.append(pickle.dumps(dataclasses.replace(prep, rel=str(key)).to_tuple()))
    return {"shard": batch["shard"], "prep": np.array(out, dtype=object)}


class EmbedChunks:
    """One ONNX session per actor, opened once, embedding batch after batch."""

    def __init__(self, model: str | None, device: str, threads: int) -> None:
        from kenning.engine.embedder import load_embedder

        self.embedder = load_embedder(model, device, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.embedder.embed_documents(texts).astype(np.float32)
        return {"key": batch["key"], "vec": vectors}


def probe_model(model: str | None, device: str, threads: int) -> dict[str, Any]:
    """What the actors will embed with: vector space, dims, device, precision."""
    from kenning.engine.embedder import load_embedder, precision_of

    emb = load_embedder(model, device, threads)
    return {
        "space": emb.space,
        "dims": emb.dims,
        "model": emb.model_id,
        "device": emb.device,
        "precision": precision_of(emb),
    }


# -- the driver ----------------------------------------------------------------------


@dataclasses.dataclass
class Source:
    root: Path
    repo: str


def resolve_sources(paths: Sequence[str]) -> list[Source]:
    sources: list[Source] = []
    seen: dict[str, Path] = {}
    for p in paths:
        root = Path(p).expanduser()
        if not root.is_dir():
            raise WorkspaceError(f"{p}: not a folder")
        root = root.resolve()
        repo = repo_id(root)
        if repo in seen and seen[repo] != root:
            raise UsageError(f"{p} and {seen[repo]} are the same repository {repo!r}; name one")
        if repo not in seen:
            seen[repo] = root
            sources.append(Source(root, repo))
    return sources


def _init_ray(address: str | None, env: dict[str, str]) -> Any:
    import ray

    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "runtime_env": {"env_vars": env},
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    # Ray Data logs each dataset's execution at INFO on stderr; progress is ours.
    for name in ("ray", "ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # Ray Data prints a line per operator and stage otherwise.
    ctx.print_on_execution_start = False
    return ray


def _forwarded_env() -> dict[str, str]:
    """What the Ray workers need to embed and chunk as this process would."""
    names = (
        "KENNING_HOME",
        "KENNING_MODEL",
        "KENNING_DEVICE",
        "KENNING_PRECISION",
        "HF_HUB_OFFLINE",
        "PYTHONPATH",
    )
    return {n: os.environ[n] for n in names if n in os.environ}


def build(
    paths: Sequence[str],
    out: Path,
    shards: int,
    settings: Settings | None = None,
    address: str | None = None,
    workers: int | None = None,
    say: Say = _stderr,
) -> dict[str, Any]:
    """Build or update the shards in ``out`` from the SOURCE folders ``paths``."""
    started = time.perf_counter()
    settings = settings or Settings()
    if not 1 <= shards <= MAX_SHARDS:
        raise UsageError(f"--shards must be between 1 and {MAX_SHARDS}")
    sources = resolve_sources(paths)
    out = out.expanduser().resolve()
    manifest = read_manifest(out)
    if manifest is not None and manifest.get("shards") != shards:
        raise UsageError(
            f"{out} holds {manifest.get('shards')} shards; build it with that --shards "
            "or into a new --out folder"
        )
    if manifest is None and out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty and holds no kenning shards")
    out.mkdir(parents=True, exist_ok=True)

    # 1. scan
    stores = [Store(shard_db(out, i)) for i in range(shards)]
    try:
        summary = _build(sources, out, stores, settings, address, workers, say, started)
    finally:
        for s in stores:
            s.close()
    return summary


def _build(
    sources: list[Source],
    out: Path,
    stores: list[Store],
    settings: Settings,
    address: str | None,
    workers: int | None,
    say: Say,
    started: float,
) -> dict[str, Any]:
    n = len(stores)
    known = [s.files() for s in stores]
    todo: list[dict[str, Any]] = []
    gone: list[list[str]] = [[] for _ in range(n)]
    skip_reasons: dict[str, int] = defaultdict(int)
    repos = {src.repo for src in sources}
    seen: set[str] = set()
    for src in sources:
        scan = Scanner(
            src.root,
            exclude=settings.exclude,
            include=settings.include,
            max_file_bytes=settings.index.max_file_bytes,
        ).scan()
        for reason, count in scan.skipped.items():
            skip_reasons[reason] += count
        for entry in scan.files:
            key = shard_key(src.repo, entry.rel)
            seen.add(key)
            shard = shard_of(src.repo, entry.rel, n)
            row = known[shard].get(key)
            if row is not None and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
                continue
            todo.append(
                {
                    "shard": shard,
                    "key": key,
                    "rel": entry.rel,
                    "path": str(entry.path),
                    "size": entry.size,
                    "mtime_ns": entry.mtime_ns,
                    "known": row.hash
                    if row is not None and row.hash and not row.skip_reason
                    else "",
                }
            )
    # Files of the repositories built now that are gone from them; other
    # repositories in the shards (built by another run) are left as they are.
    for i, files in enumerate(known):
        gone[i] = [k for k in files if k not in seen and split_key(k)[0] in repos]
    files_total = len(seen)
    say(
        f"{len(sources)} sources, {files_total} files: {len(todo)} to read, "
        f"{sum(map(len, gone))} gone, into {n} shards"
    )

    manifest = read_manifest(out)
    if not todo and manifest is not None and not any(_pending_count(s) for s in stores):
        # Nothing to read or embed: no Ray, no model.
        nothing: dict[str, Any] = {"changed": 0, "embedded": 0, "cached": 0, "errors": []}
        nothing["deleted"] = sum(stores[i].delete_files(g) for i, g in enumerate(gone) if g)
        probe = {k: manifest.get(k) for k in ("space", "model", "dims", "device")}
        return _finish(sources, out, stores, manifest, probe, nothing, skip_reasons, 0, started)
    ray = _init_ray(address, _forwarded_env())
    # What is free, not what exists: a build beside a running `cluster serve`
    # (its replicas hold CPUs) must fit in the rest, or its tasks wait forever.
    free = float(ray.available_resources().get("CPU", 0.0))
    if free < 1.0:
        # Ray Data's actor pool waits forever below one free CPU (measured with 2.60).
        raise UsageError(
            f"the Ray cluster has {free:g} free CPUs; the build needs at least 1 "
            "(is a `kenning cluster serve` holding them?)"
        )
    cpus = max(1, int(free))
    task_cpus = min(1.0, free)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    report: dict[str, Any] = {"changed": 0, "embedded": 0, "cached": 0, "errors": []}
    report["deleted"] = sum(stores[i].delete_files(g) for i, g in enumerate(gone) if g)

    # 2-3. read and chunk in Ray tasks; write here, one transaction per batch and shard
    if todo:
        persisters = [Persister(store) for store in stores]
        written = Persisted()
        ds = ray.data.from_items(todo).map_batches(
            chunk_batch, batch_size=CHUNK_BATCH, batch_format="numpy", num_cpus=task_cpus
        )
        done = 0
        last = 0.0
        for batch in ds.iter_batches(batch_size=CHUNK_BATCH * 4, batch_format="numpy"):
            by_shard: dict[int, list[Prepared]] = defaultdict(list)
            for shard, blob in zip(batch["shard"], batch["prep"], strict=True):
                by_shard[int(shard)].append(Prepared.from_tuple(pickle.loads(blob)))
            for shard, preps in by_shard.items():
                with stores[shard].write():
                    for prep in preps:
                        persisters[shard].write(prep, written)
            done += len(batch["shard"])
            if time.monotonic() - last > 1.0 or done == len(todo):
                last = time.monotonic()
                say(f"read {done}/{len(todo)} files")
        report["changed"] = written.changed
        report["errors"] += [f"{path}: {why}" for path, why in written.failed]

    # 4. embed what no shard and no cache holds
    # An actor per GPU; on CPUs, actors of two ONNX threads each (one thread
    # each wastes memory on model copies, one actor wastes cores on small batches).
    pool = workers or (gpus if gpus else max(1, cpus // 2))
    threads = 1 if gpus else max(1, cpus // pool)
    model = settings.model
    device = (
        settings.device if settings.device != "auto" else os.environ.get("KENNING_DEVICE", "auto")
    )
    probe = ray.get(
        ray.remote(probe_model)
        .options(num_cpus=task_cpus, num_gpus=1 if gpus else 0)
        .remote(model, device, threads)
    )
    space, dims = probe["space"], int(probe["dims"])
    cache = EmbeddingCache(out / "cache" / "embeddings.db")
    try:
        _embed(ray, stores, cache, space, dims, model, device, threads, pool, gpus, report, say)
    finally:
        cache.close()
    made_by = json.dumps(
        {k: probe[k] for k in ("space", "model", "device", "precision")}, sort_keys=True
    )
    for store in stores:
        if store.get_meta("embedded_with") != made_by:
            store.set_meta("embedded_with", made_by)
    return _finish(
        sources, out, stores, read_manifest(out), probe, report, skip_reasons, pool, started
    )


def _pending_count(store: Store) -> int:
    row = store.reader().execute("SELECT count(*) FROM chunks WHERE has_vector = 0").fetchone()
    return int(row[0]) if row else 0


def _finish(
    sources: list[Source],
    out: Path,
    stores: list[Store],
    manifest: dict[str, Any] | None,
    probe: dict[str, Any],
    report: dict[str, Any],
    skip_reasons: dict[str, int],
    pool: int,
    started: float,
) -> dict[str, Any]:
    """Write the manifest; the summary ``kenning cluster build --json`` prints."""
    shard_rows = []
    totals = {"files": 0, "chunks": 0, "embedded": 0}
    for i, store in enumerate(stores):
        c = store.counts()
        shard_rows.append(
            {
                "id": i,
                "path": str(store.path.parent),
                "files": c["files"],
                "chunks": c["chunks"],
                "embedded": c["embedded"],
            }
        )
        for key in totals:
            totals[key] += c[key]
    built_repos = dict((manifest or {}).get("repos") or {})
    built_repos.update({src.repo: str(src.root) for src in sources})
    manifest = {
        "version": 1,
        "shards": len(stores),
        "space": probe["space"],
        "model": probe["model"],
        "dims": probe["dims"],
        "device": probe["device"],
        "repos": built_repos,
        "built_at": time.time(),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return {
        "files": totals["files"],
        "changed": report["changed"],
        "chunks": totals["chunks"],
        "embedded": report["embedded"],
        "cached": report["cached"],
        "deleted": report["deleted"],
        "skipped": sum(skip_reasons.values()),
        "pending": totals["chunks"] - totals["embedded"],
        "took_s": round(time.perf_counter() - started, 3),
        "model": probe["model"],
        "device": probe["device"],
        "workers": pool,
        "errors": report["errors"],
        "repos": sorted(built_repos),
        "shards": shard_rows,
    }


def _pending(store: Store) -> list[tuple[int, str, str, str, str]]:
    """(chunk id, code key, code text, name key, name text) of the chunks of
    ``store`` without a vector.

    The header and the name are made from the path inside the repository, as a
    local index of that repository makes them: the same chunk has the same
    cache keys (and vectors) in a shard and in a working copy's index.
    """
    rows = store.reader().execute(
        "SELECT c.id, c.digest, c.text, f.path, c.language, c.kind, c.symbol FROM chunks c"
        " JOIN files f ON f.id = c.file_id WHERE c.has_vector = 0"
    )
    out = []
    for cid, digest, text, key, language, kind, symbol in rows:
        rel = split_key(key)[1]
        header = embed_header(rel, language, kind, symbol)
        name = name_input(rel, symbol)
        out.append(
            (cid, embed_key(header, digest), embed_input(header, text), name_key(name), name)
        )
    return out


class _Rows:
    """The pending chunks of every shard, each waiting for two vectors (its
    code's and its name's), written when both are known.

    A vector is held only while a chunk that wants it is unwritten: a name that
    many chunks share is embedded once and kept until the last of them goes.
    """

    def __init__(self) -> None:
        # chunk number -> (shard, chunk id, code key, name key)
        self.chunks: list[tuple[int, int, str, str]] = []
        self.by_key: dict[str, list[int]] = defaultdict(list)
        self.unwritten: dict[str, int] = defaultdict(int)
        self.held: dict[str, bytes] = {}
        self.written: set[int] = set()

    def add(self, shard: int, cid: int, code: str, name: str) -> None:
        n = len(self.chunks)
        self.chunks.append((shard, cid, code, name))
        for key in (code, name):
            self.by_key[key].append(n)
            self.unwritten[key] += 1

    def arrive(self, fresh: dict[str, bytes]) -> list[tuple[int, int, str, str]]:
        """Take vectors; the chunks that now have both, each once. Their
        vectors come with them and are let go here when no other chunk wants them."""
        self.held.update((k, v) for k, v in fresh.items() if k in self.unwritten)
        ready = []
        for key in fresh:
            for n in self.by_key.get(key, ()):
                _, _, code, name = self.chunks[n]
                if n not in self.written and code in self.held and name in self.held:
                    self.written.add(n)
                    ready.append(self.chunks[n])
        return ready

    def vector(self, key: str) -> np.ndarray:
        return np.frombuffer(self.held[key], dtype=np.float32)

    def release(self, done: list[tuple[int, int, str, str]]) -> None:
        for _, _, code, name in done:
            for key in (code, name):
                self.unwritten[key] -= 1
                if self.unwritten[key] == 0:
                    del self.unwritten[key], self.held[key], self.by_key[key]


def _embed(
    ray: Any,
    stores: list[Store],
    cache: EmbeddingCache,
    space: str,
    dims: int,
    model: str | None,
    device: str,
    threads: int,
    pool: int,
    gpus: int,
    report: dict[str, Any],
    say: Say,
) -> None:
    # Fits in what is free (see _build); Ray's CPUs are a budget, not a pinning.
    actor_cpus = min(float(threads), float(ray.available_resources().get("CPU", 1.0)) / pool)
    vectors = [VectorIndex(s) for s in stores]
    for v in vectors:
        v.ensure_model(space, dims)
    # Code and name texts by cache key: one text in many places is embedded once.
    rows = _Rows()
    texts: dict[str, str] = {}
    for i, store in enumerate(stores):
        for cid, code_key, code, name_key_, name in _pending(store):
            rows.add(i, cid, code_key, name_key_)
            texts[code_key] = code
            texts[name_key_] = name
    if not texts:
        return
    width = 4 * dims
    found = {k: v for k, v in cache.get_many(space, list(texts)).items() if len(v) == width}
    # Counted by the chunks' code, as the local embed stage counts; names ride along.
    code_cached = {code for _, _, code, _ in rows.chunks if code in found}
    ready = rows.arrive(found)
    _write_vectors(vectors, rows, ready, space, code_cached, report)
    # A chunk's code beside its name: they meet in one batch and its row is
    # written with that batch, not held until its name comes round.
    missing: list[dict[str, str]] = []
    queued: set[str] = set(found)
    for _, _, code, name in rows.chunks:
        for key in (code, name):
            if key not in queued:
                queued.add(key)
                missing.append({"key": key, "text": texts[key]})
    say(
        f"{len(ready)} chunks from the cache, {len(missing)} texts (code and names) "
        f"to embed on {pool} workers" + (f" ({gpus} GPUs)" if gpus else "")
    )
    if not missing:
        return
    ds = ray.data.from_items(missing).map_batches(
        EmbedChunks,
        fn_constructor_kwargs={"model": model, "device": device, "threads": threads},
        batch_size=EMBED_BATCH,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=actor_cpus,
        num_gpus=1 if gpus else 0,
    )
    done = 0
    last = 0.0
    for batch in ds.iter_batches(batch_size=EMBED_BATCH * 4, batch_format="numpy"):
        fresh = {
            str(k): np.asarray(v, dtype=np.float32).tobytes()
            for k, v in zip(batch["key"], batch["vec"], strict=True)
        }
        cache.put_many(space, list(fresh.items()))
        _write_vectors(vectors, rows, rows.arrive(fresh), space, code_cached, report)
        done += len(fresh)
        if time.monotonic() - last > 2.0 or done == len(missing):
            last = time.monotonic()
            say(f"embedded {done}/{len(missing)} texts")


def _write_vectors(
    vectors: list[VectorIndex],
    rows: _Rows,
    ready: list[tuple[int, int, str, str]],
    space: str,
    code_cached: set[str],
    report: dict[str, Any],
) -> None:
    """Write the rows of chunks whose two vectors are known, in one transaction
    per shard and 1,024 rows, and count them."""
    by_shard: dict[int, list[tuple[int, int, str, str]]] = defaultdict(list)
    for chunk in ready:
        by_shard[chunk[0]].append(chunk)
    for shard, chunks in by_shard.items():
        for i in range(0, len(chunks), 1024):
            part = chunks[i : i + 1024]
            vectors[shard].write(
                [cid for _, cid, _, _ in part],
                np.stack([rows.vector(code) for _, _, code, _ in part]),
                space,
                names=np.stack([rows.vector(name) for _, _, _, name in part]),
            )
    cached = sum(1 for _, _, code, _ in ready if code in code_cached)
    report["cached"] += cached
    report["embedded"] += len(ready) - cached
    rows.release(ready)
