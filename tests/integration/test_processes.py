"""Two processes on one index: a search never waits for the other's run, two
runs never embed the same chunks, and the index ends complete and consistent.

The processes are the CLI with the fake embedder (``tests/fake_cli.py``),
slowed down so that one run is still going while the other starts; every
text either embeds is logged, so "each chunk embedded once" is counted, not
assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import apsw
import pytest
import xxhash
from tests.index_checks import make_corpus, problems

from kenning.engine.text import embed_header, embed_input, name_input
from kenning.engine.workspace import index_path

FAKE_CLI = [sys.executable, str(Path(__file__).resolve().parent.parent / "fake_cli.py")]
FILES = 40
CHUNKS = FILES * 12


def env(log: Path, delay: float) -> dict[str, str]:
    return dict(
        os.environ,
        KENNING_FAKE_LOG=str(log),
        KENNING_FAKE_DELAY=str(delay),
        PYTHONUNBUFFERED="1",
    )


def cli(*args: str, e: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FAKE_CLI, *args], capture_output=True, text=True, env=e, timeout=120)


def start(*args: str, e: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*FAKE_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e
    )


def embedded_vectors(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0])
        finally:
            conn.close()
    except apsw.Error:
        return 0


def wait_for_embedding(db: Path, proc: subprocess.Popen[str], at_least: int = 64) -> None:
    """Until ``proc``'s run has committed some vectors: it is mid-embedding."""
    deadline = time.monotonic() + 60
    while embedded_vectors(db) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the index run never started embedding"
        time.sleep(0.02)


def embed_log(log: Path) -> Counter[str]:
    """How often each text was embedded, over every process."""
    if not log.exists():
        return Counter()
    return Counter(line.split()[1] for line in log.read_text().splitlines())


