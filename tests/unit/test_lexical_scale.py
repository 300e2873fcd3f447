"""Lexical search on an index past the budget: common words dropped, champion lists."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from kenning.engine import lexical
from kenning.engine.store import Store
from kenning.engine.types import Chunk

COMMON = ["parse", "value", "return", "config"]
RARE = ["zebra", "quokka", "narwhal"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """300 chunks; a budget of 30, so a word in more than 30 chunks is common."""
    monkeypatch.setattr(lexical, "LEXICAL_BUDGET", 30)
    rng = random.Random(5)
    s = Store(tmp_path / "i.db")
    for f in range(30):
        chunks = []
        for j in range(10):
            n = f * 10 + j
            words = [w for w in COMMON for _ in range(rng.randint(1, 4))]
            if n % 50 == 0:
                words.append(RARE[n // 50 % len(RARE)])
            rng.shuffle(words)
            words += ["filler"] * rng.randint(0, 30)  # lengths vary, so bm25 does
            text = f"def f{n}():\n    " + " ".join(words)
            chunks.append(
                Chunk(
                    f"m{f}.py",
                    j * 3 + 1,
                    j * 3 + 2,
                    "function",
                    f"f{n}",
                    "python" if f % 3 else "go",
                    text,
                    f"{f}-{j}",
                )
            )
        s.write_file(f"m{f}.py", 100, 1, str(f), "python", chunks)
    return s


def count_rankings(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = store.fts._rank

    def counting(terms, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(list(terms))
        return real(terms, *args, **kwargs)

    monkeypatch.setattr(store.fts, "_rank", counting)
    return calls


def test_a_rare_word_is_ranked_and_the_common_ones_dropped(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_rankings(store, monkeypatch)
    found = store.fts.search(["parse", "zebra", "config"], 10)
    assert calls == [["zebra"]]
    assert len(found) == 2 and all(score < 0 for _, score in found)


def test_only_common_words_rank_from_champion_lists(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lists long enough to hold every chunk: then the sum is bm25 itself.
    monkeypatch.setattr(lexical, "CHAMPIONS", 1000)
    exact = store.fts._rank(["parse", "config"], 20)
    calls = count_rankings(store, monkeypatch)
    got = store.fts.search(["parse", "config"], 20)
    assert calls == [["parse"], ["config"]]  # one list per word
    assert [cid for cid, _ in got] == [cid for cid, _ in exact]
    for (_, a), (_, b) in zip(got, exact, strict=True):
        assert a == pytest.approx(b, rel=1e-6)
    # The lists are reused: "parsing" has the stem of "parse".
    store.fts.search(["parsing", "config"], 20)
    store.fts.search(["value"], 5)
    assert calls == [["parse"], ["config"], ["value"]]


def test_short_champion_lists_still_find_the_strongest_chunks(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lexical, "CHAMPIONS", 20)
    got = store.fts.search(["parse", "value"], 10)
    exact = store.fts._rank(["parse", "value"], 10)
    assert len(got) == 10
    # The best chunk for the two words is near the top of each word's list.
    assert exact[0][0] in [cid for cid, _ in got[:3]]


def test_a_filter_that_empties_the_lists_ranks_everything(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lexical, "CHAMPIONS", 5)
    calls = count_rankings(store, monkeypatch)
    go_files = [
        fid for (fid,) in store.reader().execute("SELECT id FROM files WHERE path = 'm0.py'")
    ]
    got = store.fts.search(["parse"], 8, file_ids=go_files)
    assert len(got) == 8
    assert calls[-1] == ["parse"]  # the exact ranking, with the filter
    assert {r.path for r in store.chunk_rows([cid for cid, _ in got]).values()} == {"m0.py"}


def test_warming_computes_the_lists_of_common_words(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_rankings(store, monkeypatch)
    warmed = store.fts.warm(sample=100)
    assert warmed >= len(COMMON) + 1  # the four words, and "filler"
    ranked_while_warming = len(calls)
    store.fts.search(["config", "return"], 10)
    assert len(calls) == ranked_while_warming  # answered from the warm lists
    # A small index needs no lists.
    monkeypatch.setattr(lexical, "LEXICAL_BUDGET", 5000)
    store.fts._champions.clear()
    assert store.fts.warm() == 0


def test_the_index_warms_in_a_thread_and_leaves_no_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from kenning.engine.workspace import Index

    monkeypatch.setattr(lexical, "LEXICAL_BUDGET", 10)
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(40):
        (ws / f"m{i}.py").write_text(
            f"def load_config_{i}(path):\n    return parse(read(path), config=True)\n\n\n"
            f"def save_config_{i}(path, config):\n    write(path, dump(config))\n"
        )
    index = Index(ws)
    index.refresh(embed=False)
    readers = len(index.store._readers)
    got: list[int] = []
    worker = threading.Thread(target=lambda: got.append(index.warm_search()))
    worker.start()
    worker.join()
    assert got and got[0] >= 2  # "config" and "path" are in every chunk
    assert len(index.store._readers) == readers
    calls = count_rankings(index.store, monkeypatch)
    assert index.store.fts.search(["config", "path"], 5) and calls == []
    index.close()


def test_a_search_does_not_wait_for_a_write_to_commit(store: Store) -> None:
    # A search past the budget reads its caches under a lock; that lock was the
    # writer's, held through a whole write transaction (up to half a second of
    # files during an index run), so every search waited for the next commit.
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.write() as db:
            db.execute("INSERT INTO meta(key, value) VALUES ('held', '1')")
            writing.set()
            release.wait(10)

    answers: list[list[tuple[int, float]]] = []
    w = threading.Thread(target=writer)
    w.start()
    try:
        assert writing.wait(5)
        searcher = threading.Thread(target=lambda: answers.append(store.fts.search(["parse"], 5)))
        searcher.start()
        searcher.join(5)
        assert answers and len(answers[0]) == 5, "the search waited for the writer"
    finally:
        release.set()
        w.join()
