"""``kenning cluster serve``: the shards over HTTP with Ray Serve.

Model composition as the Ray Serve docs describe it: one deployment per shard
(read-only; candidates for a query text and vector), one query-embedder
deployment that batches concurrent queries (``@serve.batch``), and an ingress
that embeds the query once, asks every shard at once, merges their answers with
the local engine's merge (best fixed-scale scores first) and answers over HTTP:

- ``POST /v1/search`` ``{query, k?, mode?, lang?, glob?}`` and ``POST /v1/similar``
  ``{code, k?}``: the shape of ``kenning search --json``, each result with ``repo``;
- ``GET /v1/status``: per-shard counts, query latency p50/p95, replicas;
- ``GET /healthz``: ``{"ok": true}``, the only route without a token.

Every other route needs ``Authorization: Bearer TOKEN``. The ingress holds only
the token's SHA-256, compares digests in constant time, and never logs either.
A bad request gets a 4xx with ``{"error": "one line"}``, never a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from kenning.cluster.shards import ShardIndex, read_manifest, shard_db
from kenning.engine.embedder import INT8_SPACE
from kenning.engine.search import MODES, WEAK_EVIDENCE, SearchResult, merge_results
from kenning.engine.searchable import MAX_CODE_CHARS, check_code, first_line
from kenning.errors import KenningError, UsageError

log = logging.getLogger(__name__)

APP_NAME = "kenning"
MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_CHARS = 1000
MAX_K = 100
MAX_FILTERS = 16
LATENCY_WINDOW = 1000
STOP_WAIT_S = 15.0
# Ray CPUs are a scheduling budget: a shard replica waits on SQLite and numpy
# for milliseconds per query, so small shares let a node hold many shards and
# leave CPUs for a build beside them.
SHARD_CPUS = 0.1
EMBEDDER_CPUS = 0.25
INGRESS_CPUS = 0.1
SHARD_THREADS = 2
WEAK_NOTE = "no strong match"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- deployments -----------------------------------------------------------------------


@serve.deployment(ray_actor_options={"num_cpus": SHARD_CPUS})
class Shard:
    """One shard, read-only: the engine's search over its own files."""

    def __init__(self, path: str, shard_id: int) -> None:
        self.index = ShardIndex(Path(path), shard_id)
        # Queries run on a few threads of our own: each thread holds its own
        # SQLite reader and page cache, and Serve's default pool for sync
        # methods has many threads, which grew a 125k-chunk replica to 840 MB.
        self.pool = ThreadPoolExecutor(max_workers=SHARD_THREADS, thread_name_prefix="shard")
        # The first query must not pay for loading vectors and word lists.
        self.pool.submit(self._warm)

    def _warm(self) -> None:
        try:
            self.index.warm()
        except Exception:
            log.warning("warming shard %s failed", self.index.id, exc_info=True)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def search(
        self,
        query: str,
        vector: np.ndarray | None,
        k: int,
        mode: str,
        languages: list[str] | None,
        globs: list[str] | None,
        space: str | None,
    ) -> SearchResult:
        return await self._run(self.index.search, query, vector, k, mode, languages, globs, space)

    async def similar(self, vector: np.ndarray, k: int, space: str | None) -> SearchResult:
        return await self._run(self.index.similar, vector, k, space)

    async def counts(self) -> dict[str, int]:
        return await self._run(self.index.counts)


@serve.deployment(ray_actor_options={"num_cpus": EMBEDDER_CPUS})
class QueryEmbedder:
    """The model, once; concurrent queries share one forward pass."""

    def __init__(self, model: str | None, threads: int) -> None:
        from kenning.engine.embedder import load_embedder

        # Queries are short: the CPU answers one faster than a GPU round trip.
        self.embedder = load_embedder(model, "cpu", threads)
        self.space = self.embedder.space

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _queries(self, texts: list[str]) -> list[np.ndarray]:
        emb = self.embedder
        batched = getattr(emb, "embed_queries", None)
        if batched is not None:  # one batch through the session, with the query prefix
            return list(batched(texts))
        return [emb.embed_query(t) for t in texts]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def _documents(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.embedder.embed_documents(texts))

    async def query(self, text: str) -> tuple[np.ndarray, str]:
        return await self._queries(text), self.space

    async def code(self, text: str) -> tuple[np.ndarray, str]:
        return await self._documents(text), self.space


