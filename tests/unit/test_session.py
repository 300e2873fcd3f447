"""The engine session as a door with no editor uses it (the MCP server): folders
read words first, the model on a thread of its own, changes on disk, requests
ahead of index work, near-duplicates on demand."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import FakeEmbedder, write_tree

from kenning.engine import session as engine_session
from kenning.engine.duplicates import duplicates_once
from kenning.engine.session import Folder, Session
from kenning.engine.workspace import Index

FILES = {
    "src/a.py": "def alpha_function(x):\n    y = x + 1\n    return y * 2\n",
    "src/b.py": "def beta_function(x):\n    y = x - 1\n    return y * 3\n",
}
_FIXTURES = Path(__file__).parents[1] / "fixtures" / "near_duplicates"


def until(check: Callable[[], bool], timeout: float = 10) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    monkeypatch.setattr(engine_session, "EMBEDDER_FACTORY", lambda settings: FakeEmbedder())
    s = Session(owner="test")
    yield s
    s.close()


def open_folder(session: Session, root: Path) -> tuple[Folder, Index]:
    folder = session.add_folder(root)
    assert folder is not None
    words = session.refresh_job(folder, embed=False)
    session.load_model_soon()
    words.future.result(timeout=30)
    index = folder.index
    assert index is not None
    return folder, index


def symbols(index: Index, query: str, mode: str = "lexical") -> list[str | None]:
    return [h.symbol for h in index.search(query, 5, mode).results]


def embedded(index: Index) -> bool:
    counts = index.store.counts()
    return counts["embedded"] == counts["chunks"]


def test_words_first_then_vectors_then_changes_on_disk(session: Session, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ws", FILES)
    _, index = open_folder(session, root)
    assert "alpha_function" in symbols(index, "alpha_function")
    until(lambda: embedded(index))
    until(lambda: session.phase() == "ready")

    write_tree(root, {"src/c.py": "def gamma_zeppelin(x):\n    y = x * x\n    return y + 7\n"})
    session.paths_changed([root / "src/c.py"])
    assert session.settle(10)
    # Words at once, once the change is settled; vectors follow.
    assert "gamma_zeppelin" in symbols(index, "gamma_zeppelin")
    until(lambda: embedded(index))
    (root / "src/a.py").unlink()
    session.paths_changed([root / "src/a.py"])
    assert session.settle(10)
    assert "alpha_function" not in symbols(index, "alpha_function")
    # A folder removed: the list of paths cannot say which files went; the
    # folder is read again.
    shutil.rmtree(root / "src")
    session.paths_changed([root / "src"])
    assert session.settle(10)
    assert symbols(index, "beta_function gamma_zeppelin") == []


def test_requests_run_on_the_index_thread_and_a_failed_one_is_not_fatal(
    session: Session, tmp_path: Path
) -> None:
    open_folder(session, write_tree(tmp_path / "ws", FILES))
    ran_on = session.call(lambda: threading.current_thread().name).result(timeout=10)
    assert ran_on.startswith("kenning-index")
    with pytest.raises(ZeroDivisionError):
        session.call(lambda: 1 / 0).result(timeout=10)
    assert session.call(lambda: 42).result(timeout=10) == 42


def test_a_model_that_fails_leaves_words(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(settings: object) -> FakeEmbedder:
        raise RuntimeError("no weights here")

    monkeypatch.setattr(engine_session, "EMBEDDER_FACTORY", broken)
    s = Session(owner="test")
    try:
        _, index = open_folder(s, write_tree(tmp_path / "ws", FILES))
        assert s.wait_model(10) is None
        assert s.embedders.error == "RuntimeError: no weights here"
        assert "beta_function" in symbols(index, "beta_function")
    finally:
        s.close()


def test_duplicates_on_demand_answer_as_the_one_off_command(
    session: Session, tmp_path: Path
) -> None:
    files = {
        "a/profile.py": (_FIXTURES / "profile.py").read_text(),
        "b/billing.py": (_FIXTURES / "billing.py").read_text(),
        "c/stats.py": (_FIXTURES / "stats.py").read_text(),
    }
    root = write_tree(tmp_path / "dups", files)
    folder, index = open_folder(session, root)
    until(lambda: embedded(index))
    assert not session.settings.duplicates.diagnostics  # off by default: kept on request
    session.want_duplicates(folder).result(timeout=30)
    live = session.duplicates_of(folder, root / "a/profile.py", 6)
    once = duplicates_once(index, "a/profile.py", 6, session.settings.duplicates.threshold)
    assert [(h.path, h.symbol) for h in live.hits] == [("b/billing.py", "load_account")]
    assert [(h.path, h.start_line, h.score) for h in live.hits] == [
        (h.path, h.start_line, h.score) for h in once.hits
    ]
    assert session.duplicates_of(folder, root / "c/stats.py", 2).hits == []
