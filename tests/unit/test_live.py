"""LiveIndexes: roots kept fresh on one index thread while files change on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import FakeEmbedder, write_tree

from kenning.config import Settings
from kenning.engine.live import LiveIndexes
from kenning.errors import LocationError

FILES = {
    "src/a.py": "def alpha_function(x):\n    y = x + 1\n    return y * 2\n",
    "src/b.py": "def beta_function(x):\n    y = x - 1\n    return y * 3\n",
}


def until(check: Callable[[], bool], timeout: float = 10) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveIndexes]:
    keeper = LiveIndexes(Settings(), FakeEmbedder, home=tmp_path / "home")
    yield keeper
    keeper.close()


def symbols(live: LiveIndexes, root: Path, query: str, mode: str = "lexical") -> list[str | None]:
    index = live.indexes[root.resolve()]
    return [h.symbol for h in index.search(query, 5, mode).results]


def test_words_first_then_vectors_then_changes_on_disk(live: LiveIndexes, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ws", FILES)
    assert live.set_roots([root]) == []
    assert live.wait_words(10)
    assert "alpha_function" in symbols(live, root, "alpha_function")
    index = live.indexes[root.resolve()]
    until(lambda: index.store.counts()["embedded"] == index.store.counts()["chunks"])
    assert live.state()["phase"] == "ready" and live.state()["watching"]

    write_tree(root, {"src/c.py": "def gamma_zeppelin(x):\n    y = x * x\n    return y + 7\n"})
    took = until(lambda: "gamma_zeppelin" in symbols(live, root, "gamma_zeppelin"))
    assert took < 5
    until(lambda: index.store.counts()["embedded"] == index.store.counts()["chunks"])
    (root / "src/a.py").unlink()
    until(lambda: "alpha_function" not in symbols(live, root, "alpha_function"))


def test_requests_run_on_the_index_thread_before_embedding(
    live: LiveIndexes, tmp_path: Path
) -> None:
    root = write_tree(tmp_path / "ws", FILES)
    live.set_roots([root])
    ran_on = live.call(lambda: threading.current_thread().name).result(timeout=10)
    assert ran_on == "kenning-live"
    with pytest.raises(ZeroDivisionError):
        live.call(lambda: 1 / 0).result(timeout=10)
    # The thread goes on after a failed request.
    assert live.call(lambda: 42).result(timeout=10) == 42


def test_roots_switch_and_paths_resolve_to_the_innermost(live: LiveIndexes, tmp_path: Path) -> None:
    one = write_tree(tmp_path / "one", FILES)
    two = write_tree(tmp_path / "two", {"lib/t.py": "def tide_table(m):\n    return m * 2\n"})
    live.set_roots([one])
    index, rel = live.index_for("src/a.py")
    assert (index.root, rel) == (one.resolve(), "src/a.py")
    live.set_roots([two])
    assert live.roots == [two.resolve()]
    with pytest.raises(LocationError, match="outside the workspace"):
        live.index_for(one / "src/a.py")
    assert live.wait_words(10)
    assert "tide_table" in symbols(live, two, "tide_table")
    assert any("no such folder" in p for p in live.set_roots([tmp_path / "missing"]))


def test_a_model_that_fails_leaves_words(tmp_path: Path) -> None:
    def broken() -> FakeEmbedder:
        raise RuntimeError("no weights here")

    live = LiveIndexes(Settings(), broken, home=tmp_path / "home")
    try:
        root = write_tree(tmp_path / "ws", FILES)
        live.set_roots([root])
        assert live.wait_words(10)
        assert live.wait_model(10) is None and live.model_error == "no weights here"
        assert "beta_function" in symbols(live, root, "beta_function")
    finally:
        live.close()
