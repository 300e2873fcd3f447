"""The incremental index: what a refresh re-reads, re-chunks and re-embeds."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import FakeEmbedder, write_tree

from kenning.engine.search import named_part
from kenning.engine.text import query_words, split_case
from kenning.engine.types import ChunkRow
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


def test_language_filters_take_aliases_and_name_the_known_languages(tmp_path: Path) -> None:
    ws = write_tree(
        tmp_path / "langs",
        {
            **FILES,
            "web/view.tsx": "export function UsersView() {\n  return <div>users</div>;\n}\n",
        },
    )
    index = Index(ws)
    index.refresh(embed=False)

    def paths(langs: list[str]) -> set[str]:
        found = index.search("users config url", k=20, mode="lexical", languages=langs)
        return {h.path for h in found.results}

    assert paths(["golang"]) == paths(["Go"]) == {"src/sort.go"}
    assert paths(["py"]) == {"src/http.py"}
    # TypeScript means its .tsx files too; "tsx" alone means just those.
    assert paths(["ts"]) == {"src/config.ts", "web/view.tsx"}
    assert paths(["tsx"]) == {"web/view.tsx"}
    with pytest.raises(UsageError, match="unknown language 'notalang'") as err:
        index.search("users", mode="lexical", languages=["notalang"])
    assert "python" in str(err.value) and "typescript" in str(err.value)
    with pytest.raises(UsageError, match="did you mean python"):
        index.search("users", mode="lexical", languages=["pyhton"])


def test_a_glob_that_cannot_match_is_an_error_not_an_empty_answer(ws: Path) -> None:
    index = Index(ws)
    index.refresh(embed=False)
    with pytest.raises(UsageError, match=r"bad --glob glob '\['"):
        index.search("users", mode="lexical", globs=["["])
    found = index.search("users url config", k=10, mode="lexical", globs=["!src/*.go"])
    assert "src/sort.go" not in {h.path for h in found.results} and found.results


def test_one_bad_byte_costs_a_character_not_the_file(tmp_path: Path) -> None:
    ws = write_tree(
        tmp_path / "bytes",
        {
            "latin.py": b"def parse_header_line(line):\n    return line.split(':')\n\n\n"
            b"def cafe_menu():\n    return 'caf\xe9'\n\n\n"
            b"def merge_sorted_lists(a, b):\n    return sorted(a + b)\n",
            "nul.py": b"def with_stray_nul():\n    return '\x00'\n\n\n"
            b"def compute_checksum(data):\n    return sum(data) % 256\n",
            "blob.py": bytes(range(256)) * 8,
        },
    )
    index = Index(ws)
    report = index.refresh(embed=False)
    assert report.files == 2 and report.skip_reasons == {"binary": 1}
    for query, where in [
        ("merge sorted lists", "latin.py"),
        ("parse header line", "latin.py"),
        ("compute checksum", "nul.py"),
    ]:
        assert index.search(query, mode="lexical").results[0].path == where
    [cafe] = [c for c in index.store.chunks_of("latin.py") if "cafe_menu" in c.text]
    assert "caf\ufffd" in cafe.text
    assert index.status(skipped_files=True)["skipped_files"] == [
        {"path": "blob.py", "reason": "binary"}
    ]


def test_status_lists_every_skipped_file_with_its_reason(tmp_path: Path) -> None:
    ws = write_tree(
        tmp_path / "skips",
        {
            "src/a.py": "def a():\n    return 1\n",
            "node_modules/dep/index.js": "module.exports = 1\n",
            "package-lock.json": "{}\n",
            "logo.png": b"\x89PNG\r\n\x1a\n",
            "src/api_gen.py": "# @generated by protoc. DO NOT EDIT.\nx = 1\n",
            ".gitignore": "secret.txt\n",
            "secret.txt": "hunter2\n",
        },
    )
    index = Index(ws)
    index.refresh(embed=False)
    status = index.status(skipped_files=True)
    listed = {(e["path"], e["reason"]) for e in status["skipped_files"]}
    assert listed >= {
        ("node_modules/", "excluded"),  # the default exclude setting
        ("package-lock.json", "lockfile"),
        ("logo.png", "binary"),
        ("src/api_gen.py", "generated"),
        ("secret.txt", "ignored"),
    }
    # The list and the counts tell the same story.
    assert len(status["skipped_files"]) == status["skipped"]
    assert "skipped_files" not in index.status()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_that_cannot_be_read_is_listed_with_the_cause(tmp_path: Path) -> None:
    ws = write_tree(tmp_path / "perm", {"ok.py": "x = 1\n", "locked.py": "y = 2\n"})
    (ws / "locked.py").chmod(0)
    try:
        index = Index(ws)
        index.refresh(embed=False)
        [entry] = index.status(skipped_files=True)["skipped_files"]
        assert entry["path"] == "locked.py" and entry["reason"] == "error"
        assert "ermission" in entry["detail"]
    finally:
        (ws / "locked.py").chmod(0o644)


def test_a_file_gone_before_it_was_read_is_listed_with_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kenning.engine import prepare

    ws = write_tree(tmp_path / "race", {"ok.py": "x = 1\n", "gone.py": "y = 2\n"})
    real = prepare.prepare_file

    def vanish_first(rel: str, path: str, *rest: object) -> object:
        if rel == "gone.py":
            os.unlink(path)  # deleted between the scan and the read
        return real(rel, path, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare, "prepare_file", vanish_first)
    index = Index(ws)
    report = index.refresh(embed=False)
    assert report.files == 1 and report.errors
    [entry] = index.status(skipped_files=True)["skipped_files"]
    assert entry == {"path": "gone.py", "reason": "error", "detail": "No such file or directory"}
    index.refresh(embed=False)
    assert index.status(skipped_files=True)["skipped_files"] == []


def test_files_skipped_by_older_content_rules_are_read_again(tmp_path: Path) -> None:
    ws = write_tree(tmp_path / "old", {"latin.py": b"def cafe():\n    return 'caf\xe9'\n"})
    index = Index(ws)
    index.refresh(embed=False)
    # As an index written before bad bytes were decoded left it.
    st = (ws / "latin.py").stat()
    index.store.skip_file("latin.py", st.st_size, st.st_mtime_ns, "not_utf8")
    index.store.set_meta("content_rules", "1")
    assert index.store.file("latin.py").skip_reason == "not_utf8"  # type: ignore[union-attr]
    report = index.refresh(embed=False)
    assert report.changed == 1 and report.skip_reasons == {}
    assert index.search("cafe", mode="lexical").results[0].path == "latin.py"
    assert index.refresh(embed=False).changed == 0


def test_a_refresh_with_nothing_to_do_rewrites_no_skip_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = write_tree(
        tmp_path / "noop",
        {"a.py": "x = 1\n", "yarn.lock": "x\n", "b.bin": b"\x00" * 10, "c.py": b"\x00\x01" * 9},
    )
    index = Index(ws)
    index.refresh(embed=False)
    written: list[str] = []
    real = index.store.set_meta
    monkeypatch.setattr(
        index.store, "set_meta", lambda key, value: (written.append(key), real(key, value))
    )
    index.refresh(embed=False)
    assert written == ["last_refresh"]
    (ws / "d.lock").write_text("x\n")
    (ws / "Cargo.lock").write_text("x\n")
    index.refresh(embed=False)
    assert "skipped_paths" in written and "skip_reasons" in written


def test_status_says_the_device_the_index_was_embedded_on(
    ws: Path, fake_embedder: FakeEmbedder
) -> None:
    index = Index(ws)
    index.refresh(embed=False)
    planned = index.status()
    # Nothing embedded: what the next embedding would use, without loading a model.
    assert planned["embedding_source"] == "planned"
    assert planned["device"] in ("cpu", "cuda") and planned["model"] and planned["precision"]
    index.close()
    index = Index(ws, embedder=fake_embedder)
    index.refresh()
    assert index.status()["embedding_source"] == "loaded"
    index.close()
    # Another process, which never loads the model.
    status = Index(ws).status()
    assert (status["model"], status["device"], status["precision"]) == (
        "fake-bow-64",
        "cpu",
        "fp32",
    )
    assert status["embedding_source"] == "index"


def test_while_another_run_holds_the_index_a_refresh_does_nothing_and_says_who(
    ws: Path, fake_embedder: FakeEmbedder
) -> None:
    # Two Index objects on one root take the run lock apart, as two processes do.
    other = Index(ws, embedder=FakeEmbedder(), owner="kenning index")
    other.refresh(embed=False)
    index = Index(ws, embedder=fake_embedder, owner="language server")
    assert other.run_lock.acquire()
    report = index.refresh()
    assert report.indexing_by is not None
    assert report.indexing_by["pid"] == os.getpid()
    assert report.indexing_by["command"] == "kenning index"
    # Nothing was embedded; the counts are what the other run committed.
    assert (report.embedded, report.files, report.pending) == (0, 4, report.chunks)
    assert fake_embedder.texts_embedded == 0
    assert index.embed_pending().indexing_by is not None
    assert index.status()["indexing_by"]["command"] == "kenning index"
    result = index.search("fetch url retries", mode="lexical")
    assert result.results[0].symbol == "fetch_with_retries"
    assert any("kenning index" in note for note in result.notes)

    other.run_lock.release()
    report = index.refresh()
    assert report.indexing_by is None and report.pending == 0
    assert report.embedded == report.chunks
    assert index.status()["indexing_by"] is None
    notes = index.search("fetch url retries", mode="lexical").notes
    assert not any("kenning index" in note for note in notes), notes
    other.close()
    index.close()


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


def _config_workspace(tmp_path: Path) -> Path:
    # A long class whose body says "json" and "config" on every line, a short
    # function whose name says what a user asks for, and other code around them.
    fields = "\n".join(
        f"    json_config_{i} = load_option('config/{i}.json')  # json config file {i}"
        for i in range(40)
    )
    files = {
        "store.py": f'class ConfigStore:\n    """Every option."""\n{fields}\n',
        "loader.py": "import json\n\n\n"
        "def load_json_config(path):\n"
        "    with open(path) as fh:\n"
        "        return json.load(fh)\n",
    }
    for i in range(30):
        files[f"misc/m{i}.py"] = (
            f"def helper_{i}(items):\n    total = sum(items)\n    return total * {i}\n"
        )
    return write_tree(tmp_path / "app", files)


def test_a_definition_named_for_the_query_beats_a_long_type_that_mentions_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kenning.engine import search

    index = Index(_config_workspace(tmp_path))
    index.refresh(embed=False)
    hits = index.search("load json config file", mode="lexical").results
    assert hits[0].symbol == "load_json_config", [h.symbol for h in hits]
    assert hits[0].explain["prior"] > 1.0  # its name says what the query says
    long_type = next(h for h in hits if h.symbol == "ConfigStore")
    assert long_type.explain["prior"] < 1.0
    # Scores stay evidence on a fixed scale, best first, whatever the priors.
    assert all(0.0 <= h.score < 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Without the priors the words alone put the class first: they are what decides.
    for name, neutral in [
        ("TYPE_PRIOR", 1.0),
        ("SIZE_PRIOR_POWER", 0.0),
        ("NAME_BONUS", 0.0),
    ]:
        monkeypatch.setattr(search, name, neutral)
    plain = index.search("load json config file", mode="lexical").results
    assert plain[0].symbol == "ConfigStore", [h.symbol for h in plain]


def test_a_doc_comments_inflected_words_meet_the_name_they_describe() -> None:
    """A doc comment says "Parses the entries", the function is `parse_entry`: the
    name bonus compares stems, as the lexical index does."""
    from kenning.engine.lexical import stem
    from kenning.engine.search import NAME_BONUS, name_words, prior
    from kenning.engine.store import ChunkOutline

    assert name_words("Reader.parse_entry") == {"pars", "entri"}
    outline = ChunkOutline("function", 1, 1, 8, None, False, "Reader.parse_entry")
    words = {stem(w) for w in query_words("Parses the entries of a log file")}
    assert prior(outline, words) == pytest.approx(1.0 + NAME_BONUS)
    unrelated = {stem(w) for w in query_words("Writes the header of a log file")}
    assert prior(outline, unrelated) == 1.0


class _ConedEmbedder(FakeEmbedder):
    """Every vector leans the same way, as raw multilingual-e5's vectors of code do."""

    model_id = space = "fake-coned-64"

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        vecs = super().embed_documents(texts) * 0.3
        vecs[:, 0] += 1.0
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_an_index_says_when_its_model_crowds_vectors_into_a_narrow_cone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Letters only: the fake model reads words of a-z; each file its own few.
    words = ["".join(chr(97 + (i // 26**k) % 26) for k in range(3)) + "x" for i in range(360)]
    files = {
        f"pkg/m{i}.py": f"def {words[3 * i]}({words[3 * i + 1]}):\n"
        f"    {words[3 * i + 2]} = 1\n    return {words[3 * i + 2]}\n"
        for i in range(120)
    }
    plain = Index(write_tree(tmp_path / "plain", files), embedder=FakeEmbedder())
    plain.refresh()
    cone = plain.status()["metrics"]["vector_cone"]
    assert cone["space"] == "fake-bow-64" and cone["mean_length"] < 0.8
    assert "narrow cone" not in caplog.text
    coned = Index(write_tree(tmp_path / "coned", files), embedder=_ConedEmbedder())
    with caplog.at_level("WARNING"):
        coned.refresh()
    assert coned.status()["metrics"]["vector_cone"]["mean_length"] > 0.8
    assert caplog.text.count("narrow cone") == 1
    coned.refresh_paths([coned.root / "pkg/m1.py"])  # measured once per model, said once
    assert caplog.text.count("narrow cone") == 1


def test_each_chunk_is_embedded_with_its_name_and_a_question_finds_it_by_name(
    ws: Path, fake_embedder: FakeEmbedder
) -> None:
    index = Index(ws, embedder=fake_embedder)
    index.refresh()
    rows = index.store.reader().execute("SELECT name_vec FROM vectors").fetchall()
    assert rows and all(r[0] is not None and len(r[0]) == fake_embedder.dims for r in rows)
    # The fake model's vectors are bags of words: a question made of a
    # function's name words alone meets its name vector, not its code.
    target = next(r for r in index.store.chunks_of("src/http.py") if r.symbol)
    question = " ".join(split_case(target.symbol or "").split())
    hits = index.search(question, k=1, mode="vector").results
    assert (hits[0].path, hits[0].start_line) == (target.path, target.start_line)
    # A second workspace with the same files embeds no name again.
    embedded = fake_embedder.texts_embedded
    other = ws.parent / "copy"
    write_tree(other, {p.relative_to(ws).as_posix(): p.read_text() for p in ws.rglob("*.*")})
    Index(other, embedder=fake_embedder).refresh()
    assert fake_embedder.texts_embedded == embedded


def test_an_edit_keeps_the_name_vectors_of_the_chunks_it_did_not_change(
    ws: Path, fake_embedder: FakeEmbedder
) -> None:
    index = Index(ws, embedder=fake_embedder)
    index.refresh()

    def name_vectors() -> dict[tuple[int, str | None], bytes | None]:
        return {
            (r[0], r[1]): r[2]
            for r in index.store.reader().execute(
                "SELECT c.start_line, c.symbol, v.name_vec FROM chunks c"
                " JOIN vectors v ON v.chunk_id = c.id JOIN files f ON f.id = c.file_id"
                " WHERE f.path = 'src/http.py'"
            )
        }

    before = name_vectors()
    path = ws / "src/http.py"
    path.write_text(
        path.read_text() + "\n\ndef unrelated_helper():\n    x = 41\n    return x + 1\n"
    )
    report = index.refresh()
    assert 1 <= report.embedded <= 2  # the unchanged chunks kept their vectors
    after = name_vectors()
    assert all(v is not None for v in after.values())
    assert {k: v for k, v in after.items() if k in before} == before


STACK = """\
class Stack:
    def __init__(self):
        self._items = []
        self._count = 0

    def push(self, item):
        self._items.append(item)
        self._count += 1
        return item

    def is_empty(self):
        return not self._items
"""


def test_a_query_naming_a_joined_small_function_is_answered_by_it(tmp_path: Path) -> None:
    """`is_empty` is too small for a chunk of its own and shares `push`'s: a query
    that names it gets its name and its lines, not `push`'s (three of them: no
    answer is under three lines, so the blank line above it is taken in)."""
    index = Index(write_tree(tmp_path / "ws", {"stack.py": STACK}))
    index.refresh(embed=False)
    hit = index.search("check whether the stack is empty", mode="lexical").results[0]
    assert (hit.path, hit.symbol, hit.kind) == ("stack.py", "Stack.is_empty", "method")
    assert (hit.start_line, hit.end_line) == (10, 12)
    assert hit.snippet == "    def is_empty(self):\n        return not self._items"
    # The name itself, as a symbol picker (workspace/symbol) sends it.
    hit = index.search("is_empty").results[0]
    assert (hit.symbol, hit.start_line, hit.end_line) == ("Stack.is_empty", 10, 12)


def test_a_query_naming_the_chunks_own_function_keeps_its_whole_range(tmp_path: Path) -> None:
    index = Index(write_tree(tmp_path / "ws", {"stack.py": STACK}))
    index.refresh(embed=False)
    hit = index.search("push an item on the stack", mode="lexical").results[0]
    assert (hit.symbol, hit.start_line, hit.end_line) == ("Stack.push", 6, 12)
    assert hit.snippet.startswith("    def push(self, item):\n")


def test_a_part_answers_only_when_its_name_says_more_of_the_query() -> None:
    row = ChunkRow(
        "console.py", 10, 30, "method", "Console.push_theme", "python", "", "d", id=1,
        parts=(("Console.pop_theme", 25, 27, "method"), ("Console.pop_render_hook", 28, 30, "method")),
    )  # fmt: skip

    def named(query: str) -> str | None:
        part = named_part(row, query_words(query))
        return part[0] if part else None

    assert named("pop the theme off the stack") == "Console.pop_theme"
    assert named("pop a render hook") == "Console.pop_render_hook"
    # One word of a two-word name is not enough, and a tie keeps the chunk's own name.
    assert named("remove the theme") is None
    assert named("push or pop a theme") is None


def test_a_joined_small_function_before_its_neighbour_answers_from_its_own_first_line(
    tmp_path: Path,
) -> None:
    source = (
        "def tiny_helper_name(x):\n    return x + 1\n\n"
        "def compute_the_total(items):\n    total = 0\n    for i in items:\n"
        "        total += i\n    return total\n"
    )
    index = Index(write_tree(tmp_path / "ws", {"calc.py": source}))
    index.refresh(embed=False)
    hit = index.search("the tiny helper name", mode="lexical").results[0]
    assert (hit.symbol, hit.start_line, hit.end_line) == ("tiny_helper_name", 1, 3)
    assert hit.snippet == "def tiny_helper_name(x):\n    return x + 1"


def test_a_buffer_with_a_byte_order_mark_indexes_as_the_saved_file_does(tmp_path: Path) -> None:
    text = "\ufeffdef greet(name):\n    message = 'hi ' + name\n    return message\n"
    saved = Index(write_tree(tmp_path / "saved", {"a.py": text}), home=tmp_path / "h1")
    saved.refresh(embed=False)
    edited = Index(write_tree(tmp_path / "edited", {"b.py": "x = 1\n"}), home=tmp_path / "h2")
    edited.refresh(embed=False)
    assert edited.set_buffer("a.py", text)
    assert [c.text for c in edited.store.chunks_of("a.py")] == [
        c.text for c in saved.store.chunks_of("a.py")
    ]
    assert not edited.store.chunks_of("a.py")[0].text.startswith("\ufeff")
    assert edited.store.file("a.py").hash == saved.store.file("a.py").hash  # type: ignore[union-attr]
