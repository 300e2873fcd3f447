"""Several sources, one answer: repository ids, local overlay over remote base,
and an endpoint that fails or is slow (engine/searchable.py, engine/remote.py).

The remote side here is a small HTTP server in this process (no Ray): what the
client does with each kind of answer is the point.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write_tree

from kenning.engine.remote import RemoteSearchable, from_env
from kenning.engine.search import SearchResult
from kenning.engine.searchable import (
    LocalSearchable,
    Searchable,
    normalize_repo_url,
    repo_id,
    search_all,
)
from kenning.engine.types import SearchHit
from kenning.engine.workspace import Index
from kenning.errors import UsageError


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:Acme/Ledger.git",
        "https://github.com/Acme/Ledger",
        "https://user:secret@GitHub.com:443/Acme/Ledger.git/",
        "ssh://git@github.com/Acme/Ledger.git",
    ],
)
def test_git_urls_of_one_repository_give_one_id(url: str) -> None:
    assert normalize_repo_url(url) == "github.com/Acme/Ledger"


def test_repo_id_reads_the_origin_remote_else_the_folder_name(tmp_path: Path) -> None:
    plain = tmp_path / "billing"
    plain.mkdir()
    assert repo_id(plain) == "billing"
    clone = tmp_path / "checkout"
    write_tree(
        clone,
        {
            ".git/config": """
            [core]
            \tbare = false
            [remote "upstream"]
            \turl = https://example.org/other/thing.git
            [remote "origin"]
            \turl = git@example.org:team/billing.git
            """
        },
    )
    assert repo_id(clone) == "example.org/team/billing"
    # A worktree: .git is a file naming the real git folder.
    wt = tmp_path / "wt"
    (clone / ".git" / "worktrees" / "wt").mkdir(parents=True)
    (clone / ".git" / "worktrees" / "wt" / "commondir").write_text("../..\n")
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {clone / '.git' / 'worktrees' / 'wt'}\n")
    assert repo_id(wt) == "example.org/team/billing"


# -- a stub endpoint -----------------------------------------------------------------


def _hit(path: str, repo: str, score: float, symbol: str) -> dict[str, Any]:
    return {
        "path": path,
        "start_line": 1,
        "end_line": 3,
        "symbol": symbol,
        "kind": "function",
        "language": "python",
        "score": score,
        "snippet": f"def {symbol}(): ...",
        "repo": repo,
    }


class _Stub(BaseHTTPRequestHandler):
    delay_s = 0.0
    hits: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        time.sleep(self.delay_s)
        if self.headers.get("Authorization") != "Bearer sesame":
            self._send(401, {"error": "a valid bearer token is required"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(200, {"query": body.get("query", ""), "took_ms": 1.0, "results": self.hits})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up first

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {"delay_s": 0.0, "hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def local(tmp_path: Path, fake_embedder: Any) -> Iterator[LocalSearchable]:
    root = write_tree(
        tmp_path / "ledger",
        {
            "fees.py": """
            def compute_late_fee(balance, days_overdue):
                rate = 0.015
                return round(balance * rate * days_overdue / 30, 2)
            """
        },
    )
    index = Index(root, embedder=fake_embedder)
    index.refresh()
    try:
        yield LocalSearchable(index)
    finally:
        index.close()


def test_sources_satisfy_the_protocol(local: LocalSearchable) -> None:
    assert isinstance(local, Searchable)
    assert isinstance(RemoteSearchable("http://127.0.0.1:1"), Searchable)


def test_remote_results_merge_with_local_ones_and_carry_their_repo(
    local: LocalSearchable, endpoint: tuple[str, type[_Stub]]
) -> None:
    url, handler = endpoint
    handler.hits = [_hit("src/tax.py", "acme/tax", 0.99, "compute_tax")]
    remote = RemoteSearchable(url, "sesame", timeout_s=5)
    result = search_all([local, remote], "compute late fee", k=5, timeout_s=5)
    got = [(h.repo, h.path, h.symbol) for h in result.results]
    assert got[0] == ("acme/tax", "src/tax.py", "compute_tax")  # best score first
    assert ("ledger", "fees.py", "compute_late_fee") in got
    assert result.results[0].to_json()["repo"] == "acme/tax"
    assert remote.state.to_json()["state"] == "ok"


def test_a_local_working_copy_overlays_its_repository(
    local: LocalSearchable, endpoint: tuple[str, type[_Stub]]
) -> None:
    url, handler = endpoint
    # The endpoint's copy of the local repository (an older compute_late_fee) and
    # another repository's function.
    handler.hits = [
        _hit("fees.py", "ledger", 0.99, "old_compute_late_fee"),
        _hit("src/tax.py", "acme/tax", 0.5, "compute_tax"),
    ]
    result = search_all(
        [local, RemoteSearchable(url, "sesame", timeout_s=5)], "compute late fee", timeout_s=5
    )
    symbols = [h.symbol for h in result.results]
    assert "old_compute_late_fee" not in symbols
    assert "compute_late_fee" in symbols and "compute_tax" in symbols


def test_a_wrong_token_is_a_note_not_a_failure(
    local: LocalSearchable, endpoint: tuple[str, type[_Stub]]
) -> None:
    url, handler = endpoint
    handler.hits = [_hit("src/tax.py", "acme/tax", 0.9, "compute_tax")]
    result = search_all(
        [local, RemoteSearchable(url, "wrong", timeout_s=5)], "late fee", timeout_s=5
    )
    assert [h.symbol for h in result.results] == ["compute_late_fee"]
    assert any(url in n and "401" in n for n in result.notes), result.notes


def test_a_slow_endpoint_is_skipped_within_the_timeout(
    local: LocalSearchable, endpoint: tuple[str, type[_Stub]]
) -> None:
    url, handler = endpoint
    handler.delay_s = 5.0
    remote = RemoteSearchable(url, "sesame", timeout_s=0.5)
    started = time.monotonic()
    result = search_all([local, remote], "late fee", timeout_s=0.5)
    took = time.monotonic() - started
    assert took < 1.5, took
    assert [h.symbol for h in result.results] == ["compute_late_fee"]
    assert any(url in n and "within 0.5 s" in n for n in result.notes), result.notes


def test_an_endpoint_that_is_down_is_skipped(local: LocalSearchable) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}"
    result = search_all([local, RemoteSearchable(url, timeout_s=2)], "late fee", timeout_s=2)
    assert [h.symbol for h in result.results] == ["compute_late_fee"]
    assert any(url in n and "unreachable" in n for n in result.notes), result.notes


def test_endpoints_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KENNING_REMOTE", "http://a:1, http://b:2")
    monkeypatch.setenv("KENNING_REMOTE_TOKEN", "t")
    got = from_env(None, 1.0)
    assert [(r.url, r.token) for r in got] == [("http://a:1", "t"), ("http://b:2", "t")]
    assert [r.url for r in from_env(["http://c:3/"], 1.0)] == ["http://c:3"]
    with pytest.raises(UsageError):
        from_env(["ftp://x"], 1.0)


def test_local_similar_by_code(local: LocalSearchable) -> None:
    result = local.similar("def late_fee(balance, days):\n    return balance * days", k=3)
    assert [h.symbol for h in result.results] == ["compute_late_fee"]
    assert isinstance(result, SearchResult)
    assert all(isinstance(h, SearchHit) and h.repo == "ledger" for h in result.results)


def test_remote_settings_name_endpoints_and_their_token_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kenning.config import parse_settings
    from kenning.engine.remote import from_settings

    monkeypatch.setenv("ACME_KENNING_TOKEN", "s3cret")
    settings, problems = parse_settings(
        {
            "remote": {
                "endpoints": [
                    {"url": "https://kenning.acme.example", "tokenEnv": "ACME_KENNING_TOKEN"},
                    "http://127.0.0.1:8000",
                ],
                "timeoutMs": 500,
            }
        }
    )
    assert problems == []
    got = [(r.url, r.token, r.timeout_s) for r in from_settings(settings.remote)]
    assert got == [
        ("https://kenning.acme.example", "s3cret", 0.5),
        ("http://127.0.0.1:8000", None, 0.5),
    ]
    assert settings.to_wire()["remote"]["endpoints"][0] == {
        "url": "https://kenning.acme.example",
        "tokenEnv": "ACME_KENNING_TOKEN",
        "repo": None,
    }
    settings, problems = parse_settings({"remote": {"endpoints": [{"url": "ftp://x"}]}})
    assert settings.remote.endpoints == []
    assert problems == [
        "remote.endpoints[0].url: expected an http:// or https:// URL; using the default []"
    ]
