"""The in-memory coarse index follows every write, its own and other processes'."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kenning.engine.store import Store
from kenning.engine.types import Chunk
from kenning.engine.vectors import VectorIndex


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def add(
    store: Store, vectors: VectorIndex, path: str, vecs: list[np.ndarray], lang: str = "python"
) -> list[int]:
    chunks = [
        Chunk(path, i + 1, i + 1, "function", f"f{i}", lang, f"{path} {i}", f"{path}-{i}")
        for i in range(len(vecs))
    ]
    store.write_file(path, 1, 1, path, lang, chunks)
    ids = [c.id for c in store.chunks_of(path)]
    vectors.write(ids, np.stack(vecs))
    return ids


def test_coarse_index_follows_adds_deletes_and_other_writers(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = [unit(rng.standard_normal(64).tolist()) for _ in range(600)]
    store = Store(tmp_path / "i.db")
    vectors = VectorIndex(store)
    vectors.ensure_model("m", 64)
    ids = add(store, vectors, "a.py", base[:300])
    add(store, vectors, "b.go", base[300:], lang="go")
    # Exact answers despite the coarse pass: the query is a stored vector.
    assert vectors.nearest(base[10], 1)[0][0] == ids[10]
    assert vectors.size() == 600

    # Another process writes: this one sees it on its next query.
    other = Store(tmp_path / "i.db")
    other_vectors = VectorIndex(other)
    target = unit(rng.standard_normal(64).tolist())
    new_id = add(other, other_vectors, "c.py", [target])[0]
    assert vectors.nearest(target, 1)[0] == (new_id, vectors.nearest(target, 1)[0][1])
    other.delete_files(["a.py"])
    assert vectors.size() == 301
    assert all(cid not in ids for cid, _ in vectors.nearest(base[10], 20))

    # Filters by language and by file.
    assert {
        store.chunk_rows([cid])[cid].language
        for cid, _ in vectors.nearest(target, 5, languages=["go"])
    } == {"go"}

    # A new model drops every vector at once.
    vectors.ensure_model("m2", 64)
    assert vectors.size() == 0 and vectors.pending_count() == 301


def test_unchanged_chunks_keep_their_vectors_through_a_rewrite(tmp_path: Path) -> None:
    store = Store(tmp_path / "i.db")
    vectors = VectorIndex(store)
    vectors.ensure_model("m", 4)
    add(store, vectors, "a.py", [unit([1, 0, 0, 0]), unit([0, 1, 0, 0])])
    chunks = [
        Chunk("a.py", 1, 1, "function", "f0", "python", "a.py 0", "a.py-0"),
        Chunk("a.py", 2, 2, "function", "g", "python", "new", "new-digest"),
    ]
    store.write_file("a.py", 2, 2, "h2", "python", chunks)
    assert vectors.pending_count() == 1
    kept = store.chunks_of("a.py")[0]
    assert vectors.nearest(unit([1, 0, 0, 0]), 1)[0][0] == kept.id
