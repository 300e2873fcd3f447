"""The embed stage: chunks still waiting for a vector -> vectors, through the shared cache.

Input: the pending chunks the persist stage left (``Store.pending_chunks``,
:class:`~kenning.engine.types.ChunkRow` records, newest first). Output:
:class:`Embedded`, how many were embedded by the model and how many came from
the cache. The model itself (loading, devices, batching) is ``embedder.py``'s.

Resumable: each batch's vectors are committed on their own, so a killed or
cancelled run leaves the rest pending for the next.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kenning.engine.embedder import Embedder, precision_of
from kenning.engine.text import embed_header, embed_input, embed_key, name_input, name_key
from kenning.engine.types import Cancelled, ChunkRow, Progress
from kenning.engine.vectors import EmbeddingCache, VectorIndex

log = logging.getLogger(__name__)

STAGE = "embed"
# Small enough that a cancel (a newer edit) waits at most a second or two.
EMBED_BATCH = 64
# A model whose vectors of code all lie in one narrow cone (any two chunks at
# cosine 0.8 or more) defeats the sign-bit coarse pass of vector search, which
# then misses the nearest neighbours: raw multilingual-e5-small lost 0.14 of
# vector MRR@10 to it (bench/README.md, "The model"). The length of the mean of
# a sample of the index's vectors measures the cone: 0.47 for the default
# model, 0.92 for raw e5. Above this, the index says so (a warning and status).
CONE_WARNING = 0.8
CONE_SAMPLE = 1000


@dataclass
class Embedded:
    """What the embed stage did: filled in as it goes, so a cancelled run still
    says what it did."""

    # Chunks the model embedded.
    embedded: int = 0
    # Chunks whose vector came from the shared cache.
    cached: int = 0


def embed_inputs(rows: list[ChunkRow]) -> list[tuple[str, str]]:
    """(cache key, text to embed) of each chunk: its code under its header (see
    text.embed_header), keyed by both."""
    out = []
    for row in rows:
        header = embed_header(row.path, row.language, row.kind, row.symbol)
        out.append((embed_key(header, row.digest), embed_input(header, row.text)))
    return out


def name_inputs(rows: list[ChunkRow]) -> list[tuple[str, str]]:
    """(cache key, text to embed) of each chunk's name vector (text.name_input)."""
    out = []
    for row in rows:
        text = name_input(row.path, row.symbol)
        out.append((name_key(text), text))
    return out


def embed_pending(
    vectors: VectorIndex,
    cache: EmbeddingCache,
    embedder: Embedder,
    out: Embedded,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
    root: Path | None = None,
) -> None:
    """Embed the index's pending chunks, batch by batch, until none is left, the
    ``deadline`` (a ``time.perf_counter()`` value) passes, or another process
    takes the index to another model; raises :class:`Cancelled` between batches."""
    store = vectors.store
    vectors.ensure_model(embedder.space, embedder.dims)
    total = vectors.pending_count()
    before = embedder.stats.snapshot()
    done = 0
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled
        if deadline is not None and time.perf_counter() > deadline:
            break
        rows = store.pending_chunks(EMBED_BATCH)
        if not rows:
            break
        batch = embed_inputs(rows)
        names = name_inputs(rows)
        code_keys = {d for d, _ in batch}
        digests = list(code_keys | {d for d, _ in names})
        width = 4 * embedder.dims
        # A cached vector of another length was made by another model that
        # went by the same id (a folder model replaced in place): embed again.
        found = {
            d: v for d, v in cache.get_many(embedder.space, digests).items() if len(v) == width
        }
        missing = {d: t for d, t in batch + names if d not in found}
        if missing:
            vecs = embedder.embed_documents(list(missing.values()))
            fresh = [(d, vecs[i].astype(np.float32).tobytes()) for i, d in enumerate(missing)]
            cache.put_many(embedder.space, fresh)
            found.update(fresh)
        ids = [row.id for row in rows]
        matrix = np.stack([np.frombuffer(found[d], dtype=np.float32) for d, _ in batch])
        name_matrix = np.stack([np.frombuffer(found[d], dtype=np.float32) for d, _ in names])
        written = vectors.write(ids, matrix, embedder.space, names=name_matrix)
        if not written and vectors.model_id != embedder.space:
            # Another process switched the index to another model meanwhile:
            # its vectors stay; taking the index back would only start a tug of war.
            log.info(
                "%s: another process re-embeds this index with %s; stopping",
                root or store.path,
                vectors.model_id,
            )
            break
        # Counted by the chunks' code; their names ride along.
        fresh_code = len(code_keys & missing.keys())
        out.embedded += fresh_code
        out.cached += len(batch) - fresh_code
        done += len(batch)
        if progress:
            progress(STAGE, done, max(total, done))
    if out.embedded:
        # The model ran, so its session (and device) exists: say in the
        # index what made its vectors, for `status` in a process that
        # never loads the model. Written once, not on every run.
        made_by = {
            "space": embedder.space,
            "model": embedder.model_id,
            "device": embedder.device,
            "precision": precision_of(embedder),
        }
        store.set_meta_if_changed("embedded_with", json.dumps(made_by, sort_keys=True))
    if out.embedded:
        check_cone(vectors, embedder.space, root)
    after = embedder.stats.snapshot()
    spent = float(after["seconds"]) - float(before["seconds"])
    if spent > 0:
        tokens = int(after["tokens"]) - int(before["tokens"])
        texts = int(after["texts"]) - int(before["texts"])
        store.set_meta(
            "embed_rate",
            json.dumps(
                {
                    "chunks_per_s": round(texts / spent, 1),
                    "tokens_per_s": round(tokens / spent, 1),
                    "chunks": texts,
                    "tokens": tokens,
                    "seconds": round(spent, 3),
                }
            ),
        )


def check_cone(vectors: VectorIndex, space: str, root: Path | None = None) -> float | None:
    """How narrow a cone the index's vectors of ``space`` lie in (the length of
    their mean, 0 to 1), measured once per model on a sample of up to
    CONE_SAMPLE vectors and kept in the index (``vector_cone``); warns above
    CONE_WARNING. None while fewer than 100 vectors exist."""
    store = vectors.store
    try:
        held = json.loads(store.get_meta("vector_cone") or "{}")
    except ValueError:
        held = {}
    if held.get("space") == space:
        # Measured again only while the sample can still grow much: an edit's
        # embed run must not read a thousand vectors each time.
        n = int(held.get("n", 0))
        if n >= CONE_SAMPLE or store.counts()["embedded"] < 2 * n:
            return float(held["mean_length"])
    ids = [
        r[0]
        for r in store.reader().execute(
            "SELECT id FROM chunks WHERE has_vector = 1 ORDER BY id LIMIT ?", (CONE_SAMPLE,)
        )
    ]
    if len(ids) < 100:
        return None
    found = vectors.vectors_of(ids)
    if not found:
        return None
    length = float(np.linalg.norm(np.stack(list(found.values())).mean(axis=0)))
    store.set_meta(
        "vector_cone",
        json.dumps({"space": space, "mean_length": round(length, 3), "n": len(found)}),
    )
    if length > CONE_WARNING and held.get("space") != space:
        log.warning(
            "%s: the vectors of %s lie in a narrow cone (mean length %.2f): vector search "
            "will miss close matches; a model card can take the mean direction out "
            "(see multilingual-e5-small-int8)",
            root or store.path,
            space,
            length,
        )
    return length
