"""The language server and other processes on one index: the CLI (index, search)
and a second language server on the same folder (two editor windows).

Every process embeds with the fake embedder, slowed down so runs overlap, and
logs what it embeds: each chunk is embedded once over all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import apsw
import pytest
from lsprotocol import types as lsp
from tests.index_checks import make_corpus, problems
from tests.integration.test_processes import (
    FAKE_CLI,
    chunk_text_hashes,
    embed_log,
    embedded_vectors,
)

from kenning.engine.workspace import index_path

from .conftest import VSCODE, Session, eventually, start_session, stop_session

FILES = 40
# Three lines: a shorter function joins its neighbour and answers under its name.
NEW_FUNCTION = (
    "\n\ndef zebra_unicorn_gallop(herd):\n"
    "    fast = [z for z in herd if z.rested]\n"
    "    return [z.gallop() for z in fast]\n"
)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_corpus(tmp_path / "ws", FILES)
    monkeypatch.setenv("KENNING_FAKE_LOG", str(tmp_path / "embedded.log"))
    monkeypatch.setenv("KENNING_FAKE_DELAY", "0.02")  # about 10 s to embed the corpus
    return tmp_path / "ws"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FAKE_CLI, *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


async def wait_embedding(db: Path, at_least: int = 64, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while embedded_vectors(db) < at_least:
        assert time.monotonic() < deadline, "no run started embedding"
        await asyncio.sleep(0.02)


def edit(s: Session, path: Path) -> None:
    """Open ``path`` with a new function added to the unsaved buffer."""
    doc = s.open(path)
    end = len(path.read_text().splitlines())
    s.client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=doc, version=2),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(
                        start=lsp.Position(line=end, character=0),
                        end=lsp.Position(line=end, character=0),
                    ),
                    text=NEW_FUNCTION,
                )
            ],
        )
    )


async def found_zebra(s: Session) -> bool:
    out = await s.search("zebra unicorn gallop", mode="lexical")
    return any(r["symbol"] == "zebra_unicorn_gallop" for r in out["results"])


def assert_embedded_once(db: Path, log: Path) -> None:
    assert problems(db) == []
    counts = embed_log(log)
    # The server embeds other texts too (templates, to match them): chunks only here.
    chunks = chunk_text_hashes(db)
    assert {counts[d] for d in chunks} == {1}, "chunks embedded twice, or never"
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    pending = conn.execute("SELECT count(*) FROM chunks WHERE has_vector = 0").fetchone()[0]
    conn.close()
    assert pending == 0


async def test_edits_go_through_while_a_cli_index_runs_and_the_server_follows_it(
    ws: Path, tmp_path: Path, kenning_home: Path
) -> None:
    db = index_path(ws.resolve())
    indexer = subprocess.Popen(
        [*FAKE_CLI, "index", "--json", "--path", str(ws)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Slower than the server: the run must outlast its start on a loaded machine.
        env=dict(os.environ, KENNING_FAKE_DELAY="0.06"),
    )
    await wait_embedding(db)
    s = await start_session([ws], kenning_home, VSCODE)
    try:

        async def told() -> dict | None:
            assert indexer.poll() is None, "the CLI run ended before the server asked"
            return (await s.command("kenning.status"))["indexing_by"]

        holder = await eventually(told, timeout=10)
        assert holder["pid"] == indexer.pid and holder["command"] == "kenning index"
        assert holder["root"] == str(ws.resolve())

        started = time.monotonic()
        edit(s, ws / "pkg3" / "mod3.py")
        await eventually(lambda: found_zebra(s), timeout=10)
        took = time.monotonic() - started
        assert indexer.poll() is None, "the CLI run ended before the edit: no overlap tested"
        # 0.3 s of it is the edit debounce; the rest waits for no index run.
        assert took < 3.0, f"an edit took {took:.1f}s to be searchable during a CLI index"

        out = await s.search("handle request retries")
        assert any("kenning index" in n for n in out.get("notes", [])), out.get("notes")

        _, stderr = await asyncio.to_thread(indexer.communicate, timeout=120)
        assert indexer.returncode == 0, stderr
        status = await s.idle(timeout=60)
        assert status["indexing_by"] is None
        assert status["chunks"] == FILES * 12 + 1
        assert await found_zebra(s)
    finally:
        await stop_session(s)
    assert_embedded_once(db, tmp_path / "embedded.log")


async def test_cli_search_and_index_while_the_server_indexes(
    ws: Path, tmp_path: Path, kenning_home: Path
) -> None:
    db = index_path(ws.resolve())
    s = await start_session([ws], kenning_home, VSCODE)
    try:
        await wait_embedding(db)
        server_pid = s.client._server.pid  # type: ignore[attr-defined, union-attr]
        # Edits interrupt the server's run; it keeps the index through them.
        edit(s, ws / "pkg1" / "mod1.py")

        started = time.monotonic()
        out = await asyncio.to_thread(
            cli, "search", "handle request retries", "--json", "--path", str(ws)
        )
        took = time.monotonic() - started
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["results"]
        assert any(f"pid {server_pid}, language server" in n for n in result["notes"])
        assert took < 5.0, f"the search took {took:.1f}s"

        refused = await asyncio.to_thread(cli, "index", "--wait", "0", "--path", str(ws))
        assert refused.returncode == 1
        assert "language server" in refused.stderr.splitlines()[-1]
        status = json.loads(
            (await asyncio.to_thread(cli, "status", "--json", "--path", str(ws))).stdout
        )
        holder = status["indexing_by"]
        if holder is None:
            # On a slow machine the server may have finished meanwhile; then it
            # must say so itself, and the CLI was right to name nobody.
            assert (await s.command("kenning.status"))["indexing_by"] is None
        else:
            assert holder["pid"] == server_pid

        await s.idle(timeout=60)
        assert await found_zebra(s)
    finally:
        await stop_session(s)
    assert_embedded_once(db, tmp_path / "embedded.log")


async def test_two_servers_on_one_folder_embed_each_chunk_once(
    ws: Path, tmp_path: Path, kenning_home: Path
) -> None:
    db = index_path(ws.resolve())
    a = await start_session([ws], kenning_home, VSCODE)
    b = await start_session([ws], kenning_home, VSCODE)
    try:
        pids = {a.client._server.pid, b.client._server.pid}  # type: ignore[attr-defined, union-attr]

        async def one_waits() -> dict | None:
            for s in (a, b):
                holder = (await s.command("kenning.status"))["indexing_by"]
                if holder:
                    return holder
            return None

        holder = await eventually(one_waits, timeout=20)
        assert holder["pid"] in pids and holder["command"] == "language server"
        # The window that waits still takes edits and answers from the shared index.
        edit(b, ws / "pkg2" / "mod2.py")
        await eventually(lambda: found_zebra(a), timeout=10)
        for s in (a, b):
            await s.idle(timeout=60)
        for s in (a, b):
            status = await s.command("kenning.status")
            assert status["pending"] == 0 and status["indexing_by"] is None
            assert status["chunks"] == FILES * 12 + 1
    finally:
        await stop_session(a)
        await stop_session(b)
    assert_embedded_once(db, tmp_path / "embedded.log")


async def test_unsaved_buffers_survive_a_cli_index_until_their_server_dies(
    tmp_path: Path, kenning_home: Path
) -> None:
    ws = tmp_path / "ws"
    make_corpus(ws, 5)
    s = await start_session([ws], kenning_home, VSCODE)
    try:
        await s.idle()
        edit(s, ws / "pkg1" / "mod1.py")
        await eventually(lambda: found_zebra(s), timeout=10)
        await s.idle()

        def cli_finds_zebra() -> bool:
            out = cli(
                "search", "zebra unicorn gallop", "--json", "--mode", "lexical", "--path", str(ws)
            )
            assert out.returncode == 0, out.stderr
            return any(
                r["symbol"] == "zebra_unicorn_gallop" for r in json.loads(out.stdout)["results"]
            )

        # A CLI index reads the file on disk, but the open buffer is the server's:
        # it stays as the editor has it.
        assert await asyncio.to_thread(cli_finds_zebra)
        assert await found_zebra(s)
        server = s.client._server  # type: ignore[attr-defined]
        server.kill()
        await server.wait()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s.client.stop(), 10)
    # Its editor gone, the file on disk is what counts again.
    assert not await asyncio.to_thread(cli_finds_zebra)
    assert problems(index_path(ws.resolve())) == []