def chunk_text_hashes(db: Path) -> set[str]:
    """The hashes of what each chunk is embedded as: its code under its header, and
    its name (text.name_input)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute(
            "SELECT f.path, c.language, c.kind, c.symbol, c.text"
            " FROM chunks c JOIN files f ON f.id = c.file_id"
        )
        hashes = set()
        for path, language, kind, symbol, text in rows:
            code = embed_input(embed_header(path, language, kind, symbol), text)
            hashes.add(xxhash.xxh3_64_hexdigest(code.encode()))
            hashes.add(xxhash.xxh3_64_hexdigest(name_input(path, symbol).encode()))
        return hashes
    finally:
        conn.close()


def assert_complete_and_embedded_once(db: Path, log: Path) -> None:
    assert problems(db) == []
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    chunks, pending = conn.execute("SELECT count(*), sum(has_vector = 0) FROM chunks").fetchone()
    conn.close()
    assert (chunks, pending) == (CHUNKS, 0)
    counts = embed_log(log)
    twice = {d: n for d, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} texts embedded more than once"
    assert set(counts) == chunk_text_hashes(db)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    make_corpus(tmp_path / "ws", FILES)
    return tmp_path / "ws"


def test_a_search_during_another_index_run_answers_at_once_and_says_so(
    ws: Path, tmp_path: Path
) -> None:
    log = tmp_path / "embedded.log"
    e = env(log, delay=0.02)  # about 10 s of embedding
    db = index_path(ws.resolve())
    indexer = start("index", "--json", "--path", str(ws), e=e)
    wait_for_embedding(db, indexer)

    started = time.monotonic()
    out = cli("search", "handle request retries", "--json", "--path", str(ws), e=e)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert indexer.poll() is None, "the index run ended before the search: no overlap tested"
    result = json.loads(out.stdout)
    # From what was committed: every file is in, only part of it embedded.
    assert result["results"] and result["complete"] < 1.0
    notes = " ".join(result.get("notes", []))
    assert f"pid {indexer.pid}, kenning index" in notes
    assert "is updating the index" in notes
    # Python, numpy and the index open cost most of this on a loaded machine; the
    # search refreshed (and embedded) nothing of its own.
    assert took < 5.0, f"the search took {took:.1f}s"

    # In text mode the note is one line on stderr, results on stdout.
    out = cli("search", "handle request retries", "--path", str(ws), e=e)
    assert out.returncode == 0, out.stderr
    notes = [ln for ln in out.stderr.splitlines() if "is updating the index" in ln]
    assert len(notes) == 1, out.stderr
    assert "handler_" in out.stdout

    stdout, stderr = indexer.communicate(timeout=120)
    assert indexer.returncode == 0, stderr
    assert json.loads(stdout)["embedded"] == CHUNKS
    assert_complete_and_embedded_once(db, log)


def test_a_second_index_run_waits_then_says_who_is_indexing(ws: Path, tmp_path: Path) -> None:
    log = tmp_path / "embedded.log"
    e = env(log, delay=0.02)
    db = index_path(ws.resolve())
    first = start("index", "--json", "--path", str(ws), e=e)
    wait_for_embedding(db, first)

    started = time.monotonic()
    refused = cli("index", "--wait", "0.5", "--path", str(ws), e=e)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr  # a user error is one line
    assert lines[-1].startswith("kenning: error: ")
    assert f"pid {first.pid}, kenning index" in lines[-1]
    assert "Traceback" not in refused.stderr
    assert time.monotonic() - started < 5.0

    status = json.loads(cli("status", "--json", "--path", str(ws), e=e).stdout)
    assert status["indexing_by"]["pid"] == first.pid
    assert status["indexing_by"]["command"] == "kenning index"

    # Waiting long enough, it runs once the first is done, with nothing left to do.
    second = cli("index", "--json", "--wait", "120", "--path", str(ws), e=e)
    assert second.returncode == 0, second.stderr
    assert first.wait(timeout=120) == 0
    report = json.loads(second.stdout)
    assert report["embedded"] == 0 and report["pending"] == 0 and report["changed"] == 0
    assert_complete_and_embedded_once(db, log)
    status = json.loads(cli("status", "--json", "--path", str(ws), e=e).stdout)
    assert status["indexing_by"] is None


def test_a_killed_run_leaves_the_index_to_the_next_one_at_once(ws: Path, tmp_path: Path) -> None:
    log = tmp_path / "embedded.log"
    e = env(log, delay=0.02)
    db = index_path(ws.resolve())
    first = start("index", "--path", str(ws), e=e)
    wait_for_embedding(db, first)
    first.kill()
    first.wait()
    started = time.monotonic()
    out = cli("index", "--json", "--wait", "0", "--path", str(ws), e=env(log, delay=0))
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 10.0
    report = json.loads(out.stdout)
    assert 0 < report["embedded"] < CHUNKS  # only what the killed run had not committed
    assert_complete_and_embedded_once_or_lost_in_the_kill(db, log)


def assert_complete_and_embedded_once_or_lost_in_the_kill(db: Path, log: Path) -> None:
    # A killed run may have embedded a batch it never committed: that batch is
    # embedded again, and nothing else is.
    assert problems(db) == []
    counts = embed_log(log)
    assert set(counts) == chunk_text_hashes(db)
    assert sum(n - 1 for n in counts.values()) <= 64


def test_processes_opening_a_new_index_at_once_all_succeed(tmp_path: Path) -> None:
    # Two editor windows and a terminal on a workspace never indexed before:
    # each creates the schema if it is not there yet, and only one does.
    make_corpus(tmp_path / "ws", 3)
    script = (
        "import sys; from kenning.engine.workspace import Index; "
        "ix = Index(sys.argv[1]); ix.refresh(embed=False); ix.close()"
    )
    for attempt in range(2):
        home = tmp_path / f"home{attempt}"
        e = dict(os.environ, KENNING_HOME=str(home))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path / "ws")],
                env=e,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        assert problems(index_path((tmp_path / "ws").resolve(), home)) == []
