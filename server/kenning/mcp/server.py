"""``kenning mcp``: the engine's search for coding agents, over the Model Context Protocol.

A door like the CLI and the language server: each tool checks its arguments
(:mod:`kenning.mcp.tools`), calls the engine in a worker thread, and turns the
answer into structured content plus a compact text. The live state is the
engine's :class:`~kenning.engine.session.Session`, as in the language server:
the roots are its folders, read words first on its index thread while the
model loads on a thread of its own; a watcher on the roots
(:mod:`kenning.engine.watch`) hands changes to it, so a file the agent has
just written is found.

Roots: the client's ``roots`` when it offers them, else ``--path`` (repeatable)
or the current folder. Indexing starts as soon as the server starts (the
fallback roots), so the first call rarely waits; a call answers from the
words already read and says how much is still to embed.

stdout carries the protocol only; logs go to stderr (warnings) and
``KENNING_HOME/logs/mcp.log``.

Tests and benchmarks choose the embedder by setting :data:`EMBEDDER_FACTORY`
(see ``tests/e2e/fake_mcp.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import logging.handlers
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

from kenning import __version__
from kenning.config import Settings, kenning_home
from kenning.engine import session as engine_session
from kenning.engine.embedder import Embedder
from kenning.engine.locks import describe
from kenning.engine.remote import ENV_URL as REMOTE_ENV
from kenning.engine.remote import RemoteSearchable, from_env
from kenning.engine.search import SNIPPET_LINES, SearchResult, merge_results
from kenning.engine.searchable import LocalSearchable, Searchable, fan_out, overlay
from kenning.engine.session import Folder, Session
from kenning.engine.store import ChunkRow
from kenning.engine.types import SearchHit
from kenning.engine.watch import FolderWatcher
from kenning.engine.workspace import Index
from kenning.errors import KenningError, LocationError, NeedsEmbeddingsError, UsageError
from kenning.mcp import tools

log = logging.getLogger("kenning.mcp")

# Test hook: ``EMBEDDER_FACTORY(settings)`` returns the embedder to use. None
# means the real model via ``kenning.engine.embedder.load_embedder``.
EMBEDDER_FACTORY: Callable[[Settings], Embedder] | None = None

# The first call on a new workspace waits this long for the files to be read
# (a small project is done by then); later calls answer from what is committed.
FIRST_WAIT_S = 1.0
# Every call waits at most this long for files the watcher has seen change.
SETTLE_S = 1.0
# Tools that need the model wait this long for it to load (a cold start).
MODEL_WAIT_S = 60.0
# How long a folder's index may take to open when the roots are set.
OPEN_WAIT_S = 30.0
# A duplicates call waits at most this long for the folder's near-duplicate
# index, when it is being rebuilt (after a checkout) as the call comes.
DUPLICATES_WAIT_S = 60.0
ROOTS_TIMEOUT_S = 5.0
# A search runs in a worker thread; more at once only queue on the CPU.
QUERY_THREADS = 4

INSTRUCTIONS = (
    "kenning searches this workspace's code by meaning and by words, offline. Use `search` "
    "to find where something is done when you do not know the names; `similar` and "
    "`duplicates` for code like a given location; `patterns` for families of copied code. "
    "Line ranges are 1-based and inclusive; a result with stale=true is in a file that "
    "changed since it was indexed."
)


class KenningMcp:
    """The state of one MCP session: the roots, their live indexes, the tools."""

    def __init__(
        self,
        settings: Settings,
        fallback_roots: list[Path],
        explicit: bool,
        watch: bool = True,
        remotes: Sequence[RemoteSearchable] = (),
    ) -> None:
        self.settings = settings
        # Shard endpoints (`--remote`) searched with the local roots, which win
        # for their own repositories; a slow or failing one only adds a note.
        self.remotes = list(remotes)
        self.remote_timeout_s = max((r.timeout_s for r in remotes), default=2.0)
        self.fallback_roots = fallback_roots
        self.explicit = explicit
        if EMBEDDER_FACTORY is not None:
            engine_session.EMBEDDER_FACTORY = EMBEDDER_FACTORY
        self.session = Session(settings, owner="mcp server")
        self.watch = watch
        self.watcher: FolderWatcher | None = None
        # Set once every root's files have been read (words) the first time.
        self._words: list[Future[Any]] = []
        self.problem: str | None = None
        self._roots_from_client = False
        self._roots_settled = False
        self._roots_lock: asyncio.Lock | None = None
        self._answered = False
        self._threads = anyio.CapacityLimiter(QUERY_THREADS)
        self.server: Server[Any] = Server(
            "kenning",
            version=__version__,
            title="kenning code search",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.server.add_notification_handler(
            "notifications/roots/list_changed", types.NotificationParams, self._roots_changed
        )

    @property
    def indexes(self) -> dict[Path, Index]:
        """The roots whose index is open, by root."""
        out: dict[Path, Index] = {}
        for root, folder in list(self.session.folders.items()):
            index = folder.index
            if index is not None:
                out[root] = index
        return out

    # -- roots --------------------------------------------------------------------

    def start(self) -> None:
        """Start indexing the fallback roots before any client asks (see the module doc)."""
        self.problem = self._not_a_project(self.fallback_roots)
        if self.problem is None:
            self._set_roots(self.fallback_roots)

    def _not_a_project(self, roots: list[Path]) -> str | None:
        if self.explicit:
            return None
        home = Path.home().resolve()
        for root in roots:
            resolved = root.resolve()
            if resolved == home or resolved == Path(resolved.anchor):
                return (
                    f"kenning mcp was started in {resolved}, not in a project: pass "
                    "--path DIR in the server's configuration (see the README), or use a "
                    "client that sends its workspace roots"
                )
        return None

    def _set_roots(self, roots: list[Path]) -> None:
        """Index these roots (and stop indexing others): each is opened, read
        words first, then embedded once the model is there; the watcher follows."""
        wanted: dict[Path, None] = {}
        for root in roots:
            try:
                wanted[root.expanduser().resolve()] = None
            except OSError as exc:
                log.warning("%s: %s", root, exc.strerror or exc)
        for root in [r for r in self.session.folders if r not in wanted]:
            self.session.remove_folder(root)
        added: list[Folder] = []
        for root in wanted:
            if root in self.session.folders:
                continue
            folder = self.session.add_folder(root)
            if folder is not None:
                added.append(folder)
        self._words = [
            *(f for f in self._words if not f.done()),
            *(self.session.refresh_job(f, embed=False).future for f in added),
        ]
        for folder in added:
            try:
                folder.ready.result(OPEN_WAIT_S)
            except Exception as exc:
                log.warning("%s: %s", folder.root, exc)
                self.session.remove_folder(folder.root)
        self._restart_watcher()
        if self.session.folders:
            self.session.load_model_soon()
        if not self.indexes:
            self.problem = "no workspace folder could be opened: " + ", ".join(
                str(r) for r in roots
            )

    def _restart_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if not self.watch or not self.session.folders:
            return
        watcher = FolderWatcher(list(self.session.folders), self.session.paths_changed)
        if watcher.start():
            self.watcher = watcher

    async def _ensure_roots(self, ctx: ServerRequestContext[Any]) -> None:
        if self._roots_settled:
            return
        if self._roots_lock is None:
            self._roots_lock = asyncio.Lock()
        async with self._roots_lock:
            if self._roots_settled:
                return
            roots = await self._client_roots(ctx)
            if roots:
                self._roots_from_client = True
                self.problem = None
                if set(roots) != set(self.session.folders):
                    log.info("roots from the client: %s", ", ".join(map(str, roots)))
                    await anyio.to_thread.run_sync(self._set_roots, roots)
            self._roots_settled = True
        if self.problem is not None:
            raise KenningError(self.problem)

    async def _client_roots(self, ctx: ServerRequestContext[Any]) -> list[Path]:
        caps = ctx.session.client_capabilities
        if caps is None or caps.roots is None:
            return []
        try:
            with anyio.fail_after(ROOTS_TIMEOUT_S), warnings.catch_warnings():
                # Deprecated in the newest protocol revision; clients still send them.
                warnings.simplefilter("ignore")
                listed = await ctx.session.list_roots()
        except Exception as exc:
            log.info("the client did not list its roots (%s); using %s", exc, self.fallback_roots)
            return []
        out: list[Path] = []
        for root in listed.roots:
            parsed = urlparse(str(root.uri))
            if parsed.scheme != "file":
                continue
            path = Path(unquote(parsed.path))
            if path.is_dir():
                out.append(path.resolve())
            else:
                log.warning("%s: a root the client sent is not a folder; left out", path)
        return out

    async def _roots_changed(self, ctx: ServerRequestContext[Any], params: Any) -> None:
        # Looked at again on the next call (asking here would wait on the client
        # while it may be waiting on us).
        self._roots_settled = False

    # -- protocol -----------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=name,
                    title=spec["title"],
                    description=spec["description"],
                    input_schema=spec["input"],
                    output_schema=spec["output"],
                    annotations=types.ToolAnnotations(
                        read_only_hint=True, open_world_hint=False, idempotent_hint=True
                    ),
                )
                for name, spec in tools.TOOLS.items()
            ]
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name
        started = time.perf_counter()
        try:
            handler = HANDLERS.get(name)
            if handler is None:
                raise UsageError(f"unknown tool {name!r} (tools: {', '.join(tools.TOOLS)})")
            args = tools.check_arguments(name, params.arguments)
            await self._ensure_roots(ctx)
            answer, text = await handler(self, args)
        except KenningError as exc:
            log.info("%s: %s", name, exc)
            return _error(f"{name}: {exc}")
        except Exception as exc:
            log.error("%s failed", name, exc_info=True)
            return _error(f"{name} failed: {type(exc).__name__}: {exc} (details in {log_file()})")
        log.debug("%s took %.1f ms", name, (time.perf_counter() - started) * 1000)
        self._answered = True
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=answer
        )

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)

    async def _on_index_thread(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` where index writes happen (it computes and stores signatures)."""
        return await asyncio.wrap_future(self.session.call(fn))

    def _fresh(self) -> None:
        """Before answering: the first call waits briefly for the files to be read;
        every call takes in the changes the watcher has seen."""
        if not self._answered and self._words:
            with contextlib.suppress(Exception):
                concurrent.futures.wait(self._words, FIRST_WAIT_S)
        self.session.settle(SETTLE_S)

    def _state(self) -> dict[str, Any]:
        pending = chunks = 0
        for index in self.indexes.values():
            counts = index.store.counts()
            chunks += counts["chunks"]
            pending += counts["chunks"] - counts["embedded"]
        phase = self.session.phase()
        if phase == "ready" and pending and self.session.embedders.get_nowait() is not None:
            phase = "embedding"
        return {
            "phase": phase,
            "pending": pending,
            "complete": round((chunks - pending) / chunks, 4) if chunks else 1.0,
        }

    def _index_for(self, path: str) -> tuple[Folder, Index, str]:
        """The folder of the innermost root holding ``path`` (absolute, or
        relative to the first root), its index, and the path relative to it."""
        p = Path(path).expanduser()
        roots = list(self.session.folders)
        if not roots:
            raise LocationError("no workspace folder is open")
        if not p.is_absolute():
            p = roots[0] / p
        with contextlib.suppress(OSError):
            p = p.resolve()
        folder = self.session.folder_of(p)
        index = folder.index if folder is not None else None
        if folder is None or index is None:
            shown = ", ".join(str(r) for r in roots)
            raise LocationError(f"{path}: outside the workspace ({shown})")
        return folder, index, index.rel(p)

    def _location(self, path: str, line: int) -> tuple[Index, str]:
        _, index, rel = self._file(path)
        return index, rel

    def _file(self, path: str) -> tuple[Folder, Index, str]:
        folder, index, rel = self._index_for(path)
        if not (index.root / rel).is_file() and index.store.file(rel) is None:
            raise LocationError(f"{path}: no such file in {index.root}")
        return folder, index, rel

    def _model(self) -> Embedder:
        embedder = self.session.wait_model(MODEL_WAIT_S)
        if embedder is None:
            why = self.session.embedders.error or "it is still loading"
            raise NeedsEmbeddingsError(
                f"this needs the embedding model, which is not loaded ({why})"
            )
        return embedder

    def _hits(self, result: SearchResult, args: dict[str, Any]) -> dict[str, Any]:
        """The answer for a search or similar result: snippets cut, stale flags set."""
        lines = args.get("snippet_lines", tools.DEFAULT_SNIPPET_LINES)
        several = len(self.indexes) > 1
        stale = self._stale(result.results)
        texts = self._texts(result.results, lines)
        out: dict[str, Any] = {
            "query": result.query,
            "mode": result.mode,
            "took_ms": round(result.took_ms, 2),
            "results": [
                tools.hit_json(
                    hit,
                    text,
                    (hit.root, hit.path) in stale,
                    bool(args.get("explain")),
                    hit.root if several else None,
                )
                for hit, text in zip(result.results, texts, strict=True)
            ],
            **self._state(),
        }
        notes = [n for n in result.notes if not n.startswith("embeddings ")]
        if out["pending"] and result.mode != "lexical":
            notes.append(
                f"{out['pending']} chunks still to embed: results lean on words until done"
            )
        if notes:
            out["notes"] = notes
        return out

    def _stale(self, hits: list[Any]) -> set[tuple[str, str]]:
        by_root: dict[str, list[str]] = {}
        for hit in hits:
            by_root.setdefault(hit.root, []).append(hit.path)
        out: set[tuple[str, str]] = set()
        for root, paths in by_root.items():
            index = self.indexes.get(Path(root))
            if index is not None:
                out.update((root, p) for p in index.stale(paths))
        return out

    def _texts(self, hits: list[SearchHit], lines: int) -> list[str]:
        if lines <= SNIPPET_LINES:
            return [tools.snippet_of(h.snippet, lines) for h in hits]
        # Longer than the engine's own snippet: the chunk's text.
        texts: dict[tuple[str, int], str] = {}
        for root in {h.root for h in hits}:
            index = self.indexes.get(Path(root))
            if index is None:
                continue
            rows = index.store.chunk_rows([h.chunk_id for h in hits if h.root == root])
            texts.update(((root, cid), row.text) for cid, row in rows.items())
        return [tools.snippet_of(texts.get((h.root, h.chunk_id), h.snippet), lines) for h in hits]

    def _loc(self, root: str, loc: dict[str, Any], stale: set[str]) -> dict[str, Any]:
        out = dict(loc, stale=loc["path"] in stale)
        if len(self.indexes) > 1:
            out["root"] = root
        return out

    # -- tools --------------------------------------------------------------------

    async def search(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        query = args["query"].strip()
        if not query:
            raise UsageError("query is empty")
        langs, globs = tools.check_filters(args)

        def run() -> dict[str, Any]:
            self._fresh()
            indexes = list(self.indexes.values())
            results: list[SearchResult] = []
            answered: list[Index] = []
            for index in indexes:
                try:
                    results.append(index.search(query, args["k"], args["mode"], langs, globs))
                except KenningError as exc:
                    if len(indexes) == 1:
                        raise
                    log.info("%s: %s", index.root, exc)
                else:
                    answered.append(index)
            if not self.remotes:
                return self._hits(merge_results(results, args["k"], query), args)
            remotes: list[Searchable] = list(self.remotes)
            got, notes = fan_out(
                remotes,
                lambda s: s.search(query, args["k"], args["mode"], langs, globs),
                self.remote_timeout_s,
            )
            merged = overlay(
                [(LocalSearchable(ix), r) for ix, r in zip(answered, results, strict=True)] + got,
                args["k"],
                query,
            )
            merged.notes = sorted(set(merged.notes) | set(notes))
            return self._hits(merged, args)

        answer = await self._in_thread(run)
        return answer, tools.render_hits(answer)

    async def similar(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        code, path, line = args.get("code"), args.get("path"), args.get("line")
        if code is not None and (path is not None or line is not None):
            raise UsageError("give either code, or path and line, not both")
        if code is None and (path is None or line is None):
            raise UsageError("give path and line (a location), or code (a snippet)")

        def run() -> dict[str, Any]:
            self._fresh()
            if code is not None:
                if not code.strip():
                    raise UsageError("code is empty")
                self._model()
                results = [ix.similar_code(code, args["k"]) for ix in self.indexes.values()]
                return self._hits(merge_results(results, args["k"], results[0].query), args)
            # Checked above: without code, path and line are both given.
            assert path is not None and line is not None
            index, rel = self._location(path, line)
            self._model()
            return self._hits(index.similar(rel, line, args["k"]), args)

        answer = await self._in_thread(run)
        return answer, tools.render_hits(answer)

    async def duplicates(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """What ``kenning.duplicates`` and ``kenning duplicates`` answer: the
        session's near-duplicate index of the folder (built at the first call),
        or one built for this call when another threshold is asked for."""

        def locate() -> tuple[Folder, Index, str, ChunkRow]:
            self._fresh()
            folder, index, rel = self._file(args["path"])
            return folder, index, rel, index.chunk_at(rel, args["line"])

        folder, index, rel, row = await self._in_thread(locate)
        threshold = args.get("threshold") or self.settings.duplicates.threshold
        if threshold == self.settings.duplicates.threshold:
            await asyncio.wrap_future(self.session.want_duplicates(folder))
            found = await self._in_thread(
                self.session.duplicates_of,
                folder,
                index.root / rel,
                args["line"],
                DUPLICATES_WAIT_S,
            )
        else:
            from kenning.engine.duplicates import duplicates_once

            found = await self._on_index_thread(
                lambda: duplicates_once(index, rel, args["line"], threshold)
            )

        def answer() -> dict[str, Any]:
            hits = found.hits[: args["k"]]
            stale = index.stale([row.path, *(h.path for h in hits)])
            root = str(index.root)
            start, end = found.chunk or (row.start_line, row.end_line)
            chunk = {"path": row.path, "start_line": start, "end_line": end, "symbol": row.symbol}
            results = [
                self._loc(
                    root,
                    {
                        "path": h.path,
                        "start_line": h.start_line,
                        "end_line": h.end_line,
                        "symbol": h.symbol,
                        "similarity": round(h.score, 4),
                    },
                    stale,
                )
                for h in hits
            ]
            return {
                "chunk": self._loc(root, chunk, stale),
                "threshold": threshold,
                "results": results,
                **self._state(),
            }

        out = await self._in_thread(answer)
        return out, tools.render_hits(out)

    async def patterns(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        await self._in_thread(self._fresh)
        limit = args["limit"]
        found: list[tuple[str, dict[str, Any]]] = []
        compared = 0
        for index in list(self.indexes.values()):
            report = await self._on_index_thread(functools.partial(index.patterns, None, 2, limit))
            compared += report.chunks_compared
            found.extend((str(index.root), c) for c in report.clusters)
        found.sort(key=lambda rc: -rc[1]["size"])
        found = found[:limit]

        def answer() -> dict[str, Any]:
            patterns = []
            for root, c in found:
                members = c["members"][: tools.PATTERN_MEMBERS]
                index = self.indexes.get(Path(root))
                paths = [c["canonical"]["path"], *(m["path"] for m in members)]
                stale = index.stale(paths) if index is not None else set()
                patterns.append(
                    {
                        "id": c["id"] if len(self.indexes) == 1 else f"{root}:{c['id']}",
                        "size": c["size"],
                        "languages": c["languages"],
                        "canonical": self._loc(root, c["canonical"], stale),
                        "members": [self._loc(root, m, stale) for m in members],
                    }
                )
            return {"patterns": patterns, "chunks_compared": compared, **self._state()}

        out = await self._in_thread(answer)
        return out, tools.render_patterns(out)

    async def match_templates(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        def run() -> dict[str, Any]:
            self._fresh()
            index, rel = self._location(args["path"], args["line"])
            # Templates match by meaning when the model is there, by words if it failed.
            self.session.wait_model(MODEL_WAIT_S)
            matches = index.match_templates(rel, args["line"], args["k"])
            return {
                "matches": [
                    {
                        "id": m.template.id,
                        "name": m.template.name,
                        "languages": list(m.template.languages),
                        "score": round(m.score, 4),
                        "why": m.why,
                        "description": m.template.description,
                    }
                    for m in matches
                ]
            }

        answer = await self._in_thread(run)
        return answer, tools.render_matches(answer)

    async def status(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        def run() -> dict[str, Any]:
            roots: list[dict[str, Any]] = []
            for index in list(self.indexes.values()):
                try:
                    s = index.status()
                except KenningError as exc:
                    roots.append({"root": str(index.root), "error": str(exc)})
                    continue
                roots.append(
                    {
                        "root": s["root"],
                        "files": s["files"],
                        "chunks": s["chunks"],
                        "embedded": s["embedded"],
                        "pending": s["pending"],
                        "skipped": s["skipped"],
                        "indexing_by": describe(s["indexing_by"]) if s["indexing_by"] else None,
                        "last_refresh": (s.get("last_refresh") or {}).get("at"),
                        "model": s["model"],
                        "device": s["device"],
                    }
                )
            ok = [r for r in roots if "error" not in r]
            embedder = self.session.embedders.get_nowait()
            first = ok[0] if ok else {}
            refreshed = [r["last_refresh"] for r in ok if r["last_refresh"]]
            return {
                "roots": roots,
                "files": sum(r["files"] for r in ok),
                "chunks": sum(r["chunks"] for r in ok),
                "embedded": sum(r["embedded"] for r in ok),
                "skipped": sum(r["skipped"] for r in ok),
                "model": embedder.model_id if embedder else first.get("model"),
                "device": embedder.device if embedder else first.get("device"),
                "model_error": self.session.embedders.error,
                "watching": bool(self.watcher and self.watcher.running),
                "last_refresh": min(refreshed) if refreshed else None,
                **(
                    {"remotes": [{"url": r.name, **r.state.to_json()} for r in self.remotes]}
                    if self.remotes
                    else {}
                ),
                **self._state(),
            }

        answer = await self._in_thread(run)
        return answer, tools.render_status(answer)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.session.close()


Handler = Callable[[KenningMcp, dict[str, Any]], Awaitable[tuple[dict[str, Any], str]]]
HANDLERS: dict[str, Handler] = {
    "search": KenningMcp.search,
    "similar": KenningMcp.similar,
    "duplicates": KenningMcp.duplicates,
    "patterns": KenningMcp.patterns,
    "match_templates": KenningMcp.match_templates,
    "status": KenningMcp.status,
}


def _error(message: str) -> types.CallToolResult:
    # One line: a client shows it as it is, and a model reads it as one fact.
    line = " ".join(message.split())
    return types.CallToolResult(content=[types.TextContent(type="text", text=line)], is_error=True)


# -- logging and running -------------------------------------------------------------


def log_file() -> Path:
    return kenning_home() / "logs" / "mcp.log"


def setup_logging(verbose: bool = False) -> Path | None:
    """Warnings to stderr, everything from INFO (DEBUG with -v) to the log file.
    Never stdout: it carries the protocol."""
    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(logging.Formatter("kenning: %(message)s"))
    root.addHandler(stderr)
    path: Path | None = log_file()
    try:
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        file = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
        file.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
        file.setLevel(logging.DEBUG if verbose else logging.INFO)
        root.addHandler(file)
    except OSError as exc:
        path = None
        root.warning("cannot write the log file: %s", exc)
    logging.getLogger("kenning").setLevel(logging.DEBUG if verbose else logging.INFO)
    return path


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve MCP on stdio until the client closes it."""
    path = setup_logging(getattr(args, "verbose", False))
    explicit = bool(getattr(args, "path", None))
    roots = [Path(p).expanduser() for p in dict.fromkeys(args.path)] if explicit else [Path.cwd()]
    for root in roots:
        if not root.is_dir():
            raise KenningError(f"{root}: no such folder")
    log.info(
        "kenning %s MCP server (pid %d), roots %s, log file %s",
        __version__,
        os.getpid(),
        ", ".join(map(str, roots)),
        path,
    )
    remotes: list[RemoteSearchable] = []
    if getattr(args, "remote", None) or os.environ.get(REMOTE_ENV):
        remotes = from_env(args.remote, args.remote_timeout)
    app = KenningMcp(
        settings, roots, explicit, watch=not getattr(args, "no_watch", False), remotes=remotes
    )
    app.start()

    async def serve() -> None:
        async with stdio_server() as (read, write):
            await app.server.run(read, write, app.server.create_initialization_options())

    try:
        anyio.run(serve)
    finally:
        app.close()
    return 0
