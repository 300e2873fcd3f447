"""The incremental index: what a refresh re-reads, re-chunks and re-embeds."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from tests.conftest import FakeEmbedder, write_tree

from kenning.engine.workspace import Index
from kenning.errors import LocationError, NeedsEmbeddingsError, UsageError, WorkspaceError

FILES = {
    "src/http.py": '''
        def fetch_with_retries(url, attempts=3):
            """Fetch a URL, retrying on connection errors."""
            for attempt in range(attempts):
                try:
                    return http_get(url)
                except ConnectionError:
                    continue
        ''',
    "src/config.ts": """
        export function loadJsonConfig(path: string) {
          return JSON.parse(readFileSync(path, "utf8"));
        }
        """,
    "src/sort.go": """
        package users

        func SortUsersByAge(users []User) {
            sort.Slice(users, func(i, j int) bool { return users[i].Age < users[j].Age })
        }
        """,
    "README.md": "# Demo\n\nA small project.\n",
}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ws", FILES)


def test_second_refresh_does_no_work_and_edits_touch_one_file(
    ws: Path, fake_embedder: FakeEmbedder
) -> None:
    index = Index(ws, embedder=fake_embedder)
    first = index.refresh()
    assert first.files == 4 and first.changed == 4 and first.embedded == first.chunks > 0
    second = index.refresh()
    assert (second.changed, second.embedded, second.cached, second.deleted) == (0, 0, 0, 0)

    path = ws / "src/http.py"
    path.write_text(path.read_text() + "\n\ndef unrelated_helper():\n    return 42\n")
    third = index.refresh()
    assert third.changed == 1
    # Only the new code is embedded: unchanged chunks keep their vectors.
    assert 1 <= third.embedded <= 2
    assert index.status()["pending"] == 0

    (ws / "src/sort.go").unlink()
    fourth = index.refresh()
    assert fourth.deleted == 1 and fourth.files == 3


def test_touch_without_content_change_is_not_rechunked(ws: Path) -> None:
    index = Index(ws)
    index.refresh(embed=False)
    path = ws / "src/config.ts"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = index.refresh(embed=False)
    assert report.changed == 0
    # The new stat is remembered: the file is not even read next time.
    assert index.store.file("src/config.ts").mtime_ns == path.stat().st_mtime_ns  # type: ignore[union-attr]


def test_lexical_search_splits_identifiers(ws: Path) -> None:
    index = Index(ws)
    index.refresh(embed=False)
    hits = index.search("json config", mode="lexical").results
    assert hits[0].path == "src/config.ts"
    hits = index.search("sort users age", mode="lexical").results
    assert hits[0].path == "src/sort.go"
    assert hits[0].explain["lexical_rank"] == 1


def test_filters_by_language_and_glob(ws: Path) -> None:
    index = Index(ws)
    index.refresh(embed=False)
    assert {
        h.path
        for h in index.search("users url config", k=10, mode="lexical", languages=["go"]).results
    } == {"src/sort.go"}
    got = {
        h.path
        for h in index.search("users url config", k=10, mode="lexical", globs=["**/*.py"]).results
    }
    assert got == {"src/http.py"}
    with pytest.raises(UsageError):
        index.search("x", mode="fuzzy")
    with pytest.raises(UsageError):
        index.search("   ", mode="lexical")


def test_hybrid_without_model_answers_lexically_and_says_so(ws: Path) -> None:
    index = Index(ws)
    index.refresh(embed=False)
    result = index.search("retry fetch url")
    assert result.results and result.results[0].path == "src/http.py"
    assert any("lexical" in n for n in result.notes)
    with pytest.raises(NeedsEmbeddingsError):
        index.search("retry", mode="vector")


def test_hybrid_answers_while_embeddings_pending(ws: Path, fake_embedder: FakeEmbedder) -> None:
    index = Index(ws, embedder=fake_embedder)
    index.refresh(embed=False)
    result = index.search("fetch url retries")
    assert result.complete == 0.0 and result.results[0].path == "src/http.py"
    index.embed_pending()
    result = index.search("fetch url retries")
    assert result.complete == 1.0
    assert result.results[0].explain["similarity"] is not None


def test_similar_leaves_out_the_chunk_itself(ws: Path, fake_embedder: FakeEmbedder) -> None:
    write_tree(
        ws,
        {
            "src/http2.py": '''
        def get_with_retries(url, tries=3):
            """Fetch a URL, retrying on connection errors."""
            for attempt in range(tries):
                try:
                    return http_get(url)
                except ConnectionError:
                    continue
        '''
        },
    )
    index = Index(ws, embedder=fake_embedder)
    index.refresh()
    result = index.similar("src/http.py", 2, k=3)
    assert result.results[0].path == "src/http2.py"
    assert all(h.path != "src/http.py" for h in result.results)


def test_shared_cache_means_a_copy_embeds_nothing(
    tmp_path: Path, fake_embedder: FakeEmbedder
) -> None:
    a = write_tree(tmp_path / "a", FILES)
    b = write_tree(tmp_path / "b", FILES)
    first = Index(a, embedder=fake_embedder).refresh()
    second = Index(b, embedder=fake_embedder).refresh()
    assert first.embedded > 0
    assert second.embedded == 0 and second.cached == first.embedded


def test_changing_the_model_reembeds_and_never_mixes(ws: Path, fake_embedder: FakeEmbedder) -> None:
    Index(ws, embedder=fake_embedder).refresh()

    class Other(FakeEmbedder):
        model_id = "fake-other"
        space = "fake-other"
        dims = 32

    index = Index(ws, embedder=Other())
    report = index.refresh()
    assert report.embedded == report.chunks
    assert index.vectors.model_id == "fake-other"
    assert index.search("fetch url").results


def test_buffers_are_indexed_instead_of_disk(ws: Path, fake_embedder: FakeEmbedder) -> None:
    index = Index(ws, embedder=fake_embedder)
    index.refresh()
    text = (
        ws / "src/http.py"
    ).read_text() + "\ndef frobnicate_widgets():\n    word = 'frobnicate'\n    return word\n"
    assert index.set_buffer(ws / "src/http.py", text)
    index.embed_pending()
    assert index.search("frobnicate widgets", mode="lexical").results[0].symbol in (
        None,
        "frobnicate_widgets",
    )
    # A refresh from disk leaves the open buffer alone.
    assert index.refresh().changed == 0
    assert index.search("frobnicate", mode="lexical").results
    index.drop_buffer(ws / "src/http.py")
    assert not index.search("frobnicate", mode="lexical").results


def test_locations_and_paths(ws: Path) -> None:
    index = Index(ws)
    index.refresh(embed=False)
    assert index.resolve_location("src/http.py:3") == ("src/http.py", 3)
    assert index.resolve_location(f"{ws}/src/http.py:1") == ("src/http.py", 1)
    for bad in ["src/http.py", "src/http.py:0", "src/http.py:x", "nope.py:1"]:
        with pytest.raises((UsageError, LocationError)):
            index.resolve_location(bad)
    with pytest.raises(LocationError, match="outside the workspace"):
        index.rel("/etc/passwd")
    with pytest.raises(WorkspaceError):
        Index(ws / "missing")


def test_status_reports_counts_and_latency(ws: Path, fake_embedder: FakeEmbedder) -> None:
    index = Index(ws, embedder=fake_embedder)
    index.refresh()
    index.search("fetch")
    index.close()
    status = Index(ws).status()
    assert status["files"] == 4 and status["pending"] == 0 and status["complete"] == 1.0
    assert status["model"] == "fake-bow-64"
    assert status["metrics"]["queries"] == 1 and status["metrics"]["query_ms_p95"] is not None
    assert status["metrics"]["index_bytes"] > 0


def test_embed_budget_leaves_the_rest_pending_for_the_next_run(
    ws: Path, fake_embedder: FakeEmbedder
) -> None:
    index = Index(ws, embedder=fake_embedder)
    report = index.refresh(embed_budget_s=0)
    assert report.embedded == 0 and report.pending == report.chunks > 0
    assert index.search("fetch url retries").results[0].path == "src/http.py"
    finished = index.refresh()
    assert finished.embedded == report.chunks and finished.pending == 0


def test_a_line_between_functions_means_the_nearest_one(tmp_path: Path) -> None:
    ws = write_tree(
        tmp_path / "gap",
        {
            "two.py": "def first():\n    x = 1\n    return x\n\n\n"
            "def second():\n    x = 2\n    return x\n"
        },
    )
    index = Index(ws)
    index.refresh(embed=False)
    # The blank gap (lines 4-5): the closer function.
    assert index.chunk_at("two.py", 4).symbol == "first"
    assert index.chunk_at("two.py", 5).symbol == "second"
    assert index.chunk_at("two.py", 1).symbol == "first"
    with pytest.raises(LocationError):
        index.chunk_at("two.py", 40)


def test_a_split_function_answers_once_with_its_whole_range(tmp_path: Path) -> None:
    steps = "\n".join(f"    total += reconcile_ledger_step({i})" for i in range(150))
    ws = write_tree(
        tmp_path / "big",
        {"ledger.py": f"def reconcile(entries):\n    total = 0\n{steps}\n    return total\n"},
    )
    index = Index(ws)
    index.refresh(embed=False)
    assert len(index.store.chunks_of("ledger.py")) >= 3
    hits = index.search("reconcile ledger step", mode="lexical").results
    assert [(h.symbol, h.start_line, h.end_line) for h in hits] == [("reconcile", 1, 153)]


def test_scores_are_evidence_on_a_fixed_scale(ws: Path, fake_embedder: FakeEmbedder) -> None:
    """The best result reads its own evidence, not 1.0; weak evidence says so."""
    from kenning.engine.search import WEAK_EVIDENCE, evidence

    index = Index(ws, embedder=fake_embedder)
    index.refresh()
    result = index.search("fetch url retrying connection errors")
    top = result.results[0]
    assert top.symbol == "fetch_with_retries"
    expected = evidence(top.explain["bm25"], top.explain["similarity"], 0.5)  # type: ignore[arg-type]
    assert top.score == pytest.approx(expected, abs=1e-3) and 0.0 < top.score < 1.0
    assert [h.score for h in result.results] == sorted(
        (h.score for h in result.results), reverse=True
    )
    weak = index.search("zebra")
    assert weak.results and weak.results[0].score < WEAK_EVIDENCE
    assert any("no strong match" in note for note in weak.notes)


def test_overlapping_line_windows_answer_once(tmp_path: Path) -> None:
    """Fallback windows share lines by design; a result list shows each line once."""
    lines = "\n".join(f"setting_{i} = quartermaster value {i}" for i in range(120))
    ws = write_tree(tmp_path / "cfg", {"settings.conf": lines + "\n"})
    index = Index(ws)
    index.refresh(embed=False)
    assert len(index.store.chunks_of("settings.conf")) >= 3
    hits = index.search("quartermaster value", mode="lexical").results
    spans = sorted((h.start_line, h.end_line) for h in hits)
    assert len(spans) >= 2
    assert all(b[0] > a[1] for a, b in itertools.pairwise(spans))
