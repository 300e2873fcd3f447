"""The in-memory coarse index follows every write, its own and other processes'."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import FakeEmbedder, write_tree

from kenning.engine.store import Store
from kenning.engine.types import Chunk
from kenning.engine.vectors import NAME_MARGIN, EmbeddingCache, VectorIndex
from kenning.engine.workspace import Index


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


# -- state that starts empty and grows ------------------------------------------


def test_a_search_before_the_first_vector_does_not_break_later_ones(tmp_path: Path) -> None:
    """The language server's first search often comes before the first vector.

    The coarse index it built then held no rows; with the real model's 384
    dimensions (six 64-bit words of sign bits) the first vectors to arrive
    could not be appended to it, and every later search failed.
    """
    ws = write_tree(
        tmp_path / "ws",
        {
            "a.py": "def parse_config(path):\n    return open(path).read()\n",
            "b.py": "def send_email(to, body):\n    smtp.send(to, body)\n",
        },
    )
    index = Index(ws, embedder=FakeEmbedder(dims=384))
    index.refresh(embed_budget_s=0)  # the model is set, no vector written yet
    first = index.search("parse config")
    assert [h.path for h in first.results][:1] == ["a.py"] and first.complete == 0.0
    assert index.similar("a.py", 1).results == []
    index.embed_pending()
    for _ in range(2):
        result = index.search("parse config")
        assert result.complete == 1.0
        assert result.results[0].path == "a.py"
        assert result.results[0].explain["similarity"] is not None
    assert [h.path for h in index.similar("a.py", 1).results] == ["b.py"]


def test_a_query_of_another_model_finds_nothing_rather_than_failing(tmp_path: Path) -> None:
    store = Store(tmp_path / "i.db")
    vectors = VectorIndex(store)
    vectors.ensure_model("m", 16)
    add(store, vectors, "a.py", [unit([1.0] * 16)])
    assert vectors.nearest(unit([1.0] * 16), 1)[0][1] > 0.99
    assert vectors.nearest(unit([1.0] * 384), 1) == []
    assert vectors.nearest(unit([1.0] * 12), 1) == []  # same sign-bit width, other dims


def test_a_write_for_a_model_the_index_left_is_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "i.db")
    vectors = VectorIndex(store)
    vectors.ensure_model("m", 4)
    store.write_file(
        "a.py", 1, 1, "h", "python", [Chunk("a.py", 1, 1, "function", "f", "python", "t", "d")]
    )
    ids = [c.id for c in store.chunks_of("a.py")]
    # Another process switched the index to a 384-dimension model meanwhile.
    VectorIndex(Store(tmp_path / "i.db")).ensure_model("other", 384)
    assert vectors.write(ids, np.stack([unit([1, 0, 0, 0])]), space="m") == 0
    assert vectors.size() == 0 and vectors.pending_count() == 1
    assert vectors.write(ids, np.stack([unit([1.0] * 384)]), space="other") == 1
    assert vectors.size() == 1


def test_cached_vectors_of_another_length_are_embedded_again(tmp_path: Path) -> None:
    ws = write_tree(tmp_path / "ws", {"a.py": "def parse_config(path):\n    return path\n"})
    small = FakeEmbedder(dims=32)
    Index(ws, embedder=small).refresh()
    # A folder model replaced in place keeps its id but not its dimensions.
    big = FakeEmbedder(dims=48)
    big.model_id = big.space = small.space
    index = Index(
        write_tree(tmp_path / "copy", {"a.py": "def parse_config(path):\n    return path\n"}),
        embedder=big,
    )
    report = index.refresh()
    assert report.embedded == report.chunks and report.cached == 0
    assert index.search("parse config").results[0].explain["similarity"] is not None


def test_search_during_a_model_change_answers_from_words_until_reembedded(tmp_path: Path) -> None:
    ws = write_tree(tmp_path / "ws", {"a.py": "def parse_config(path):\n    return path\n"})
    Index(ws, embedder=FakeEmbedder()).refresh()
    # Same dimensions, another space: int8 and fp32 vectors of one model are like this.
    other = FakeEmbedder()
    other.model_id = other.space = "fake-other-64"
    index = Index(ws, embedder=other)
    before = index.search("parse config")
    assert before.results[0].path == "a.py"
    assert before.results[0].explain["similarity"] is None
    assert any("fake-bow-64" in n for n in before.notes)
    index.refresh()
    after = index.search("parse config")
    assert after.results[0].explain["similarity"] is not None and not after.notes


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5), st.integers(0, 4)),
        st.tuples(st.just("delete"), st.integers(0, 5), st.just(0)),
        st.tuples(st.just("search"), st.integers(0, 10**6), st.just(0)),
        st.tuples(st.just("model"), st.sampled_from([1, 7, 8, 9, 63, 64, 65, 384]), st.just(0)),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first_dims=st.sampled_from([1, 8, 65, 384]), ops=_OPS)
def test_nearest_is_exact_at_every_size_and_across_model_changes(
    tmp_path_factory: pytest.TempPathFactory, first_dims: int, ops: list[tuple[str, int, int]]
) -> None:
    """From zero rows on, through adds, deletes and changes of model and
    dimensions, with searches in between (each loads the in-memory index at
    that size), the answer equals a brute-force one."""
    store = Store(tmp_path_factory.mktemp("v") / "i.db")
    vectors = VectorIndex(store)
    dims, model = first_dims, 0
    vectors.ensure_model(f"m{model}", dims)
    rng = np.random.default_rng(7)
    truth: dict[int, np.ndarray] = {}  # chunk id -> vector, for the current model
    files: dict[str, list[int]] = {}

    def check(query: np.ndarray) -> None:
        want = sorted(truth, key=lambda cid: (-float(truth[cid] @ query), cid))[:3]
        got = vectors.nearest(query, 3)
        assert len(got) == len(want)
        sims = {cid: float(truth[cid] @ query) for cid in truth}
        for (cid, sim), expected in zip(got, want, strict=True):
            assert abs(sim - sims[cid]) < 1e-4
            assert abs(sims[cid] - sims[expected]) < 1e-4  # ties may come in any order

    for step, (op, a, b) in enumerate(ops):
        if op == "add":
            path = f"f{a}.py"
            vecs = [unit(rng.standard_normal(dims).tolist()) for _ in range(b + 1)]
            for cid in files.pop(path, []):
                truth.pop(cid, None)
            chunks = [
                Chunk(
                    path,
                    i + 1,
                    i + 1,
                    "function",
                    None,
                    "python",
                    f"{path} {i} {model}",
                    f"{path}-{i}-{step}",
                )
                for i in range(len(vecs))
            ]
            store.write_file(path, 1, 1, f"{path}{len(truth)}", "python", chunks)
            ids = [c.id for c in store.chunks_of(path)]
            assert vectors.write(ids, np.stack(vecs), space=f"m{model}") == len(ids)
            files[path] = ids
            truth.update(zip(ids, vecs, strict=True))
        elif op == "delete":
            path = f"f{a}.py"
            store.delete_files([path])
            for cid in files.pop(path, []):
                truth.pop(cid, None)
        elif op == "model":
            model += 1
            dims = a
            vectors.ensure_model(f"m{model}", dims)
            truth.clear()
            files.clear()
            for path in list(store.files()):
                store.delete_files([path])
        check(unit(np.random.default_rng(a).standard_normal(dims).tolist()))
        assert vectors.size() == len(truth)


def test_a_cache_damaged_past_what_its_header_shows_is_repaired_when_read(
    kenning_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = kenning_home / "cache" / "embeddings.db"
    cache = EmbeddingCache(path)
    cache.put_many("m", [(f"d{i}", bytes(1536)) for i in range(200)])
    cache.close()
    # Cut in half, with a header that gives no page count to check the size by:
    # only reading the rows in the missing half can tell.
    data = bytearray(path.read_bytes())
    data[92:96] = (int.from_bytes(data[24:28], "big") + 1).to_bytes(4, "big")
    path.write_bytes(bytes(data[: len(data) // 2]))
    cache = EmbeddingCache(path)
    assert not cache.rebuilt
    with caplog.at_level(logging.WARNING, logger="kenning"):
        assert cache.get_many("m", [f"d{i}" for i in range(200)]) == {}
    assert cache.rebuilt and "the embedding cache is damaged" in caplog.text
    cache.put_many("m", [("new", bytes(8))])
    assert cache.get_many("m", ["new"]) == {"new": bytes(8)} and cache.count() == 1
    assert list(path.parent.glob("embeddings.db.corrupt-*"))


def test_a_name_vector_finds_its_chunk_for_a_question_in_words_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = Store(tmp_path / "i.db")
    vectors = VectorIndex(store)
    vectors.ensure_model("m", 64)
    code = [unit(rng.standard_normal(64).tolist()) for _ in range(600)]
    names = [unit(rng.standard_normal(64).tolist()) for _ in range(600)]
    chunks = [
        Chunk("a.py", i + 1, i + 1, "function", f"f{i}", "python", f"f{i}", f"d{i}")
        for i in range(600)
    ]
    store.write_file("a.py", 1, 1, "a.py", "python", chunks)
    ids = [c.id for c in store.chunks_of("a.py")]
    # The last 100 chunks were written without names (a cluster shard does so).
    vectors.write(ids[:500], np.stack(code[:500]), names=np.stack(names[:500]))
    vectors.write(ids[500:], np.stack(code[500:]))
    # A query close to chunk 42's name and to nothing's code: past the coarse
    # pass's 256 candidates of code, the name's own candidates bring it.
    query = unit((names[42] + 0.2 * unit(rng.standard_normal(64).tolist())).tolist())
    best, sim = vectors.nearest(query, 1, names=True)[0]
    assert best == ids[42]
    exact = float(np.dot(query, names[42]))
    assert abs(sim - (exact - NAME_MARGIN)) < 0.01  # int8 names: within rounding
    # Code compared with code leaves names out.
    assert vectors.nearest(query, 1)[0][0] == ids[int(np.argmax(np.stack(code) @ query))]
    # A chunk is still found by its code when its name is far or missing.
    assert vectors.nearest(code[550], 1, names=True)[0] == (ids[550], pytest.approx(1.0, abs=1e-4))
    assert vectors.nearest(code[7], 1, names=True)[0][0] == ids[7]
