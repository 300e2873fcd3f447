"""Benchmark ``kenning mcp`` as a coding agent drives it; prints one JSON object.

Measures, over stdio with the MCP SDK's own client against the real server process:

* ``search_ms``: ``search`` round trip at about 10k chunks, default arguments
  (hybrid, k=8), and ``lexical_search_ms`` (target p95 < 50 ms);
* ``answer_tokens``: the size of a default search answer in tokens, as
  characters / 4, for the text content and the structured content apart
  (target: under about 2,000 tokens);
* ``write_to_found_ms``: a new file written on disk until ``search`` finds it
  by its words, and ``write_to_embedded_ms`` until its chunks have vectors;
* ``first_call``: a fresh server on a new workspace (no index yet): how long the
  first search takes to answer and how much it says is still to read or embed.

The index is built by the server itself, by default with the fake embedder
(``tests/e2e/fake_mcp.py``, 384 dimensions like the default model): the size
and the round trip are what is measured, not meaning. ``--embedder real`` runs
``kenning mcp`` with the default model instead (it embeds every chunk first). So that the real cost of
a query is not hidden, ``real_query_embed_ms`` is the default model's own time
to embed one query, measured in this process; a real-model round trip is about
``search_ms`` plus that.

    PYTHONPATH=server python3 bench/bench_mcp.py [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import bench_lsp
from bench_lsp import summary
from mcp import ClientSession, StdioServerParameters, stdio_client

REPO = Path(__file__).resolve().parent.parent
FAKE_MCP = REPO / "tests" / "e2e" / "fake_mcp.py"

VERBS = ["parse", "load", "save", "fetch", "send", "build", "check", "merge", "split", "sort"]
NOUNS = [
    "config",
    "invoice",
    "customer",
    "order",
    "shipment",
    "ticket",
    "payment",
    "session",
    "token",
    "report",
    "schedule",
    "cache",
]
QUERIES = [
    "parse the config file",
    "send an invoice to the customer",
    "retry a failed payment",
    "sort orders by date",
    "check the session token",
    "merge two reports",
    "load the shipment schedule",
    "build a cache of tickets",
    "fetch customer orders",
    "save the payment report",
]


def log(msg: str) -> None:
    print(f"bench_mcp: {msg}", file=sys.stderr, flush=True)


def make_workspace(root: Path, files: int, seed: int = 7) -> None:
    """``files`` Python files of one function each (about one chunk each), in this
    benchmark's words."""
    bench_lsp.make_workspace(root, files, seed, VERBS, NOUNS)


EMBEDDER = "fake"


@asynccontextmanager
async def connect(root: Path, home: Path) -> Any:
    env = {
        "KENNING_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "KENNING_FAKE_DIMS": "384",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "server"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    args = [str(FAKE_MCP)] if EMBEDDER == "fake" else ["-m", "kenning", "mcp"]
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(root))
    with (home / "stderr.txt").open("a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, **args: Any) -> tuple[dict[str, Any], str]:
    result = await session.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(result.content[0].text)  # type: ignore[union-attr]
    return result.structured_content or {}, result.content[0].text  # type: ignore[union-attr]


async def wait_embedded(session: ClientSession, timeout: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, _ = await call(session, "status")
        if status["pending"] == 0 and status["phase"] == "ready":
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"still indexing after {timeout}s: {status}")
        await anyio.sleep(0.5)


async def bench_queries(session: ClientSession, rounds: int) -> dict[str, Any]:
    hybrid: list[float] = []
    lexical: list[float] = []
    for i in range(rounds):
        query = QUERIES[i % len(QUERIES)]
        t = time.perf_counter()
        await call(session, "search", query=query)
        hybrid.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await call(session, "search", query=query, mode="lexical")
        lexical.append((time.perf_counter() - t) * 1000)
    structured, text = await call(session, "search", query=QUERIES[0])
    return {
        "search_ms": summary(hybrid),
        "lexical_search_ms": summary(lexical),
        "answer_tokens": {
            "k": len(structured["results"]),
            "text": round(len(text) / 4),
            "structured": round(len(json.dumps(structured, ensure_ascii=False)) / 4),
        },
    }


async def bench_writes(session: ClientSession, root: Path, rounds: int) -> dict[str, Any]:
    found: list[float] = []
    embedded: list[float] = []
    rng = random.Random(11)
    for i in range(rounds):
        # A word no other file holds, so that the new function is the best answer.
        word = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(9))
        name = f"moor_{word}_airship"
        path = root / "agent" / f"written{i}.py"
        path.parent.mkdir(exist_ok=True)
        t = time.perf_counter()
        path.write_text(f"def {name}(ship):\n    return ship.tie(rope=True)\n")
        log(f"  wrote {path.name}")
        while True:
            got, _ = await call(session, "search", query=name, mode="lexical", k=5)
            if any(r["symbol"] == name for r in got["results"]):
                break
            await anyio.sleep(0.02)
        found.append((time.perf_counter() - t) * 1000)
        while (await call(session, "status"))[0]["pending"]:
            await anyio.sleep(0.02)
        embedded.append((time.perf_counter() - t) * 1000)
    return {"write_to_found_ms": summary(found), "write_to_embedded_ms": summary(embedded)}


