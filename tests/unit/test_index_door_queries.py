"""Index queries the MCP server asks for: near-duplicates at a location (the
answer ``kenning.duplicates`` and ``kenning duplicates`` give), stale files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import FakeEmbedder, write_tree

from kenning.engine.duplicates import duplicates_once
from kenning.engine.workspace import Index
from kenning.errors import LocationError

_FIXTURES = Path(__file__).parents[1] / "fixtures" / "near_duplicates"
FILES = {
    "a/profile.py": (_FIXTURES / "profile.py").read_text(),
    "b/billing.py": (_FIXTURES / "billing.py").read_text(),
    "c/stats.py": (_FIXTURES / "stats.py").read_text(),
}


@pytest.fixture
def index(tmp_path: Path, fake_embedder: FakeEmbedder) -> Index:
    ix = Index(write_tree(tmp_path / "ws", FILES), embedder=fake_embedder)
    ix.refresh()
    yield ix
    ix.close()


def duplicates(index: Index, rel: str, line: int, threshold: float | None = None) -> list:
    return duplicates_once(index, rel, line, threshold or index.settings.duplicates.threshold).hits


def test_duplicates_finds_the_renamed_copy_and_not_the_unrelated_function(index: Index) -> None:
    assert index.chunk_at("a/profile.py", 6).symbol == "fetch_profile"
    hits = duplicates(index, "a/profile.py", 6)
    assert [(h.path, h.symbol) for h in hits] == [("b/billing.py", "load_account")]
    assert hits[0].score >= index.settings.duplicates.threshold
    assert hits[0].start_line == 4
    assert duplicates(index, "c/stats.py", 2) == []


def test_duplicates_follows_the_threshold_and_the_index(index: Index) -> None:
    assert duplicates(index, "a/profile.py", 6, threshold=0.999) == []
    (index.root / "b/billing.py").unlink()
    index.refresh()
    assert duplicates(index, "a/profile.py", 6) == []
    with pytest.raises(LocationError):
        duplicates(index, "b/billing.py", 6)


def test_stale_names_files_changed_or_removed_after_indexing(index: Index) -> None:
    assert index.stale(["a/profile.py", "b/billing.py", "c/stats.py"]) == set()
    path = index.root / "a/profile.py"
    path.write_text("# a new first line\n" + path.read_text())
    # Same size, new mtime: still stale (an edit that kept the length).
    other = index.root / "c/stats.py"
    st = other.stat()
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    (index.root / "b/billing.py").unlink()
    assert index.stale(["a/profile.py", "b/billing.py", "c/stats.py"]) == {
        "a/profile.py",
        "b/billing.py",
        "c/stats.py",
    }
    index.refresh()
    assert index.stale(["a/profile.py", "c/stats.py"]) == set()


def test_similar_code_finds_the_function_a_snippet_resembles(index: Index) -> None:
    result = index.similar_code("def summarise(scores, cutoff):\n    kept = [s for s in scores]\n")
    assert result.results[0].symbol == "summarise_scores"
    with pytest.raises(Exception, match="empty"):
        index.similar_code("   \n")


def test_duplicates_of_many_copies_are_every_other_copy(
    tmp_path: Path, fake_embedder: FakeEmbedder
) -> None:
    body = (_FIXTURES / "profile.py").read_text()
    files = {f"copies/c{i}.py": body.replace("fetch_profile", f"fetch_{i}") for i in range(6)}
    ix = Index(write_tree(tmp_path / "many", files), embedder=fake_embedder)
    try:
        ix.refresh()
        every = duplicates(ix, "copies/c0.py", 6)
        assert sorted(h.path for h in every) == [f"copies/c{i}.py" for i in range(1, 6)]
    finally:
        ix.close()
