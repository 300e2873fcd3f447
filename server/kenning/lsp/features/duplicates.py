"""Near-duplicate hints: "N similar chunks" diagnostics and ``kenning.duplicates``.

Off unless ``duplicates.diagnostics`` is on (checked live: turning it on or
off in the settings takes effect without a restart). When on, each workspace
folder keeps a :class:`~kenning.engine.dedup.DuplicateIndex` in memory, built
from the MinHash signatures persisted in the index
(:func:`~kenning.engine.patterns.ensure_signatures` on the index thread, as a
long job that edits interrupt) and kept in step with it by an index listener:
when a file's chunks are replaced, its old keys leave the LSH index and the
new ones come in. A candidate pair is confirmed with
:func:`~kenning.engine.dedup.similarity`: the estimated Jaccard of the
abstracted code, blended with the cosine of the stored chunk vectors when both
chunks have one, against ``duplicates.threshold``.

Nothing here runs on the event loop but the publishing: signatures on the
index thread, the hints of the open documents on the query pool. Each open
document gets hint-severity diagnostics, one per chunk that has near-duplicates,
with the other chunks as related information; they are republished after the
document's (or any file's) re-index and after embedding, and cleared when the
document closes or the setting turns off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lsprotocol import types as lsp

from kenning.engine import dedup
from kenning.engine.patterns import ensure_signatures, signatures_by_file
from kenning.engine.search import to_hit
from kenning.engine.store import ChunkRow
from kenning.engine.workspace import Index, IndexChange
from kenning.errors import KenningError, LocationError
from kenning.lsp import convert, guard
from kenning.lsp.server import Folder, KenningServer

log = logging.getLogger(__name__)

# How often the settings and the folders are looked at (turning hints on or
# off, a folder opened or reopened).
FOLLOW_S = 0.5
# A write touching more files than this (a checkout) rebuilds the folder's
# index as an interruptible job instead of updating it file by file.
MAX_UPDATE_PATHS = 300
MAX_RELATED = 20
SOURCE = "kenning"


def candidate_floor(threshold: float) -> float:
    """The lowest estimated Jaccard that can still reach ``threshold`` once blended
    with a cosine (at most 1): anything below is dropped before vectors are read."""
    cosine_share = 1.0 - dedup.JACCARD_WEIGHT
    return max(0.0, min(threshold, (threshold - cosine_share) / dedup.JACCARD_WEIGHT))


@dataclass
class Hint:
    """One chunk of a file and the near-duplicates of it elsewhere, best first."""

    chunk: ChunkRow
    others: list[tuple[ChunkRow, float]]


@dataclass
class BuildResult:
    cancelled: bool = False


@dataclass
class FolderHints:
    """The near-duplicate index of one folder's index. Thread-safe.

    Updated on the index thread (:meth:`build`, :meth:`update`); asked from any
    thread (:meth:`hints`).
    """

    index: Index
    threshold: float
    lsh: dedup.DuplicateIndex = field(init=False)
    keys: dict[str, list[int]] = field(default_factory=dict)
    ready: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    listener: Any = None

    def __post_init__(self) -> None:
        # A looser LSH band than the threshold, as find_clusters uses: a pair
        # whose vectors agree can qualify at a Jaccard below the threshold.
        self.lsh = dedup.DuplicateIndex(min(0.5, self.threshold))

    def build(self, cancel: threading.Event | None = None) -> bool:
        """Signatures for every chunk, then the LSH index; False if cancelled first."""
        ensure_signatures(self.index.store, cancel)
        if cancel is not None and cancel.is_set():
            return False
        by_file = signatures_by_file(self.index.store)
        with self.lock:
            self.lsh = dedup.DuplicateIndex(min(0.5, self.threshold))
            self.keys = {}
            for path, items in by_file.items():
                self._put(path, items)
            self.ready = True
        return True

    def update(self, paths: Iterable[str]) -> None:
        """Files whose chunks changed: drop their old keys, add the new ones."""
        paths = sorted(paths)
        if not paths:
            return
        ensure_signatures(self.index.store, paths=paths)
        by_file = signatures_by_file(self.index.store, paths)
        with self.lock:
            for path, items in by_file.items():
                self._put(path, items)

    def _put(self, path: str, items: list[tuple[int, np.ndarray]]) -> None:
        for key in self.keys.pop(path, []):
            self.lsh.remove(key)
        if items:
            self.keys[path] = [key for key, _ in items]
            for key, sig in items:
                self.lsh.add(key, sig)

    def __len__(self) -> int:
        return len(self.lsh)

    def hints(self, rel: str) -> list[Hint]:
        """The chunks of ``rel`` that have near-duplicates, in file order."""
        rows = self.index.store.chunks_of(rel)
        floor = candidate_floor(self.threshold)
        found: dict[int, list[tuple[int, float]]] = {}
        with self.lock:
            if not self.ready:
                return []
            for row in rows:
                sig = self.lsh.signature(row.id)
                if sig is None:
                    continue
                cands = [(k, j) for k, j in self.lsh.query(sig, exclude=row.id) if j >= floor]
                if cands:
                    found[row.id] = cands
        if not found:
            return []
        other_ids = sorted({k for cands in found.values() for k, _ in cands})
        others = self.index.store.chunk_rows(other_ids)
        vectors = self.index.vectors.vectors_of([*found, *other_ids])
        out: list[Hint] = []
        for row in rows:
            confirmed: list[tuple[ChunkRow, float]] = []
            mine = vectors.get(row.id)
            for key, jac in found.get(row.id, []):
                other = others.get(key)
                if other is None or _overlaps(row, other):
                    continue  # gone meanwhile, or a chunk nested in this one
                theirs = vectors.get(key)
                cosine = None
                if mine is not None and theirs is not None and len(mine) == len(theirs):
                    cosine = float(np.dot(mine, theirs))
                sim = dedup.similarity(jac, cosine)
                if sim >= self.threshold:
                    confirmed.append((other, sim))
            if confirmed:
                confirmed.sort(key=lambda o: (-o[1], o[0].path, o[0].start_line))
                out.append(Hint(row, confirmed))
        return out


def _overlaps(a: ChunkRow, b: ChunkRow) -> bool:
    return a.path == b.path and a.start_line <= b.end_line and b.start_line <= a.end_line


def _plural(n: int) -> str:
    return f"{n} similar chunk" + ("" if n == 1 else "s")


def hint_at(hints: list[Hint], line: int) -> Hint | None:
    """The innermost hint whose chunk holds ``line`` (1-based)."""
    holding = [h for h in hints if h.chunk.start_line <= line <= h.chunk.end_line]
    return min(holding, key=lambda h: h.chunk.end_line - h.chunk.start_line, default=None)


class DuplicateHints:
    """Per-folder near-duplicate indexes and the diagnostics of open documents."""

    def __init__(self, server: KenningServer) -> None:
        self.server = server
        self.states: dict[Path, FolderHints] = {}
        # What each document was last given, by URI (the event loop's own).
        self.hints: dict[str, list[Hint]] = {}
        self._sent: dict[str, list[lsp.Diagnostic]] = {}
        self._queued: set[Path] = set()
        self._queued_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.server.settings.duplicates.diagnostics)

    # -- following settings and folders (event loop) --------------------------------

    def start(self) -> None:
        try:
            self._task = asyncio.get_running_loop().create_task(self._follow())
        except RuntimeError:
            log.info("no event loop: duplicate hints are off")

    async def _follow(self) -> None:
        while not self.server.closing:
            try:
                self.check()
            except Exception:
                log.error("duplicate hints failed", exc_info=True)
            await asyncio.sleep(FOLLOW_S)

    def check(self) -> None:
        """Start, restart or stop the folders' duplicate indexes to match the settings."""
        if not self.enabled:
            if self.states or self._sent:
                self.turn_off()
            return
        threshold = self.server.settings.duplicates.threshold
        for root, folder in list(self.server.folders.items()):
            index = folder.index
            if index is None or folder.closed:
                continue
            state = self.states.get(root)
            if state is not None and state.index is index and state.threshold == threshold:
                continue
            if state is not None:
                state.index.remove_listener(state.listener)
            state = FolderHints(index, threshold)
            state.listener = lambda change, root=root, state=state: self._changed(
                root, state, change
            )
            self.states[root] = state
            index.add_listener(state.listener)
            self._build(folder)
        for root in [r for r in self.states if r not in self.server.folders]:
            gone = self.states.pop(root)
            gone.index.remove_listener(gone.listener)
            self._publish_folder(root, gone, {})

    def turn_off(self) -> None:
        for state in self.states.values():
            state.index.remove_listener(state.listener)
        self.states.clear()
        for uri in list(self._sent):
            self._send(uri, [])
        self._sent.clear()
        self.hints.clear()
        log.info("duplicate hints are off")

    def _build(self, folder: Folder) -> None:
        root = folder.root

        def run(cancel: threading.Event) -> BuildResult:
            # The state current when the job runs: a queued job with this key
            # is reused when the threshold changes meanwhile.
            state = self.states.get(root)
            if folder.closed or state is None or state.ready:
                return BuildResult()
            if not state.build(cancel):
                return BuildResult(cancelled=True)
            log.info("%s: duplicate hints ready (%d chunks compared)", root, len(state))
            self._refresh_open(root, state)
            return BuildResult()

        self.server.worker.submit_long(f"duplicates:{root}", run)

    # -- index changes (index thread) -------------------------------------------------

    def _changed(self, root: Path, state: FolderHints, change: IndexChange) -> None:
        if self.states.get(root) is not state or not state.ready:
            return  # an old state, or the build (still to come) reads everything
        if len(change.paths) > MAX_UPDATE_PATHS:
            state.ready = False
            folder = self.server.folders.get(root)
            if folder is not None:
                self.server.call_on_loop(self._build, folder)
            return
        if change.paths:
            state.update(change.paths)
        self._queue_refresh(root, state)

    def _queue_refresh(self, root: Path, state: FolderHints) -> None:
        # One pending refresh per folder: a burst of edits costs one recompute.
        with self._queued_lock:
            if root in self._queued:
                return
            self._queued.add(root)
        try:
            self.server.queries.submit(self._refresh_open, root, state)
        except RuntimeError:
            with self._queued_lock:
                self._queued.discard(root)  # shutting down

    def _refresh_open(self, root: Path, state: FolderHints) -> None:
        """The hints of every open document of the folder, then publish (any thread)."""
        with self._queued_lock:
            self._queued.discard(root)
        if self.states.get(root) is not state:
            return
        results: dict[str, list[Hint]] = {}
        for uri in list(self.server.workspace.text_documents):
            try:
                path = convert.uri_to_path(uri).resolve()
                rel = state.index.rel(path)
            except (KenningError, OSError):
                continue
            folder = self.server.folder_of(path)
            if folder is None or folder.root != root:
                continue  # in a nested folder of its own
            try:
                results[uri] = state.hints(rel)
            except Exception:
                log.warning("duplicate hints for %s failed", rel, exc_info=True)
        self.server.call_on_loop(self._publish_folder, root, state, results)

    # -- publishing (event loop) ------------------------------------------------------

    def _publish_folder(
        self, root: Path, state: FolderHints, results: dict[str, list[Hint]]
    ) -> None:
        current = self.states.get(root) is state and self.enabled
        for uri in [u for u in self._sent if u not in results and _under(u, root)]:
            self.hints.pop(uri, None)
            self._send(uri, [])
            self._sent.pop(uri, None)
        if not current:
            return
        for uri, hints in results.items():
            doc = self.server.workspace.text_documents.get(uri)
            if doc is None:
                continue  # closed meanwhile
            self.hints[uri] = hints
            diagnostics = [self._diagnostic(state, doc.lines, h) for h in hints]
            if self._sent.get(uri) == diagnostics:
                continue
            self._send(uri, diagnostics)
            self._sent[uri] = diagnostics

    def _diagnostic(self, state: FolderHints, lines: list[str], hint: Hint) -> lsp.Diagnostic:
        row = hint.chunk
        last = min(row.end_line, len(lines)) - 1
        end_char = 0
        if last >= 0:
            end_char = self.server.workspace.position_codec.client_num_units(
                lines[last].rstrip("\r\n")
            )
        best, best_sim = hint.others[0]
        where = f"{best.path}:{best.start_line}"
        return lsp.Diagnostic(
            range=lsp.Range(
                start=lsp.Position(line=max(0, row.start_line - 1), character=0),
                end=lsp.Position(line=max(0, last), character=end_char),
            ),
            message=f"{_plural(len(hint.others))} (closest: {where}, similarity {best_sim:.2f})",
            severity=lsp.DiagnosticSeverity.Hint,
            source=SOURCE,
            code="duplicate",
            related_information=[
                lsp.DiagnosticRelatedInformation(
                    location=lsp.Location(
                        uri=convert.path_to_uri(state.index.root / other.path),
                        range=lsp.Range(
                            start=lsp.Position(line=max(0, other.start_line - 1), character=0),
                            end=lsp.Position(line=other.end_line, character=0),
                        ),
                    ),
                    message=f"{other.symbol or other.kind} ({sim:.2f})",
                )
                for other, sim in hint.others[:MAX_RELATED]
            ],
        )

    def _send(self, uri: str, diagnostics: list[lsp.Diagnostic]) -> None:
        with contextlib.suppress(Exception):  # the client may be gone
            self.server.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
            )

    # -- code action and command ------------------------------------------------------

    def action(self, uri: str, position: lsp.Position) -> lsp.CodeAction | None:
        """ "Show N similar chunks" when the chunk at ``position`` has near-duplicates."""
        if not self.enabled:
            return None
        hint = hint_at(self.hints.get(uri, []), position.line + 1)
        if hint is None:
            return None
        title = f"Show {_plural(len(hint.others))}"
        arg = {"uri": uri, "position": {"line": position.line, "character": position.character}}
        return lsp.CodeAction(
            title=title,
            command=lsp.Command(title=title, command="kenning.duplicates", arguments=[arg]),
        )

    async def command(self, obj: dict[str, Any]) -> dict[str, Any]:
        uri, line, _ = convert.get_location(obj)
        if not self.enabled:
            raise KenningError(
                "near-duplicate detection is off: set kenning.duplicates.diagnostics to true"
            )
        index, path = await self.server.index_for(uri)
        folder = self.server.folder_of(path)
        state = self.states.get(folder.root) if folder else None
        if state is None or not state.ready or state.index is not index:
            raise KenningError("the near-duplicate index is still being built; try again shortly")
        if self.server.sync is not None:
            await self.server.sync.flush_and_wait(uri)
        rel = index.rel(path)
        hints = await self.server.in_query_thread(state.hints, rel)
        hint = hint_at(hints, line)
        if hint is None and index.store.chunk_at(rel, line) is None:
            raise LocationError(f"{rel}:{line}: no code at that line")
        results = []
        for other, sim in hint.others if hint else []:
            hit = to_hit(other, sim, {"similarity": round(sim, 4)})
            hit.root = str(index.root)
            results.append(convert.hit_json(hit))
        return {
            "results": convert.bounded(results),
            "threshold": state.threshold,
            "chunk": {"start_line": hint.chunk.start_line, "end_line": hint.chunk.end_line}
            if hint
            else None,
        }


def _under(uri: str, root: Path) -> bool:
    try:
        path = convert.uri_to_path(uri)
    except KenningError:
        return False
    return path == root or root in path.parents


def service(ls: KenningServer) -> DuplicateHints | None:
    found = getattr(ls, "duplicates", None)
    return found if isinstance(found, DuplicateHints) else None


def register(server: KenningServer) -> None:
    hints = DuplicateHints(server)
    server.duplicates = hints  # type: ignore[attr-defined]
    hints.start()

    @server.command("kenning.duplicates")
    @guard.request("kenning.duplicates")
    async def cmd_duplicates(ls: KenningServer, *args: Any) -> dict[str, Any]:
        return await hints.command(convert.one_object("kenning.duplicates", args))
