"""`kenning cluster` end to end on a local Ray instance (the `cluster` extra).

One Ray instance for the module (``ray.init(num_cpus=2)``); the CLI's
``cluster build`` and ``cluster serve`` join it with ``--address``, as they
would join a real cluster. Three repositories of the quality corpus are built
into 3 shards with the real model, served on a random loopback port, and
searched through ``kenning search --remote`` as a developer would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from tests.conftest import write_tree

from kenning.cluster.shards import MANIFEST, ShardIndex, shard_db, split_key
from kenning.engine.store import Store
from kenning.engine.text import name_input, name_key
from kenning.engine.vectors import EmbeddingCache, to_int8

HERE = Path(__file__).resolve().parent
SERVER_SRC = HERE.parent.parent / "server"
CORPUS = HERE.parent / "fixtures" / "quality" / "corpus"
REPOS = ("gateway", "ledgerly", "notifier")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, derived_models: Path) -> Path:
    home = tmp_path_factory.mktemp("cluster-home")
    (home / "models").mkdir()
    (home / "models" / "derived").symlink_to(derived_models, target_is_directory=True)
    return home


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KENNING_HOME=str(home),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(SERVER_SRC), *filter(None, [env.get("PYTHONPATH")])]),
    )
    env.pop("KENNING_REMOTE", None)
    env.pop("KENNING_REMOTE_TOKEN", None)
    env.update(extra)
    return env


def kenning(home: Path, *args: str, cwd: Path | None = None, **env: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "kenning", *args],
        capture_output=True,
        text=True,
        env=_env(home, **env),
        cwd=cwd,
        timeout=240,
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    for name in REPOS:
        shutil.copytree(CORPUS / name, root / name)
    return root


@pytest.fixture(scope="module")
def ray_address(home: Path) -> Iterator[str]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"KENNING_HOME": str(home), "HF_HUB_OFFLINE": "1"}},
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def built(home: Path, sources: Path, ray_address: str, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("shards") / "shards"
    args = [str(sources / name) for name in REPOS]
    r = kenning(
        home, "cluster", "build", *args, "--out", str(out), "--shards", "3",
        "--address", ray_address, "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout), r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None, body: Any = None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def served(home: Path, built: Any, ray_address: str) -> Iterator[tuple[str, str]]:
    out = built[0]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kenning", "cluster", "serve", str(out), "--port", str(port),
         "--address", ray_address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(home),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    token = ""
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"cluster serve exited {proc.returncode}: {proc.stderr.read()}")
            try:
                if _get(url + "/healthz")[0] == 200:
                    break
            except (urllib.error.URLError, OSError, ValueError):
                pass  # not listening yet, or the proxy is up before the app's route
            assert time.monotonic() < deadline, "cluster serve did not come up in 180 s"
            time.sleep(0.5)
        token = (out / "serve.token").read_text().strip()
        yield url, token
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        # The token never reaches a log.
        assert not token or token not in err


def test_build_makes_shards_the_local_engine_opens(built: Any) -> None:
    out, summary, stderr = built
    assert [s["id"] for s in summary["shards"]] == [0, 1, 2]
    assert sum(s["files"] for s in summary["shards"]) == summary["files"] > 20
    assert sum(s["chunks"] for s in summary["shards"]) == summary["chunks"]
    assert all(s["files"] > 0 for s in summary["shards"])
    assert summary["embedded"] == summary["chunks"] and summary["pending"] == 0
    assert sorted(summary["repos"]) == sorted(REPOS)
    assert "kenning: read" in stderr  # progress on stderr
    # Each shard is a normal index: the engine's own search answers from it.
    found = []
    for i in range(3):
        shard = ShardIndex(shard_db(out, i), i)
        try:
            found += [(h.repo, h.path, h.symbol) for h in shard.search(
                "obfuscate_email", None, 3, "lexical").results]  # fmt: skip
        finally:
            shard.close()
    assert ("ledgerly", "utils/text.py", "obfuscate_email") in found


def test_every_shard_chunk_has_the_name_vector_a_working_copy_would_have(built: Any) -> None:
    out, summary, stderr = built
    manifest = json.loads((out / MANIFEST).read_text())
    space, dims = manifest["space"], manifest["dims"]
    rows = []
    for i in range(3):
        store = Store(shard_db(out, i))
        try:
            rows += (
                store.reader()
                .execute(
                    "SELECT f.path, c.symbol, v.name_vec FROM vectors v"
                    " JOIN chunks c ON c.id = v.chunk_id JOIN files f ON f.id = c.file_id"
                )
                .fetchall()
            )
        finally:
            store.close()
    assert len(rows) == summary["chunks"]
    assert all(r[2] is not None and len(r[2]) == dims for r in rows)
    # Each name vector is the cached vector of the name made from the path
    # inside the repository: the key a local working copy's index looks up.
    texts = [name_input(split_key(path)[1], symbol) for path, symbol, _ in rows]
    cache = EmbeddingCache(out / "cache" / "embeddings.db")
    try:
        held = cache.get_many(space, [name_key(t) for t in texts])
    finally:
        cache.close()
    for (path, symbol, name_vec), text in zip(rows, texts, strict=True):
        vec = np.frombuffer(held[name_key(text)], dtype=np.float32)
        assert to_int8(vec)[0].tobytes() == name_vec, (path, symbol)
    # A name that several chunks share (`main`, in two repositories) is
    # embedded once, beside each chunk's code.
    assert len(set(texts)) < len(texts)
    assert f" {summary['chunks'] + len(set(texts))} texts (code and names) to embed" in stderr


def test_search_remote_finds_a_function_in_the_shards(
    home: Path, served: tuple[str, str], tmp_path: Path
) -> None:
    url, token = served
    work = write_tree(tmp_path / "mine", {"notes.py": "def hello():\n    return 'hi'\n"})
    r = kenning(
        home, "search", "hide most of an email address", "--json", "-k", "5",
        "--remote", url, cwd=work, KENNING_REMOTE_TOKEN=token,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    top = [(h["repo"], h["path"], h["symbol"]) for h in out["results"][:3]]
    assert ("ledgerly", "utils/text.py", "obfuscate_email") in top, out
    hit = next(h for h in out["results"] if h["symbol"] == "obfuscate_email")
    assert hit["endpoint"] == url and hit["start_line"] == 29
    # The same through KENNING_REMOTE, human output.
    r = kenning(home, "search", "obfuscate email", "-k", "3", cwd=work,
                KENNING_REMOTE=url, KENNING_REMOTE_TOKEN=token)  # fmt: skip
    assert r.returncode == 0 and "utils/text.py:29-34  obfuscate_email" in r.stdout, r


def test_a_question_made_of_a_names_words_finds_its_definition_in_the_shards(
    served: tuple[str, str],
) -> None:
    # Vectors alone: by the code's vectors, `issue_tokens` comes before
    # `class TokenPair` for these two words (measured); its name's vector finds it.
    url, token = served
    status, body = _get(
        url + "/v1/search", token, body={"query": "Token Pair", "mode": "vector", "k": 1}
    )
    assert status == 200, body
    top = body["results"][0]
    assert (top["repo"], top["path"], top["symbol"]) == ("ledgerly", "auth/tokens.py", "TokenPair")


def test_the_token_is_required_on_every_route_but_healthz(served: tuple[str, str]) -> None:
    url, token = served
    assert _get(url + "/healthz") == (200, {"ok": True})
    for path in ("/v1/search", "/v1/similar"):
        assert _get(url + path, body={"query": "x"})[0] == 401
        status, body = _get(url + path, "not-the-token", body={"query": "x"})
        assert status == 401 and set(body) == {"error"}
    assert _get(url + "/v1/status")[0] == 401
    status, body = _get(url + "/v1/status", token)
    assert status == 200
    assert [s["id"] for s in body["shards"]] == [0, 1, 2]
    assert body["replicas"] is None or body["replicas"]["shard-0"] >= 1


def test_bad_requests_get_one_line_json_errors(served: tuple[str, str]) -> None:
    url, token = served
    cases = [
        ({"query": "x", "k": 1000}, 400),
        ({"query": ""}, 400),
        ({"query": "x", "mode": "psychic"}, 400),
        ({"query": "x", "lang": ["klingon"]}, 400),
        ([1, 2], 400),
    ]
    for body, want in cases:
        status, answer = _get(url + "/v1/search", token, body=body)
        assert status == want and set(answer) == {"error"}, (body, answer)
        assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    status, answer = _get(url + "/v1/search", token, raw=b"{not json")
    assert (status, answer) == (400, {"error": "the body is not JSON"})
    status, answer = _get(url + "/v1/search", token, raw=b" " * (65 * 1024))
    assert status == 413
    status, answer = _get(url + "/v1/similar", token, body={"code": "x" * 30_000})
    assert status == 400


def test_similar_by_code(served: tuple[str, str]) -> None:
    url, token = served
    code = (
        "def mask_email(address):\n"
        "    user, _, host = address.partition('@')\n"
        "    return user[:1] + '***@' + host\n"
    )
    status, body = _get(url + "/v1/similar", token, body={"code": code, "k": 3})
    assert status == 200
    assert "obfuscate_email" in [h["symbol"] for h in body["results"]], body


def test_a_local_working_copy_wins_over_the_remote_copy(
    home: Path, served: tuple[str, str], tmp_path: Path
) -> None:
    url, token = served
    # A working copy of ledgerly (same repository id) where the function was
    # renamed and not pushed: the shards still hold the old name.
    work = tmp_path / "ledgerly"
    shutil.copytree(CORPUS / "ledgerly", work)
    text = (work / "utils" / "text.py").read_text()
    (work / "utils" / "text.py").write_text(text.replace("obfuscate_email", "mask_email_address"))
    r = kenning(
        home, "search", "obfuscate email address", "--json", "-k", "10",
        "--remote", url, cwd=work, KENNING_REMOTE_TOKEN=token,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    symbols = [h["symbol"] for h in results]
    assert "obfuscate_email" not in symbols
    assert "mask_email_address" in symbols
    # Nothing of ledgerly comes from the endpoint; other repositories still do.
    assert all("endpoint" not in h for h in results if h["repo"] == "ledgerly")


def test_an_endpoint_that_is_down_gives_local_results_and_a_note(
    home: Path, tmp_path: Path
) -> None:
    work = write_tree(
        tmp_path / "mine", {"mail.py": "def send_reminder_email(user):\n    return user\n"}
    )
    url = f"http://127.0.0.1:{_free_port()}"
    r = kenning(home, "search", "send reminder email", "--json", "--remote", url, cwd=work)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [h["symbol"] for h in out["results"]] == ["send_reminder_email"]
    assert any(n.startswith(f"{url} skipped: unreachable") for n in out["notes"]), out


def test_an_incremental_rebuild_reads_and_embeds_only_what_changed(
    home: Path, built: Any, sources: Path, ray_address: str, served: tuple[str, str]
) -> None:
    out, first, _ = built
    path = sources / "ledgerly" / "utils" / "dates.py"
    path.write_text(
        path.read_text()
        + "\n\ndef days_in_fortnight(weeks=2):\n    days = 7 * weeks\n"
        + "    assert days > 0\n    return days\n"
    )
    args = [str(sources / name) for name in REPOS]
    r = kenning(
        home, "cluster", "build", *args, "--out", str(out), "--shards", "3",
        "--address", ray_address, "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["changed"] == 1
    # The new function; every other chunk of the file kept its vector.
    assert again["embedded"] == 1
    assert again["files"] == first["files"]
    assert again["chunks"] >= first["chunks"]
    # Served shards read committed data: the new function is searchable now.
    url, token = served
    status, body = _get(url + "/v1/search", token, body={"query": "days_in_fortnight", "k": 1})
    assert status == 200 and body["results"][0]["symbol"] == "days_in_fortnight", body


def test_serving_with_an_empty_token_file_is_refused(home: Path, built: Any, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("")
    token.chmod(0o600)
    r = kenning(home, "cluster", "serve", str(built[0]), "--host", "0.0.0.0",
                "--token-file", str(token))  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"kenning: error: {token}: the token file is empty; refusing to serve without a token"
    ]


def test_similar_and_status_with_a_remote(
    home: Path, served: tuple[str, str], tmp_path: Path
) -> None:
    url, token = served
    work = write_tree(
        tmp_path / "mine",
        {
            "mask.py": """
            def mask_address(email):
                user, _, host = email.partition("@")
                if not host:
                    return "***"
                return user[:1] + "*" * (len(user) - 1) + "@" + host
            """
        },
    )
    r = kenning(home, "similar", "mask.py:2", "--json", "--remote", url, cwd=work,
                KENNING_REMOTE_TOKEN=token)  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert results[0]["symbol"] == "obfuscate_email" and results[0]["endpoint"] == url, results
    assert "mask_address" not in [h["symbol"] for h in results]  # itself left out
    r = kenning(home, "status", "--json", "--remote", url, cwd=work, KENNING_REMOTE_TOKEN=token)
    assert r.returncode == 0, r.stderr
    (remote,) = json.loads(r.stdout)["remotes"]
    assert remote["state"] == "ok" and remote["remote"]["chunks"] > 100
    r = kenning(home, "status", "--json", "--remote", url, cwd=work)
    (remote,) = json.loads(r.stdout)["remotes"]
    assert remote["state"] == "error" and "401" in remote["error"]


# -- the language server with remote.endpoints ------------------------------------------


async def test_language_server_searches_endpoints_with_an_unsaved_buffer_overlay(
    served: tuple[str, str], tmp_path: Path, kenning_home: Path
) -> None:
    from tests.e2e.conftest import VSCODE, start_session, stop_session, uri

    url, token = served
    # A working copy of ledgerly with obfuscate_email renamed in an unsaved buffer.
    work = tmp_path / "ledgerly"
    shutil.copytree(CORPUS / "ledgerly", work)
    options = {
        "remote": {"endpoints": [{"url": url, "tokenEnv": "TEAM_KENNING_TOKEN"}], "timeoutMs": 5000}
    }
    s = await start_session(
        [work], kenning_home, VSCODE, init_options=options, env={"TEAM_KENNING_TOKEN": token}
    )
    try:
        await s.idle(timeout=60)
        text = (work / "utils" / "text.py").read_text().replace("obfuscate_email", "hide_email")
        s.open(work / "utils" / "text.py", text)
        deadline = time.monotonic() + 20
        while True:
            out = await s.search("obfuscate email address", k=10)
            symbols = [h["symbol"] for h in out["results"]]
            if "hide_email" in symbols or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert "hide_email" in symbols and "obfuscate_email" not in symbols, out
        assert all("endpoint" not in h for h in out["results"] if h.get("repo") == "ledgerly")
        # Other repositories come from the endpoint, with where they are.
        out = await s.search("rate limiter middleware for client ip", k=5)
        remote = [h for h in out["results"] if h.get("endpoint") == url]
        assert remote and remote[0]["repo"] == "gateway", out
        assert remote[0]["uri"].startswith(f"{url}/gateway/")
        status = await s.command("kenning.status")
        assert [(r["url"], r["state"]) for r in status["remotes"]] == [(url, "ok")]
        assert uri(work).startswith("file:")
    finally:
        await stop_session(s)


async def test_language_server_answers_locally_when_the_endpoint_is_down(
    tmp_path: Path, kenning_home: Path
) -> None:
    from tests.e2e.conftest import VSCODE, start_session, stop_session

    work = write_tree(
        tmp_path / "mine", {"mail.py": "def send_reminder_email(user):\n    return user\n"}
    )
    url = f"http://127.0.0.1:{_free_port()}"
    options = {"remote": {"endpoints": [url], "timeoutMs": 1000}}
    s = await start_session([work], kenning_home, VSCODE, init_options=options)
    try:
        await s.idle(timeout=60)
        out = await s.search("send reminder email")
        assert [h["symbol"] for h in out["results"]] == ["send_reminder_email"]
        assert any(n.startswith(f"{url} skipped: unreachable") for n in out["notes"]), out
        status = await s.command("kenning.status")
        assert status["remotes"][0]["state"] == "error"
    finally:
        await stop_session(s)