@serve.deployment(ray_actor_options={"num_cpus": INGRESS_CPUS})
class Ingress:
    """HTTP: checks the token and the request, fans out, merges."""

    def __init__(
        self,
        shards: list[Any],
        embedder: Any,
        token_sha256: str,
        manifest: dict[str, Any],
    ) -> None:
        self.shards = shards
        self.embedder = embedder
        self.token_sha256 = bytes.fromhex(token_sha256)
        self.manifest = manifest
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.queries = 0
        self.started = time.time()

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        started = time.perf_counter()
        try:
            status, body = await self._route(request)
        except HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
        except KenningError as exc:
            status, body = 400, {"error": str(exc).splitlines()[0] if str(exc) else "bad request"}
        except Exception:
            log.error("request failed", exc_info=True)
            status, body = 500, {"error": "internal error (see the server's log)"}
        headers = {"WWW-Authenticate": 'Bearer realm="kenning"'} if status == 401 else None
        if status == 200 and request.url.path in ("/v1/search", "/v1/similar"):
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.queries += 1
        return Response(
            json.dumps(body, ensure_ascii=False),
            status_code=status,
            media_type="application/json",
            headers=headers,
        )

    def _authorized(self, request: Any) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        digest = hashlib.sha256(token.strip().encode()).digest()
        return hmac.compare_digest(digest, self.token_sha256)

    async def _route(self, request: Any) -> tuple[int, dict[str, Any]]:
        path = request.url.path.rstrip("/") or "/"
        method = request.method
        if path == "/healthz":
            return 200, {"ok": True}
        routes = {"/v1/search": "POST", "/v1/similar": "POST", "/v1/status": "GET"}
        if path not in routes:
            raise HttpError(404, f"no route {path}")
        if not self._authorized(request):
            raise HttpError(401, "a valid bearer token is required")
        if method != routes[path]:
            raise HttpError(405, f"{path} takes {routes[path]}")
        if path == "/v1/status":
            return 200, await self._status()
        body = await _json_body(request)
        if path == "/v1/search":
            return 200, await self._search(body)
        return 200, await self._similar(body)

    async def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        query = _string(body, "query", MAX_QUERY_CHARS)
        k = _k(body)
        mode = body.get("mode", "hybrid")
        if mode not in MODES:
            raise HttpError(400, f"mode must be one of {', '.join(MODES)}")
        languages = _strings(body, "lang")
        globs = _strings(body, "glob")
        if languages:
            from kenning.engine.languages import language_filter

            languages = language_filter(languages)
        if globs:
            from kenning.engine.scan import filter_spec

            filter_spec(globs)
        vector, space = None, None
        if mode != "lexical":
            vector, space = await self.embedder.query.remote(query)
        answers = await asyncio.gather(
            *(
                s.search.remote(query, vector, k, mode, languages, globs, space)
                for s in self.shards
            ),
            return_exceptions=True,
        )
        merged = self._merge(answers, k, query)
        merged.mode = mode
        merged.took_ms = (time.perf_counter() - started) * 1000
        return _result_json(merged)

    async def _similar(self, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        code = _string(body, "code", MAX_CODE_CHARS, strip=False)
        check_code(code)
        k = _k(body)
        vector, space = await self.embedder.code.remote(code)
        answers = await asyncio.gather(
            *(s.similar.remote(vector, k, space) for s in self.shards), return_exceptions=True
        )
        merged = self._merge(answers, k, first_line(code))
        merged.mode = "vector"
        merged.took_ms = (time.perf_counter() - started) * 1000
        return _result_json(merged)

    def _merge(self, answers: Sequence[Any], k: int, query: str) -> SearchResult:
        ok = [a for a in answers if isinstance(a, SearchResult)]
        failed = [(i, a) for i, a in enumerate(answers) if not isinstance(a, SearchResult)]
        for i, exc in failed:
            if isinstance(exc, KenningError):
                raise exc  # bad input: every shard says the same
            log.error("shard %d failed: %r", i, exc)
        for r in ok:
            # Each shard judged its own best; the answer's best is what counts.
            r.notes = [n for n in r.notes if not n.startswith(WEAK_NOTE)]
        merged = merge_results(ok, k, query)
        if merged.results and merged.results[0].score < WEAK_EVIDENCE:
            merged.notes.append(
                f"{WEAK_NOTE}: the best result scores {merged.results[0].score:.2f}"
            )
        if failed:
            merged.notes.append(
                f"{len(failed)} of {len(answers)} shards did not answer: results may be missing"
            )
        return merged

    async def _status(self) -> dict[str, Any]:
        counts = await asyncio.gather(
            *(s.counts.remote() for s in self.shards), return_exceptions=True
        )
        shards = [
            c if isinstance(c, dict) else {"id": i, "error": type(c).__name__}
            for i, c in enumerate(counts)
        ]
        lat = sorted(self.latencies)
        return {
            "shards": shards,
            "files": sum(s.get("files", 0) for s in shards),
            "chunks": sum(s.get("chunks", 0) for s in shards),
            "model": self.manifest.get("model"),
            "space": self.manifest.get("space"),
            "repos": sorted(self.manifest.get("repos") or {}),
            "queries": self.queries,
            "query_ms_p50": _percentile(lat, 50),
            "query_ms_p95": _percentile(lat, 95),
            "replicas": _replicas(),
            "up_s": round(time.time() - self.started, 1),
        }


def _replicas() -> dict[str, int] | None:
    try:
        app = serve.status().applications[APP_NAME]
        return {name: sum(d.replica_states.values()) for name, d in sorted(app.deployments.items())}
    except Exception:
        return None


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    i = min(len(values) - 1, max(0, round(pct / 100 * (len(values) - 1))))
    return round(values[i], 2)


def _result_json(result: SearchResult) -> dict[str, Any]:
    out = result.to_json()
    if result.complete >= 1.0:
        out.pop("complete", None)
    return out


async def _json_body(request: Any) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise HttpError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    data = b""
    async for part in request.stream():
        data += part
        if len(data) > MAX_BODY_BYTES:
            raise HttpError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(data or b"null")
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str, limit: int, strip: bool = True) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise HttpError(400, f"{name} must be a non-empty string")
    if len(value) > limit:
        raise HttpError(400, f"{name} is longer than {limit} characters")
    return value.strip() if strip else value


