"""Near-duplicates and patterns over one index: signatures kept in the store,
clusters with canonical examples, and a cluster saved as a workspace template.

The MinHash and clustering machinery is in :mod:`kenning.engine.dedup`; this
module feeds it from the index and turns its answers into locations.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kenning.engine import dedup
from kenning.engine.store import ChunkRow, Store
from kenning.engine.text import split_word
from kenning.engine.vectors import VectorIndex
from kenning.errors import UsageError

SIGNATURE_BATCH = 2000


def ensure_signatures(
    store: Store, cancel: threading.Event | None = None, paths: Sequence[str] | None = None
) -> int:
    """Compute the signatures the index lacks; returns how many were computed.

    ``paths`` limits the work to the chunks of those files (the language
    server calls this after each edit, where a scan of every chunk would be waste).
    """
    version = str(dedup.SIGNATURE_VERSION)
    if store.get_meta("signature_version") != version:
        with store.write() as db:
            db.execute("DELETE FROM signatures")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('signature_version', ?)", (version,))
    sql = (
        "SELECT c.id, c.text, c.language FROM chunks c WHERE NOT EXISTS"
        " (SELECT 1 FROM signatures s WHERE s.chunk_id = c.id)"
    )
    params: tuple[object, ...] = ()
    if paths is not None:
        if not paths:
            return 0
        sql += (
            " AND c.file_id IN (SELECT id FROM files WHERE path IN"
            " (SELECT value FROM json_each(?)))"
        )
        params = (json.dumps(list(paths)),)
    computed = 0
    while cancel is None or not cancel.is_set():
        rows = store.reader().execute(sql + " LIMIT ?", (*params, SIGNATURE_BATCH)).fetchall()
        if not rows:
            break
        items = []
        for chunk_id, text, language in rows:
            sig = dedup.minhash(str(text), str(language) if language is not None else None)
            items.append((chunk_id, dedup.signature_bytes(sig) if sig is not None else None))
        with store.write() as db:
            # INSERT OR IGNORE: a chunk replaced meanwhile simply has no row to fill.
            db.executemany(
                "INSERT OR IGNORE INTO signatures(chunk_id, sig)"
                " SELECT ?, ? WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?)",
                ((cid, sig, cid) for cid, sig in items),
            )
        computed += len(items)
    return computed


def load_signatures(store: Store) -> tuple[list[int], list[np.ndarray]]:
    rows = store.reader().execute(
        "SELECT chunk_id, sig FROM signatures WHERE sig IS NOT NULL ORDER BY chunk_id"
    )
    keys: list[int] = []
    sigs: list[np.ndarray] = []
    for chunk_id, sig in rows:
        keys.append(chunk_id)
        sigs.append(dedup.signature_from_bytes(sig))
    return keys, sigs


def signatures_by_file(
    store: Store, paths: Sequence[str] | None = None
) -> dict[str, list[tuple[int, np.ndarray]]]:
    """(chunk id, signature) of every signed chunk, by file (only ``paths`` if given).

    Files in ``paths`` with no signed chunk map to an empty list, so a caller
    keeping an in-memory index can tell "now has none" from "not asked".
    """
    sql = (
        "SELECT f.path, s.chunk_id, s.sig FROM signatures s JOIN chunks c ON c.id = s.chunk_id"
        " JOIN files f ON f.id = c.file_id WHERE s.sig IS NOT NULL"
    )
    params: tuple[object, ...] = ()
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    if paths is not None:
        sql += " AND f.path IN (SELECT value FROM json_each(?))"
        params = (json.dumps(list(paths)),)
        out = {p: [] for p in paths}
    for path, chunk_id, sig in store.reader().execute(sql + " ORDER BY s.chunk_id", params):
        out.setdefault(path, []).append((chunk_id, dedup.signature_from_bytes(sig)))
    return out


def aligned_vectors(
    vectors: VectorIndex, keys: Sequence[int], dims: int | None
) -> np.ndarray | None:
    """Rows of chunk vectors in ``keys`` order; zeros where a chunk has none yet."""
    if dims is None or not keys:
        return None
    found = {}
    for start in range(0, len(keys), 5000):
        found.update(vectors.vectors_of(keys[start : start + 5000]))
    if not found:
        return None
    matrix = np.zeros((len(keys), dims), dtype=np.float32)
    for i, key in enumerate(keys):
        vec = found.get(key)
        if vec is not None and len(vec) == dims:
            matrix[i] = vec
    return matrix


def _location(row: ChunkRow) -> dict[str, Any]:
    return {
        "path": row.path,
        "start_line": row.start_line,
        "end_line": row.end_line,
        "symbol": row.symbol,
    }


@dataclass
class PatternReport:
    clusters: list[dict[str, Any]]
    chunks_compared: int

    def to_json(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "chunks_compared": self.chunks_compared}


def find_patterns(
    store: Store,
    vectors: VectorIndex,
    threshold: float = 0.85,
    min_size: int = 2,
    limit: int | None = None,
) -> PatternReport:
    """Clusters of near-duplicate chunks across the index, largest first."""
    ensure_signatures(store)
    keys, sigs = load_signatures(store)
    dims_s = store.get_meta("vector_dims")
    matrix = aligned_vectors(vectors, keys, int(dims_s) if dims_s else None)
    clusters = dedup.find_clusters(keys, sigs, matrix, min_size=min_size, threshold=threshold)
    if limit is not None:
        clusters = clusters[:limit]
    wanted: set[int] = set()

    def collect(cluster: dedup.Cluster) -> None:
        wanted.add(cluster.canonical)
        wanted.update(m.key for m in cluster.members)
        for child in cluster.children:
            collect(child)

    for c in clusters:
        collect(c)
    rows = store.chunk_rows(sorted(wanted))
    out = []
    for n, cluster in enumerate(clusters, start=1):
        out.append(_cluster_json(cluster, f"c{n}", rows))
    return PatternReport(out, len(keys))


def _cluster_json(cluster: dedup.Cluster, cid: str, rows: dict[int, ChunkRow]) -> dict[str, Any]:
    canonical = rows[cluster.canonical]
    members = [
        dict(_location(rows[m.key]), similarity=round(m.similarity, 4))
        for m in cluster.members
        if m.key in rows
    ]
    languages = sorted(
        {canonical.language} | {rows[m.key].language for m in cluster.members if m.key in rows}
    )
    item: dict[str, Any] = {
        "id": cid,
        "size": cluster.size,
        "languages": languages,
        "canonical": _location(canonical),
        "members": members,
    }
    if cluster.children:
        item["children"] = [
            _cluster_json(child, f"{cid}.{i}", rows) for i, child in enumerate(cluster.children, 1)
        ]
    return item


def _find(clusters: list[dict[str, Any]], cid: str) -> dict[str, Any] | None:
    for c in clusters:
        if c["id"] == cid:
            return c
        found = _find(c.get("children", []), cid)
        if found:
            return found
    return None


def _snippet_escape(text: str) -> str:
    # LSP snippet syntax gives $, } and \ meaning; the canonical code is literal.
    return text.replace("\\", "\\\\").replace("$", "\\$").replace("}", "\\}")


def save_template(root: Path, store: Store, report: PatternReport, cluster_id: str) -> Path:
    """Write a cluster's canonical example as ``.kenning/templates/<id>.json``."""
    cluster = _find(report.clusters, cluster_id)
    if cluster is None:
        ids = ", ".join(c["id"] for c in report.clusters[:10]) or "none"
        raise UsageError(f"no cluster {cluster_id!r} (clusters: {ids})")
    canon = cluster["canonical"]
    row = store.chunk_at(canon["path"], canon["start_line"])
    if row is None:
        raise UsageError(f"cluster {cluster_id}: its canonical example is no longer indexed")
    name = canon["symbol"] or Path(canon["path"]).stem
    slug = re.sub(r"[^a-z0-9]+", "-", f"{row.language}-{name}".lower()).strip("-")
    words = [
        w
        for w in dict.fromkeys(
            p for part in re.findall(r"[A-Za-z]+", name) for p in split_word(part)
        )
        if len(w) > 2
    ]
    examples = []
    for member in cluster["members"][:3]:
        other = store.chunk_at(member["path"], member["start_line"])
        if other is not None:
            examples.append(other.text)
    template = {
        "id": slug,
        "name": name,
        "languages": [row.language],
        "description": f"Canonical example of {cluster['size']} near-duplicates "
        f"(from {canon['path']}:{canon['start_line']})",
        "keywords": words,
        "body": [*_snippet_escape(row.text).splitlines(), "$0"],
        "examples": examples,
    }
    dest = root / ".kenning" / "templates" / f"{slug}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(template, indent=2) + "\n")
    return dest
