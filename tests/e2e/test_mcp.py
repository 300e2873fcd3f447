"""``kenning mcp`` driven by the MCP SDK's own stdio client, with the real embedded model.

Each test starts the real server process (``python -m kenning mcp``) on a small
workspace in a fresh KENNING_HOME, offline, and asserts what an agent would see.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from tests.conftest import write_tree

pytestmark = pytest.mark.model

SERVER_SRC = Path(__file__).resolve().parents[2] / "server"

FILES = {
    "src/net.py": '''
        import time


        def fetch_with_retries(url, attempts=3):
            """Download a URL, sleeping longer after each failed attempt."""
            for attempt in range(attempts):
                try:
                    return http_get(url)
                except ConnectionError:
                    time.sleep(2 ** attempt)
            raise RuntimeError(f"gave up on {url}")
        ''',
    "src/geometry.py": '''
        import math


        def circle_area(radius):
            """The area of a circle."""
            return math.pi * radius * radius


        def distance(a, b):
            """Euclidean distance between two points."""
            return math.hypot(a[0] - b[0], a[1] - b[1])
        ''',
    "src/users.ts": """
        export function sortUsersByAge(users: User[]): User[] {
          return [...users].sort((a, b) => a.age - b.age);
        }
        """,
}


def _env(home: Path) -> dict[str, str]:
    # The SDK passes on only a safe subset of the environment; these are what
    # the server needs to run from this checkout, offline, in its own home.
    return {
        "KENNING_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(SERVER_SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }


@asynccontextmanager
async def connect(
    cwd: Path,
    home: Path,
    args: list[str] | None = None,
    roots: list[Path] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kenning", "mcp", *(args or [])],
        env={**_env(home), **(env or {})},
        cwd=str(cwd),
    )
    list_roots = None
    if roots is not None:

        async def list_roots(context: Any) -> types.ListRootsResult:
            return types.ListRootsResult(
                roots=[types.Root(uri=r.as_uri(), name=r.name) for r in roots]
            )

    errlog = (home / "stderr.txt").open("w")
    try:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, list_roots_callback=list_roots) as session,
        ):
            await session.initialize()
            yield session
    finally:
        errlog.close()


async def call(session: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float, pause: float = 0.05
) -> tuple[Any, float]:
    """The first truthy answer of ``check`` and the seconds it took."""
    started = time.monotonic()
    while True:
        got = await check()
        if got:
            return got, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        await anyio.sleep(pause)


def symbols(answer: dict[str, Any]) -> list[str | None]:
    return [r["symbol"] for r in answer["results"]]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ws", FILES)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


async def test_tools_and_their_schemas(ws: Path, home: Path) -> None:
    async with connect(ws, home) as s:
        listed = {t.name: t for t in (await s.list_tools()).tools}
    assert set(listed) == {
        "search",
        "similar",
        "duplicates",
        "patterns",
        "match_templates",
        "status",
    }
    for tool in listed.values():
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.description
        assert tool.annotations is not None and tool.annotations.read_only_hint
    search = listed["search"].input_schema
    assert search["required"] == ["query"]
    assert set(search["properties"]) >= {"query", "k", "mode", "lang", "glob", "explain"}
    assert search["properties"]["k"]["default"] == 8
    assert search["properties"]["k"]["maximum"] == 50
    assert search["properties"]["mode"]["enum"] == ["hybrid", "vector", "lexical"]
    hit = listed["search"].output_schema["properties"]["results"]["items"]
    assert {"path", "start_line", "end_line", "symbol", "kind", "score", "stale"} <= set(
        hit["required"]
    )
    assert listed["duplicates"].input_schema["required"] == ["path", "line"]
    assert set(listed["similar"].input_schema["properties"]) >= {"path", "line", "code"}


async def test_search_finds_a_function_by_meaning_with_its_lines(ws: Path, home: Path) -> None:
    async with connect(ws, home) as s:
        # The first call on a new workspace answers (words at least) at once.
        started = time.monotonic()
        first = await call(s, "search", query="download with exponential backoff")
        assert time.monotonic() - started < 15
        assert first["phase"] in ("reading", "loading model", "embedding", "ready")

        async def by_meaning() -> dict[str, Any] | None:
            got = await call(s, "search", query="sleep longer after each failed try", k=3)
            return got if got["pending"] == 0 and got["mode"] == "hybrid" else None

        answer, _ = await eventually(by_meaning, timeout=60, pause=0.2)
        top = answer["results"][0]
        assert (top["path"], top["symbol"], top["kind"]) == (
            "src/net.py",
            "fetch_with_retries",
            "function",
        )
        # 1-based, inclusive: the def is on line 4 of the file.
        assert (top["start_line"], top["end_line"]) == (4, 11)
        assert top["stale"] is False
        assert top["snippet"].startswith("def fetch_with_retries(url, attempts=3):")
        assert len(answer["results"]) <= 3

        # The text rendering, for clients that show the model only text.
        result = await s.call_tool("search", {"query": "area of a circle", "k": 2})
        text = result.content[0].text
        assert text.splitlines()[0].startswith("src/geometry.py:4-6  circle_area")

        # Filters reach the engine.
        ts = await call(s, "search", query="order people by how old they are", lang="ts")
        assert symbols(ts) == ["sortUsersByAge"]
        # The chunk at a location, and a pasted snippet, find their look-alikes.
        near = await call(s, "similar", path="src/geometry.py", line=5, k=2)
        assert "circle_area" not in symbols(near)
        pasted = await call(s, "similar", code="def area(r):\n    return 3.14159 * r * r\n")
        assert pasted["results"][0]["symbol"] == "circle_area"
        status = await call(s, "status")
        assert (status["files"], status["pending"], status["watching"]) == (3, 0, True)
        assert status["model"] == "all-minilm-l6-v2-int8"


async def test_a_file_written_during_the_session_is_found(ws: Path, home: Path) -> None:
    async with connect(ws, home) as s:

        async def embedded() -> bool:
            return (await call(s, "status"))["pending"] == 0

        await eventually(embedded, timeout=60, pause=0.2)
        write_tree(
            ws,
            {
                "src/zeppelin.py": '''
                    def moor_the_airship(mast, ship):
                        """Tie an airship to its mooring mast before the wind rises."""
                        mast.attach(ship.nose_cone)
                        return ship
                    ''',
            },
        )

        async def by_words() -> bool:
            got = await call(s, "search", query="moor_the_airship", mode="lexical", k=3)
            return "moor_the_airship" in symbols(got)

        _, words_s = await eventually(by_words, timeout=10)

        async def by_meaning() -> bool:
            got = await call(s, "search", query="dock a blimp", mode="vector", k=3)
            return symbols(got)[:1] == ["moor_the_airship"]

        _, meaning_s = await eventually(by_meaning, timeout=10)
        # The issue asks for words at once and meaning within about a second;
        # the bounds leave room for a loaded test machine.
        assert words_s < 3, words_s
        assert meaning_s < 5, meaning_s

        # Removed on disk: gone from the answers.
        (ws / "src/zeppelin.py").unlink()

        async def gone() -> bool:
            got = await call(s, "search", query="moor_the_airship", mode="lexical")
            return "moor_the_airship" not in symbols(got)

        await eventually(gone, timeout=10)


async def test_a_file_changed_after_indexing_is_marked_stale(ws: Path, home: Path) -> None:
    # Without the watcher the index stays as it was read, so the change is seen
    # only as a stale flag (with it, the file would be re-read within a second).
    async with connect(ws, home, ["--no-watch"]) as s:
        before = await call(s, "search", query="circle area distance", mode="lexical")
        assert before["results"] and not any(r["stale"] for r in before["results"])
        path = ws / "src/geometry.py"
        path.write_text("# a new first line moves every line below\n" + path.read_text())
        after = await call(s, "search", query="circle area distance", mode="lexical")
        flags = {r["path"]: r["stale"] for r in after["results"]}
        assert flags["src/geometry.py"] is True
        result = await s.call_tool("search", {"query": "circle area", "mode": "lexical"})
        assert "[stale: file changed since indexed]" in result.content[0].text
        others = await call(s, "search", query="fetch_with_retries", mode="lexical", k=1)
        assert others["results"][0]["stale"] is False


async def test_bad_input_is_a_one_line_tool_error_and_the_server_goes_on(
    ws: Path, home: Path, tmp_path: Path
) -> None:
    outside = write_tree(tmp_path / "elsewhere", {"x.py": "def x():\n    return 1\n"})
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("search", {"query": "retry", "k": "ten"}, "k: expected a whole number"),
        ("search", {"query": "retry", "k": 500}, "k: must be at most 50"),
        ("search", {"query": "x" * 5000}, "query: 5000 characters; at most 1000"),
        ("search", {"query": "   "}, "query is empty"),
        ("search", {"query": "retry", "mode": "psychic"}, "mode: 'psychic' is not one of"),
        ("search", {"query": "retry", "lang": "klingon"}, "unknown language 'klingon'"),
        ("search", {"query": "retry", "colour": "red"}, "unknown argument 'colour'"),
        ("search", {}, "query is required"),
        ("similar", {"path": str(outside / "x.py"), "line": 1}, "outside the workspace"),
        ("similar", {"path": "src/net.py"}, "give path and line"),
        ("duplicates", {"path": "src/nothing.py", "line": 3}, "no such file"),
        ("match_templates", {"path": "src/net.py", "line": 0}, "line: must be at least 1"),
        ("teleport", {}, "unknown tool 'teleport'"),
    ]
    async with connect(ws, home) as s:
        for tool, args, expected in bad:
            result = await s.call_tool(tool, args)
            assert result.is_error, (tool, args)
            (content,) = result.content
            assert isinstance(content, types.TextContent)
            assert "\n" not in content.text and expected in content.text, content.text
            assert "Traceback" not in content.text
            # ... and the next call is answered.
            ok = await call(s, "search", query="fetch_with_retries", mode="lexical", k=1)
            assert ok["results"][0]["symbol"] == "fetch_with_retries"
    assert "Traceback" not in (home / "stderr.txt").read_text()


async def test_roots_come_from_the_client_when_it_offers_them(
    ws: Path, home: Path, tmp_path: Path
) -> None:
    other = write_tree(
        tmp_path / "other",
        {"lib/tides.py": "def predict_high_tide(moon_phase):\n    return moon_phase * 12.4\n"},
    )
    # Started in one folder, told by the client that the workspace is another.
    async with connect(ws, home, roots=[other]) as s:
        got = await call(s, "search", query="predict_high_tide", mode="lexical")
        assert symbols(got)[:1] == ["predict_high_tide"]
        assert got["results"][0]["path"] == "lib/tides.py"
        status = await call(s, "status")
        assert [r["root"] for r in status["roots"]] == [str(other.resolve())]
        # The folder it was started in is not part of the workspace now.
        args = {"path": str(ws / "src/net.py"), "line": 4}
        (result,) = (await s.call_tool("similar", args)).content
        assert "outside the workspace" in result.text


async def test_answers_fit_a_context_window(ws: Path, home: Path) -> None:
    # Many results with long lines: the default answer stays small, caps hold.
    long_files = {
        f"gen/mod{i}.py": f"def handler_{i}(request):\n"
        + "".join(f"    value_{j} = request.get('{'k' * 300}')\n" for j in range(30))
        for i in range(20)
    }
    write_tree(ws, long_files)
    async with connect(ws, home) as s:
        answer = await call(s, "search", query="handler request get value", mode="lexical")
        assert len(answer["results"]) == 8
        for hit in answer["results"]:
            lines = hit["snippet"].splitlines()
            assert len(lines) <= 6 and all(len(line) <= 200 for line in lines)
        result = await s.call_tool("search", {"query": "handler request get value"})
        size = len(result.content[0].text) + len(json.dumps(result.structured_content))
        assert size / 4 < 4000  # both forms together, in rough tokens
        longest = await call(
            s, "search", query="handler request", mode="lexical", k=50, snippet_lines=40
        )
        assert all(len(h["snippet"]) <= 2000 for h in longest["results"])


async def test_duplicates_patterns_and_templates(home: Path, tmp_path: Path) -> None:
    fixtures = Path(__file__).parents[1] / "fixtures" / "near_duplicates"
    ws = write_tree(
        tmp_path / "dups",
        {
            "a/profile.py": (fixtures / "profile.py").read_text(),
            "b/billing.py": (fixtures / "billing.py").read_text(),
            "c/stats.py": (fixtures / "stats.py").read_text(),
        },
    )
    async with connect(ws, home) as s:
        dups = await call(s, "duplicates", path="a/profile.py", line=6)
        assert dups["chunk"]["symbol"] == "fetch_profile"
        assert [(r["path"], r["symbol"], r["start_line"]) for r in dups["results"]] == [
            ("b/billing.py", "load_account", 4)
        ]
        assert dups["results"][0]["similarity"] >= dups["threshold"] == 0.85
        assert dups["results"][0]["stale"] is False
        none = await call(s, "duplicates", path="c/stats.py", line=2)
        assert none["results"] == []

        patterns = await call(s, "patterns")
        (family,) = patterns["patterns"]
        assert family["size"] == 2
        assert {family["canonical"]["path"], *(m["path"] for m in family["members"])} == {
            "a/profile.py",
            "b/billing.py",
        }

        fits = await call(s, "match_templates", path="a/profile.py", line=6)
        assert fits["matches"][0]["id"] == "python-http-client-retry"


async def test_the_newest_protocol_revision_is_served_too(ws: Path, home: Path) -> None:
    # The SDK's Client discovers the newest revision (no initialize handshake,
    # no roots) and falls back to the handshake; the tools answer either way.
    from mcp import Client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "kenning", "mcp"], env=_env(home), cwd=str(ws)
    )
    async with Client(params) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"search", "status"}
        result = await client.call_tool("search", {"query": "circle_area", "mode": "lexical"})
        assert not result.is_error
        assert result.structured_content["results"][0]["symbol"] == "circle_area"
        bad = await client.call_tool("search", {"query": "x", "k": -1})
        assert bad.is_error and "k: must be at least 1" in bad.content[0].text


class _Shard(BaseHTTPRequestHandler):
    """A `kenning cluster serve` endpoint as the client sees it: one hit, in another repo."""

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != "Bearer sesame":
            self._send(401, {"error": "a valid bearer token is required"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        hit = {
            "path": "billing/retry.py",
            "start_line": 10,
            "end_line": 24,
            "symbol": "retry_payment_with_backoff",
            "kind": "function",
            "language": "python",
            "score": 0.9,
            "snippet": "def retry_payment_with_backoff(charge, attempts=5):",
            "repo": "example.org/team/billing",
        }
        self._send(200, {"query": body.get("query", ""), "took_ms": 1.0, "results": [hit]})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def shard() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shard)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_remote_endpoints_are_searched_with_the_workspace(
    ws: Path, home: Path, shard: str
) -> None:
    down = "http://127.0.0.1:9"  # nothing listens on the discard port
    args = ["--remote", shard, "--remote", down, "--remote-timeout", "1"]
    async with connect(ws, home, args, env={"KENNING_REMOTE_TOKEN": "sesame"}) as s:
        answer = await call(s, "search", query="retry with backoff", mode="lexical")
        by_symbol = {r["symbol"]: r for r in answer["results"]}
        # The workspace's own code and the shard's, in one answer.
        assert "fetch_with_retries" in by_symbol, answer
        remote = by_symbol["retry_payment_with_backoff"]
        assert remote["endpoint"] == shard and remote["repo"] == "example.org/team/billing"
        assert "endpoint" not in by_symbol["fetch_with_retries"]
        # The endpoint that is down costs a note, not the search.
        assert any(down in n for n in answer["notes"]), answer
        status = await call(s, "status")
        states = {r["url"]: r["state"] for r in status["remotes"]}
        assert states[shard] == "ok" and states[down] == "error", status
        text = (await s.call_tool("status", {})).content[0]
        assert f"endpoint {shard}: ok" in text.text
