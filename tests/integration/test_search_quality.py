"""Search quality with the real model, on two corpora.

The corpus in tests/fixtures/quality/corpus is a small invoicing application in
six languages, written for this test (not kenning's own code); queries.json
holds questions a developer would type, each with the definitions that answer
it. A result is a hit when its line range holds an expected definition line, so
the measure works for any chunker. ``bench/bench_quality.py`` reports the same
numbers per query class and compares fusion variants.

The second set is real code nobody wrote for kenning: modules of the running
Python's standard library, with docstrings as queries and those docstrings cut
from a copy (see stdlib_corpus.py). It holds the floors, and the rules every
answer keeps: one result per definition, no fragments.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.stdlib_corpus import Target
from tests.integration.stdlib_corpus import build as build_stdlib_corpus

from kenning.engine import chunking
from kenning.engine.embedder import load_embedder
from kenning.engine.types import SearchHit
from kenning.engine.workspace import Index

pytestmark = pytest.mark.model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "quality"
K = 10
MODES = ("lexical", "vector", "hybrid")


def load_queries() -> list[dict[str, Any]]:
    return json.loads((FIXTURE / "queries.json").read_text(encoding="utf-8"))["queries"]


def first_hit_rank(index: Index, query: dict[str, Any], mode: str) -> int:
    """1-based rank of the first result holding an expected line; 0 when none is in the top K."""
    results = index.search(query["query"], k=K, mode=mode).results
    for rank, hit in enumerate(results, start=1):
        for want in query["expected"]:
            if hit.path == want["path"] and hit.start_line <= want["line"] <= hit.end_line:
                return rank
    return 0


def mrr(ranks: list[int]) -> float:
    return sum(1.0 / r for r in ranks if r) / len(ranks)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    # Module-scoped: embedding the corpus once takes most of this test's time.
    # The autouse KENNING_HOME fixture is per test, so the home is passed here.
    base = tmp_path_factory.mktemp("quality")
    root = base / "corpus"
    shutil.copytree(FIXTURE / "corpus", root)
    idx = Index(root, embedder=load_embedder(), home=base / "home")
    report = idx.refresh()
    assert report.errors == []
    assert report.pending == 0
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def ranks(index: Index) -> dict[str, list[int]]:
    queries = load_queries()
    return {mode: [first_hit_rank(index, q, mode) for q in queries] for mode in MODES}


def test_fixture_lines_point_at_their_definitions() -> None:
    """Each expected line names its symbol, so an edit to the corpus cannot silently shift it."""
    queries = load_queries()
    assert len(queries) >= 40
    assert {q["class"] for q in queries} == {"lexical", "semantic", "mixed"}
    languages = set()
    for q in queries:
        assert q["expected"], q["query"]
        for want in q["expected"]:
            path = FIXTURE / "corpus" / want["path"]
            line = path.read_text(encoding="utf-8").splitlines()[want["line"] - 1]
            leaf = want["symbol"].rsplit(".", 1)[-1]
            assert re.search(rf"\b{re.escape(leaf)}", line), (want, line)
            languages.add(path.suffix)
    assert len(languages) >= 6


def test_hybrid_beats_lexical_and_vector_on_mrr(
    ranks: dict[str, list[int]], record_property: pytest.RecordProperty
) -> None:
    scores = {mode: round(mrr(r), 4) for mode, r in ranks.items()}
    for mode, score in scores.items():
        record_property(f"mrr_at_{K}_{mode}", score)
    print(f"\nMRR@{K} over {len(ranks['hybrid'])} queries: {scores}")
    assert scores["hybrid"] > scores["lexical"], scores
    # Since the code is embedded under its header with identifiers opened into
    # words, vector search alone is about as good as hybrid here (0.84 and 0.83);
    # the fusion weight is tuned on the dev benchmark of real code, where hybrid
    # leads clearly (bench/README.md), not on this corpus.
    assert scores["hybrid"] >= scores["vector"] - 0.03, scores
    assert scores["hybrid"] >= 0.5, scores


def test_hybrid_finds_most_answers_in_the_top_ten(ranks: dict[str, list[int]]) -> None:
    found = sum(1 for r in ranks["hybrid"] if r) / len(ranks["hybrid"])
    assert found >= 0.85, found


def cuts_at_definitions() -> bool:
    probe = "import json\n\n\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n"
    return any(c.symbol for c in chunking.chunk_text("probe.py", probe, "python"))


@pytest.mark.skipif(
    not cuts_at_definitions(),
    reason="needs a chunker that cuts at definitions: in a 40-line window the loader "
    "shares its chunk with dataclasses and its body is cut off at the model's 256 tokens",
)
def test_read_a_json_config_file_finds_the_settings_loader(index: Index) -> None:
    """The issue's acceptance example: the config-loading function in the top 3."""
    (query,) = [q for q in load_queries() if q["query"] == "read a json config file"]
    (want,) = query["expected"]
    assert want["symbol"] == "load_settings"
    results = index.search(query["query"], k=3, mode="hybrid").results
    spans = [(h.path, h.start_line, h.end_line, h.symbol) for h in results]
    assert any(p == want["path"] and s <= want["line"] <= e for p, s, e, _ in spans), spans


def test_hybrid_scores_are_in_unit_range_best_first(index: Index) -> None:
    results = index.search("exponential backoff between attempts", k=K).results
    scores = [h.score for h in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores), scores
    top = results[0]
    # explain says where the hit came from in each list
    assert top.explain["lexical_rank"] is not None or top.explain["vector_rank"] is not None