def _k(body: dict[str, Any]) -> int:
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise HttpError(400, f"k must be a whole number from 1 to {MAX_K}")
    return k


def _strings(body: dict[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > MAX_FILTERS
        or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value)
    ):
        raise HttpError(400, f"{name} must be a string or a list of at most {MAX_FILTERS}")
    return value


# -- the token -------------------------------------------------------------------------


def load_token(path: Path, create: bool = True) -> tuple[str, bool]:
    """The token in ``path``; a new one (mode 0600) when the file is absent.
    Returns (token, created)."""
    if not path.exists():
        if not create:
            raise UsageError(f"{path}: no token file")
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another serve made it meanwhile: use that one
            return load_token(path, create=False)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token, True
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the token file ({exc})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: the token file is readable by others; chmod 600 it", path)
    return token, False


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


# -- the command -----------------------------------------------------------------------


def build_app(out: Path, token: str, threads: int = 1) -> Any:
    manifest = read_manifest(out)
    if manifest is None:
        raise UsageError(f"{out}: no kenning shards here (build them with `kenning cluster build`)")
    n = int(manifest["shards"])
    missing = [i for i in range(n) if not shard_db(out, i).is_file()]
    if missing:
        raise UsageError(f"{out}: shard {missing[0]} is missing")
    space = str(manifest.get("space") or "")
    # The query embedder must land in the vector space the shards were built in
    # (int8 or fp32 arithmetic of the same model give different vectors).
    precision = "int8" if space.endswith(INT8_SPACE) else "fp32"
    # serve.deployment turns each class into a Deployment (options, bind), which
    # mypy cannot see through the decorator.
    embedder = QueryEmbedder.options(  # type: ignore[attr-defined]
        ray_actor_options={
            "num_cpus": EMBEDDER_CPUS,
            "runtime_env": {"env_vars": {"KENNING_PRECISION": precision}},
        }
    ).bind(manifest.get("model"), threads)
    shards = [
        Shard.options(name=f"shard-{i}").bind(str(shard_db(out, i)), i)  # type: ignore[attr-defined]
        for i in range(n)
    ]
    digest = hashlib.sha256(token.encode()).hexdigest()
    return Ingress.bind(shards, embedder, digest, manifest)  # type: ignore[attr-defined]


def run_serve(
    out: Path,
    host: str,
    port: int,
    token_file: Path | None,
    address: str | None = None,
    tls: tuple[str, str] | None = None,
    say: Callable[[str], None] | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    from kenning.cluster.build import _forwarded_env, _init_ray, _stderr

    say = say or _stderr
    out = out.expanduser().resolve()
    token_path = token_file or (out / "serve.token")
    if read_manifest(out) is None:
        raise UsageError(f"{out}: no kenning shards here (build them with `kenning cluster build`)")
    token, created = load_token(token_path)
    if not token:
        # An empty token would let anyone in; on loopback too, refuse it.
        raise UsageError(
            f"{token_path}: the token file is empty; refusing to serve without a token"
        )
    ray = _init_ray(address, _forwarded_env())
    started_here = not (address or os.environ.get("RAY_ADDRESS"))
    from ray.serve.config import HTTPOptions

    http: dict[str, Any] = {"host": host, "port": port}
    if tls is not None:
        http["ssl_certfile"], http["ssl_keyfile"] = tls
    serve.start(http_options=HTTPOptions(**http), logging_config={"log_level": "WARNING"})
    app = build_app(out, token, threads=1)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    scheme = "https" if tls else "http"
    say(
        f"serving {out} on {scheme}://{host}:{port} "
        f"(token {'created in' if created else 'from'} {token_path})"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready()
    stop.wait()
    say("stopping")

    def clean_up() -> None:
        try:
            serve.delete(APP_NAME)
            if started_here:
                serve.shutdown()
                ray.shutdown()
        except Exception:
            log.debug("stopping Serve failed", exc_info=True)

    # A Ctrl-C on a terminal reaches Ray's own processes too: with them gone,
    # stopping Serve cleanly would wait forever. Give it a few seconds.
    cleaner = threading.Thread(target=clean_up, daemon=True)
    cleaner.start()
    cleaner.join(STOP_WAIT_S)
    return 0
