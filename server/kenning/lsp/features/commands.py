"""``workspace/executeCommand``: kenning.search, kenning.similar, kenning.reindex.

Each command takes one JSON object (see CONTRACT.md) and checks it itself, so
a wrong shape gets a one-line error naming the field instead of a converter
traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

from kenning.engine.search import SearchResult, merge_results
from kenning.errors import KenningError
from kenning.lsp import convert, guard
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)


@dataclass
class Answer:
    """What a search or similar request found, before the door writes it as JSON."""

    query: str
    merged: SearchResult
    #: results from at least one folder (else there is no mode or completeness to show)
    answered: bool
    took_ms: float

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        merged = self.merged
        out: dict[str, Any] = {
            "query": self.query,
            "results": convert.bounded([convert.hit_json(h, explain) for h in merged.results]),
            "took_ms": self.took_ms,
        }
        if self.answered:
            out["mode"] = merged.mode
            out["complete"] = round(merged.complete, 4)
        if merged.notes:
            out["notes"] = merged.notes
        return out


async def search(
    ls: KenningServer, obj: dict[str, Any], default_k: int | None = None, remote: bool = False
) -> Answer:
    """Search every folder and merge; shared by kenning.search and workspace/symbol.

    With ``remote``, the ``remote.endpoints`` are asked too (kenning.search
    only: workspace/symbol needs locations an editor can open)."""
    query = convert.get_query(obj)
    k = convert.get_k(obj, default_k or ls.settings.search.k)
    mode = convert.get_mode(obj, ls.settings.search.mode)
    # Checked here, before any folder is asked: with several folders a
    # per-folder error would only be logged, and the answer silently empty.
    langs = convert.get_languages(obj)
    globs = convert.get_globs(obj)
    started = time.perf_counter()
    indexes = await ls.ready_indexes()
    answers = await asyncio.gather(
        *(ls.in_query_thread(ix.search, query, k, mode, langs, globs) for ix in indexes),
        return_exceptions=True,
    )
    results: list[SearchResult] = []
    for index, answer in zip(indexes, answers, strict=True):
        if isinstance(answer, KenningError):
            if len(indexes) == 1:
                raise answer
            log.info("%s: %s", index.root, answer)
        elif isinstance(answer, BaseException):
            log.error("search in %s failed", index.root, exc_info=answer)
            if len(indexes) == 1:
                raise answer
        else:
            results.append(answer)
    remotes = remotes_of(ls) if remote else []
    if remotes:
        from kenning.engine.searchable import LocalSearchable, fan_out, overlay

        answered = [
            ix for ix, a in zip(indexes, answers, strict=True) if not isinstance(a, BaseException)
        ]
        got, notes = await ls.in_query_thread(
            fan_out,
            remotes,
            lambda s: s.search(query, k, mode, langs, globs),
            ls.settings.remote.timeout_ms / 1000,
        )
        merged = overlay(
            [(LocalSearchable(ix), r) for ix, r in zip(answered, results, strict=True)] + got,
            k,
            query,
        )
        merged.notes = sorted(set(merged.notes) | set(notes))
        return _answer(query, results, k, started, merged)
    return _answer(query, results, k, started)


# Endpoint clients, made again when the settings change; their last state is
# what kenning.status shows (status never calls an endpoint itself).
_REMOTES: weakref.WeakKeyDictionary[Any, tuple[str, list[Any]]] = weakref.WeakKeyDictionary()


def remotes_of(ls: KenningServer) -> list[Any]:
    remote = ls.settings.remote
    if not remote.endpoints:
        return []
    key = json.dumps(ls.settings.to_wire()["remote"], sort_keys=True)
    held = _REMOTES.get(ls)
    if held is None or held[0] != key:
        from kenning.engine.remote import from_settings

        held = (key, from_settings(remote))
        _REMOTES[ls] = held
    return held[1]


def _answer(
    query: str,
    results: list[SearchResult],
    k: int,
    started: float,
    merged: SearchResult | None = None,
) -> Answer:
    return Answer(
        query=query,
        merged=merged or merge_results(results, k, query),
        answered=bool(results),
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )


async def similar(ls: KenningServer, obj: dict[str, Any]) -> Answer:
    uri, line, end_line = convert.get_location(obj)
    k = convert.get_k(obj, ls.settings.search.k)
    index, path = await ls.index_for(uri)
    if ls.sync is not None:
        # The chunk under the cursor must be the one in the buffer, not a stale one.
        await ls.sync.flush_and_wait(uri)
    started = time.perf_counter()
    if ls.embedders.get_nowait() is None:
        await ls.in_query_thread(ls.embedders.load)
    result = await ls.in_query_thread(index.similar, path, line, k, end_line)
    return _answer(result.query, [result], k, started)


def register(server: KenningServer) -> None:
    @server.command("kenning.search")
    @guard.request("kenning.search")
    async def cmd_search(ls: KenningServer, *args: Any) -> dict[str, Any]:
        obj = convert.one_object("kenning.search", args)
        answer = await search(ls, obj, remote=True)
        return answer.to_json(explain=convert.get_flag(obj, "explain"))

    @server.command("kenning.similar")
    @guard.request("kenning.similar")
    async def cmd_similar(ls: KenningServer, *args: Any) -> dict[str, Any]:
        obj = convert.one_object("kenning.similar", args)
        answer = await similar(ls, obj)
        return answer.to_json(explain=convert.get_flag(obj, "explain"))

    @server.command("kenning.reindex")
    @guard.request("kenning.reindex")
    async def cmd_reindex(ls: KenningServer, *args: Any) -> dict[str, Any]:
        convert.one_object("kenning.reindex", args)
        if not ls.folders:
            raise KenningError("no workspace folder is open: nothing to index")
        started = time.perf_counter()
        task = ls.start_refresh("kenning: reindexing")
        ls.on_cancel(task.cancel)
        try:
            reports = await task
        finally:
            ls.done_with_request()
        if not reports:
            raise KenningError("indexing failed in every folder; see the log")
        return {
            "files": sum(r.files for r in reports),
            "chunks": sum(r.chunks for r in reports),
            "changed": sum(r.changed for r in reports),
            "embedded": sum(r.embedded for r in reports),
            "pending": sum(r.pending for r in reports),
            "cancelled": any(r.cancelled for r in reports),
            "took_s": round(time.perf_counter() - started, 3),
            # Another process was indexing (this server goes on when it is done).
            "indexing_by": next((r.indexing_by for r in reports if r.indexing_by), None),
        }
