"""Bad input never takes the server down: each gets a clear error or a logged skip."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled

from .conftest import eventually, start_session, stop_session, uri, write_files

FILES = {
    "lib/tokens.py": '''
        def tokenize_sentence(text):
            """Split a sentence into word tokens."""
            return text.split()
        ''',
}


async def _error(coro, what: str = "") -> JsonRpcException:
    try:
        result = await coro
    except JsonRpcException as exc:
        return exc
    pytest.fail(f"expected an error ({what}), got {result!r}")


async def test_bad_commands_get_clear_errors_and_the_server_goes_on(started):
    s = await started(FILES)
    await s.idle()
    cases = [
        (s.command("kenning.nonsense", {}), "kenning.nonsense"),
        (s.command("kenning.search", "just a string"), "takes one object argument"),
        (s.command("kenning.search", {"query": ""}), "query: expected a non-empty string"),
        (s.command("kenning.search", {"query": "x", "k": -3}), "k: expected a positive integer"),
        (s.command("kenning.search", {"query": "x", "mode": "psychic"}), "mode: expected one of"),
        (s.command("kenning.search", {"query": "x", "lang": 7}), "lang: expected a string"),
        (s.command("kenning.search", {"query": "x", "explain": "yes"}), "explain: expected true"),
        (
            s.command(
                "kenning.similar", {"uri": "file:///elsewhere/x.py", "position": {"line": 0}}
            ),
            "outside every workspace folder",
        ),
        (
            s.command("kenning.similar", {"uri": uri(s.root / "lib/tokens.py")}),
            "expected {uri, position} or {uri, range}",
        ),
        (
            s.command("kenning.similar", {"uri": "untitled:Untitled-1", "position": {"line": 0}}),
            "only file: URIs",
        ),
        (
            s.command(
                "kenning.similar", {"uri": uri(s.root / "lib/tokens.py"), "position": {"line": 999}}
            ),
            "no code at that line",
        ),
        (s.command("kenning.search", {"query": "x"}, {"query": "y"}), "one object argument"),
    ]
    for coro, expected in cases:
        err = await _error(coro, expected)
        assert expected in err.message, (expected, err.message)
        assert "Traceback" not in err.message
    # ... and it still answers.
    out = await s.search("split sentence into words")
    assert out["results"][0]["uri"] == uri(s.root / "lib/tokens.py")


async def test_k_is_capped_and_responses_stay_small(started):
    files = {f"gen/m{i}.py": f"def helper_{i}(x):\n    return x + {i}\n" for i in range(260)}
    s = await started(files)
    await s.idle()
    out = await s.search("helper return x", k=100000, mode="lexical")
    assert len(out["results"]) == 200
    import json

    assert len(json.dumps(out).encode()) < 200_000


async def test_binary_huge_and_odd_documents_are_skipped(started):
    s = await started(
        {
            **FILES,
            "data/blob.bin": b"\x00\x01\x02" * 100,
            "lib/latin.py": b"x = 'caf\xe9 au lait'\n" * 3,
        }
    )
    await s.idle()
    status = await s.command("kenning.status")
    assert status["skipped"] >= 1  # binary and non-UTF-8 files on disk are logged skips
    huge = "def big():\n" + "    x = 1\n" * 200_000
    s.open(s.root / "lib/huge.py", text=huge)
    s.open(s.root / "lib/nul.py", text="\x00\x01\x02" * 100)
    s.open(s.root / "lib/tokens.py", text="def tokenize_sentence(text):\n    return text.split()\n")
    outside = s.root.parent / "outside.py"
    outside.write_text("def elsewhere():\n    pass\n")
    s.open(outside)
    # Still serving, and none of those became searchable.
    await s.idle()
    out = await s.search("big x", mode="lexical")
    assert all("huge.py" not in r["uri"] and "outside.py" not in r["uri"] for r in out["results"])

    # Each opened buffer is synced after the edit debounce, so idle() may come
    # before the later ones have been looked at (CI once saw huge.py logged, nul.py not yet).
    async def both_logged() -> bool:
        logs = "\n".join(m.message for m in s.client.log_messages)
        return "lib/huge.py: not indexed" in logs and "lib/nul.py: not indexed" in logs

    await eventually(both_logged)
    # One bad byte or a stray NUL costs a character, not the file.
    s.open(
        s.root / "lib/stray.py", text="def join_with_nul(parts):\n    return '\x00'.join(parts)\n"
    )
    # (An opened buffer is synced after the edit debounce: idle() may come first.)
    for query, path in [("join with nul", "lib/stray.py"), ("caf au lait", "lib/latin.py")]:

        async def first(query: str = query) -> dict | None:
            out = await s.search(query, mode="lexical")
            return out if out["results"] else None

        out = await eventually(first)
        assert out["results"][0]["uri"].endswith(path), (query, out)


async def test_invalid_settings_are_shown_once_and_defaults_used(started):
    s = await started(FILES, init_options={"search": {"k": "many"}, "bogus": 1})
    await s.idle()
    shown = [m.message for m in s.client.messages]
    assert len([m for m in shown if "kenning settings" in m]) == 1, shown
    assert "search.k" in shown[0]
    out = await s.search("tokens")
    assert out["results"]


async def test_settings_change_reindexes_with_new_excludes(started):
    s = await started({**FILES, "copies/copy.py": FILES["lib/tokens.py"]})
    await s.idle()
    out = await s.search("split sentence into word tokens")
    assert {r["uri"] for r in out["results"]} >= {uri(s.root / "copies/copy.py")}
    s.client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"kenning": {"exclude": ["copies/**"]}})
    )

    async def excluded() -> bool:
        await s.idle()
        out = await s.search("split sentence into word tokens")
        return bool(out["results"]) and all("copies" not in r["uri"] for r in out["results"])

    await eventually(excluded)


async def test_corrupt_index_is_rebuilt(tmp_path, kenning_home, caps):
    root = write_files(tmp_path / "ws", FILES)
    s = await start_session([root], kenning_home, caps)
    await s.idle()
    status = await s.command("kenning.status")
    db = status["folders"][0]["index_path"]
    await stop_session(s)
    with open(db, "r+b") as fh:
        fh.seek(0)
        fh.write(b"this is not a database" * 100)
    s = await start_session([root], kenning_home, caps)
    try:
        await s.idle()
        out = await s.search("split sentence into word tokens")
        assert out["results"][0]["uri"] == uri(root / "lib/tokens.py")
        assert any("rebuilt" in m.message for m in s.client.messages)
        assert (await s.command("kenning.status"))["folders"][0]["rebuilt"] is True
    finally:
        await stop_session(s)


async def test_multi_root_and_folder_changes(tmp_path, kenning_home, caps):
    a = write_files(tmp_path / "a", {"alpha.py": "def alpha_gamma_ray():\n    return 1\n"})
    b = write_files(tmp_path / "b", {"beta.py": "def beta_gamma_ray():\n    return 2\n"})
    c = write_files(tmp_path / "c", {"gamma.py": "def gamma_gamma_ray():\n    return 3\n"})
    s = await start_session([a, b], kenning_home, caps)
    try:
        await s.idle()
        out = await s.search("gamma ray")
        assert {r["uri"] for r in out["results"]} == {uri(a / "alpha.py"), uri(b / "beta.py")}
        s.client.workspace_did_change_workspace_folders(
            lsp.DidChangeWorkspaceFoldersParams(
                event=lsp.WorkspaceFoldersChangeEvent(
                    added=[lsp.WorkspaceFolder(uri=uri(c), name="c")],
                    removed=[lsp.WorkspaceFolder(uri=uri(a), name="a")],
                )
            )
        )

        async def moved() -> bool:
            await s.idle()
            out = await s.search("gamma ray")
            return {r["uri"] for r in out["results"]} == {uri(b / "beta.py"), uri(c / "gamma.py")}

        await eventually(moved)
        status = await s.command("kenning.status")
        assert sorted(f["root"] for f in status["folders"]) == [str(b), str(c)]
    finally:
        await stop_session(s)


async def test_no_workspace_folder(tmp_path, kenning_home, caps):
    s = await start_session([], kenning_home, caps)
    try:
        err = await _error(s.command("kenning.search", {"query": "anything"}))
        assert "no workspace folder is open" in err.message
        symbols = await s.client.workspace_symbol_async(lsp.WorkspaceSymbolParams(query="x"))
        assert symbols == []
    finally:
        await stop_session(s)


async def test_reindex_can_be_cancelled(started):
    files = {f"many/m{i}.py": f"def many_{i}(x):\n    return x * {i}\n" for i in range(3000)}
    s = await started(files)
    params = lsp.ExecuteCommandParams(command="kenning.reindex", arguments=[{}])
    pending = asyncio.ensure_future(
        s.client.protocol.send_request_async(
            lsp.WORKSPACE_EXECUTE_COMMAND, params, msg_id="reindex-1"
        )
    )
    await asyncio.sleep(0.3)
    s.client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id="reindex-1"))
    with pytest.raises(JsonRpcRequestCancelled):
        await pending
    # Still serving, and the first index carries on to the end.
    status = await s.idle(timeout=60)
    assert status["files"] == 3000


async def test_server_exits_when_the_editor_vanishes(started):
    s = await started(FILES)
    await s.idle()
    server = s.client._server
    assert server is not None and server.stdin is not None
    server.stdin.close()  # no shutdown, no exit: the editor crashed
    assert await asyncio.wait_for(server.wait(), timeout=10) is not None
    s.client.capabilities = None  # nothing left for the fixture to shut down