# --- real code: the standard library, its docstrings as queries -----------------------
# The set is built at test time (see stdlib_corpus.py): queries a fixture written
# for kenning could steer, it cannot. On Python 3.11 (73 queries) the shipped
# search scores MRR@10 hybrid 0.49, vector 0.45, lexical 0.44 (hybrid R@10
# 0.82); with the header but before the priors and name vectors 0.46, 0.49 and
# 0.43, and kenning before this set existed 0.40, 0.41 and 0.34. The floors sit
# below, so another Python's standard library does not trip them while a
# return to the old chunks, fusion or embedded text does.
STDLIB_MRR_FLOOR = 0.43
STDLIB_RECALL_FLOOR = 0.72


@pytest.fixture(scope="module")
def stdlib(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Index, list[Target], dict[str, list[list[SearchHit]]]]]:
    base = tmp_path_factory.mktemp("stdlib")
    root = base / "corpus"
    root.mkdir()
    targets = build_stdlib_corpus(root)
    assert len(targets) >= 40
    idx = Index(root, embedder=load_embedder(), home=base / "home")
    report = idx.refresh()
    assert report.errors == [] and report.pending == 0
    runs = {mode: [idx.search(t.query, k=K, mode=mode).results for t in targets] for mode in MODES}
    yield idx, targets, runs
    idx.close()


def stdlib_rank(hits: list[SearchHit], target: Target) -> int:
    for rank, hit in enumerate(hits, start=1):
        if hit.path == target.path and hit.start_line <= target.line <= hit.end_line:
            return rank
    return 0


def test_real_code_ranks_above_floors_and_hybrid_leads(
    stdlib: tuple[Index, list[Target], dict[str, list[list[SearchHit]]]],
    record_property: pytest.RecordProperty,
) -> None:
    _, targets, runs = stdlib
    ranks = {
        mode: [stdlib_rank(h, t) for h, t in zip(runs[mode], targets, strict=True)]
        for mode in MODES
    }
    scores = {mode: round(mrr(r), 4) for mode, r in ranks.items()}
    recall = sum(1 for r in ranks["hybrid"] if r) / len(targets)
    for mode, score in scores.items():
        record_property(f"stdlib_mrr_at_{K}_{mode}", score)
    print(f"\nstdlib MRR@{K} over {len(targets)} queries: {scores}, hybrid R@{K} {recall:.3f}")
    assert scores["hybrid"] >= STDLIB_MRR_FLOOR, scores
    assert recall >= STDLIB_RECALL_FLOOR, recall
    assert scores["hybrid"] > scores["lexical"], scores
    assert scores["vector"] >= STDLIB_MRR_FLOOR, scores


def test_one_result_per_definition_and_no_fragments(
    stdlib: tuple[Index, list[Target], dict[str, list[list[SearchHit]]]],
) -> None:
    """Every answer, in every mode: no two results share lines (the parts of a
    split definition answer once), and none is under three lines unless its file
    holds nothing larger."""
    index, _, runs = stdlib
    largest = {
        path: max(c.end_line - c.start_line + 1 for c in index.store.chunks_of(path))
        for path in index.store.files()
    }
    for mode, answers in runs.items():
        for hits in answers:
            spans = sorted((h.path, h.start_line, h.end_line) for h in hits)
            for (pa, _, ea), (pb, sb, _) in itertools.pairwise(spans):
                assert pa != pb or sb > ea, (mode, spans)
            for h in hits:
                lines = h.end_line - h.start_line + 1
                assert lines >= 3 or largest[h.path] < 3, (mode, h)


def test_a_split_definition_answers_once_with_its_whole_range(
    stdlib: tuple[Index, list[Target], dict[str, list[list[SearchHit]]]],
) -> None:
    index, _, _ = stdlib
    parts = [
        c
        for path in index.store.files()
        for c in index.store.chunks_of(path)
        if c.unit_start is not None and c.kind in ("function", "method")
    ]
    assert parts, "the corpus has functions long enough to be split"
    part = max(parts, key=lambda c: c.unit_end - c.unit_start)  # type: ignore[operator]
    hits = index.search(part.symbol or "", k=K, mode="lexical").results
    mine = [h for h in hits if h.path == part.path and h.symbol == part.symbol]
    assert len(mine) == 1
    assert (mine[0].start_line, mine[0].end_line) == (part.unit_start, part.unit_end)


def test_scores_say_how_good_the_match_is(
    stdlib: tuple[Index, list[Target], dict[str, list[list[SearchHit]]]],
) -> None:
    """Scores are evidence on a fixed scale, not rescaled so the best reads 1.0: a
    query about nothing in the corpus scores low and says so."""
    index, targets, runs = stdlib
    ranks = [stdlib_rank(h, t) for h, t in zip(runs["hybrid"], targets, strict=True)]
    found = [h[0].score for h, r in zip(runs["hybrid"], ranks, strict=True) if r == 1]
    assert found and all(0.0 < s < 1.0 for s in found)
    nonsense = index.search("purple giraffes dancing at the opera tonight", k=K)
    assert nonsense.results[0].score < min(sorted(found)[len(found) // 2], 0.5)
    assert any("no strong match" in note for note in nonsense.notes), nonsense.notes
    top = nonsense.results[0]
    assert top.explain["similarity"] is not None  # raw cosine, for the curious