async def bench_first_call(root: Path, home: Path) -> dict[str, Any]:
    t = time.perf_counter()
    async with connect(root, home) as session:
        ready = time.perf_counter()
        answer, _ = await call(session, "search", query=QUERIES[0])
        first = time.perf_counter()
        return {
            "start_to_initialized_ms": round((ready - t) * 1000, 1),
            "first_search_ms": round((first - ready) * 1000, 1),
            "results": len(answer["results"]),
            "phase": answer["phase"],
            "pending": answer["pending"],
        }


def real_query_embed_ms(rounds: int) -> dict[str, Any] | str:
    try:
        from kenning.engine.embedder import load_embedder

        embedder = load_embedder(None, "auto")
    except Exception as exc:
        return f"default model unavailable: {type(exc).__name__}: {exc}"
    embedder.embed_query(QUERIES[0])  # warm
    times = []
    for i in range(rounds):
        t = time.perf_counter()
        embedder.embed_query(QUERIES[i % len(QUERIES)])
        times.append((time.perf_counter() - t) * 1000)
    return summary(times)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kenning-bench-mcp-"))
    root = tmp / "ws"
    try:
        root.mkdir()
        log(f"writing {args.files} files to {root}")
        make_workspace(root, args.files)
        home = tmp / "home"
        home.mkdir()
        log("first call on a new workspace")
        result: dict[str, Any] = {
            "embedder": "fake (384 dims)" if EMBEDDER == "fake" else "default model",
            "cpus": os.cpu_count(),
        }
        result["first_call"] = await bench_first_call(root, home)
        log("indexing to the end")
        async with connect(root, home) as session:
            t = time.perf_counter()
            status = await wait_embedded(session)
            log(
                f"{status['files']} files, {status['chunks']} chunks ({time.perf_counter() - t:.0f}s)"
            )
            result.update(files=status["files"], chunks=status["chunks"])
            log("search round trips")
            result.update(await bench_queries(session, args.queries))
            log("written file -> found")
            result.update(await bench_writes(session, root, args.writes))
        log("the default model's query embedding")
        result["real_query_embed_ms"] = real_query_embed_ms(args.queries)
        result["targets"] = {"search_p95_ms": 50, "answer_tokens": 2000}
        return result
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000, help="files (about one chunk each)")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--writes", type=int, default=10)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument(
        "--embedder",
        choices=["fake", "real"],
        default="fake",
        help="fake (default: fast to build) or the default model (embeds every chunk first)",
    )
    args = p.parse_args()
    global EMBEDDER
    EMBEDDER = args.embedder
    print(json.dumps(anyio.run(main_async, args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
