"""Near-duplicates of one chunk, kept live: the per-folder LSH index behind
``kenning.duplicates``, its diagnostics and ``kenning duplicates FILE:LINE``.

A :class:`FolderHints` is built from the MinHash signatures persisted in the
index (:func:`~kenning.engine.patterns.ensure_signatures`, on the index
thread, as a long job that edits interrupt) and kept in step with it by an
index listener: when a file's chunks are replaced, its old keys leave the LSH
index and the new ones come in. A candidate pair is confirmed with
:func:`~kenning.engine.dedup.similarity`: the estimated Jaccard of the
abstracted code, blended with the cosine of the stored chunk vectors when both
chunks have one, against ``duplicates.threshold``. The live session
(:mod:`kenning.engine.session`) owns one per folder while the setting is on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kenning.engine import dedup
from kenning.engine.patterns import ensure_signatures, signatures_by_file
from kenning.engine.search import SearchHit, to_hit
from kenning.engine.store import ChunkRow
from kenning.engine.workspace import Index
from kenning.errors import LocationError

# A write touching more files than this (a checkout) rebuilds the folder's
# index as an interruptible job instead of updating it file by file.
MAX_UPDATE_PATHS = 300


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


def hint_at(hints: list[Hint], line: int) -> Hint | None:
    """The innermost hint whose chunk holds ``line`` (1-based)."""
    holding = [h for h in hints if h.chunk.start_line <= line <= h.chunk.end_line]
    return min(holding, key=lambda h: h.chunk.end_line - h.chunk.start_line, default=None)


@dataclass
class Duplicates:
    """The answer for one chunk: its near-duplicates best first, as search hits."""

    hits: list[SearchHit]
    threshold: float
    # (start_line, end_line) of the chunk asked about, None when it has no near-duplicate.
    chunk: tuple[int, int] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "results": [h.to_json() for h in self.hits],
            "threshold": self.threshold,
            "chunk": {"start_line": self.chunk[0], "end_line": self.chunk[1]}
            if self.chunk
            else None,
        }


def duplicates_at(state: FolderHints, rel: str, line: int) -> Duplicates:
    """The near-duplicates of the chunk of ``rel`` that holds ``line`` (1-based)."""
    hint = hint_at(state.hints(rel), line)
    if hint is None and state.index.store.chunk_at(rel, line) is None:
        raise LocationError(f"{rel}:{line}: no code at that line")
    hits = []
    for other, sim in hint.others if hint else []:
        hit = to_hit(other, sim, {"similarity": round(sim, 4)})
        hit.root = str(state.index.root)
        hits.append(hit)
    return Duplicates(
        hits,
        state.threshold,
        (hint.chunk.start_line, hint.chunk.end_line) if hint else None,
    )


def duplicates_once(
    index: Index, rel: str, line: int, threshold: float, cancel: threading.Event | None = None
) -> Duplicates:
    """What ``kenning.duplicates`` answers for ``rel``:``line``, from an index opened
    for one command (``kenning duplicates``): the same state, built once."""
    state = FolderHints(index, threshold)
    state.build(cancel)
    return duplicates_at(state, rel, line)
