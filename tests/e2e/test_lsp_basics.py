"""Start the server, index, search: what an editor sees."""

from __future__ import annotations

from lsprotocol import types as lsp

from .conftest import NEOVIM, uri

FILES = {
    "app/config.py": '''
        import json


        def load_config(path):
            """Parse the json config file at path."""
            with open(path) as fh:
                return json.load(fh)
        ''',
    "app/net.py": '''
        import urllib.request


        def fetch_page(url, retries=3):
            """Download a web page, retrying on network errors."""
            for attempt in range(retries):
                try:
                    return urllib.request.urlopen(url).read()
                except OSError:
                    continue
        ''',
    "README.md": "# demo\n\nA demo project.\n",
}


async def test_first_index_reports_progress_then_search_answers(started, caps):
    s = await started(FILES)
    status = await s.idle()
    assert status["files"] == 3
    assert status["pending"] == 0
    assert status["model"] == "fake-bow-64"

    # Progress in the editor's own UI: begin, reports, end, on a token we created.
    tokens = [t for t in s.client.progress_reports if str(t).startswith("kenning/index/")]
    assert tokens, s.client.progress_reports
    kinds = [p.kind for p in s.client.progress_reports[tokens[0]]]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    assert "report" in kinds

    out = await s.search("parse json config")
    assert out["results"], out
    top = out["results"][0]
    assert top["uri"] == uri(s.root / "app/config.py")
    assert set(top) >= {"uri", "range", "symbol", "kind", "language", "score", "snippet"}
    # The function itself, from its def line (0-based 3), not the import block.
    assert top["range"]["start"] == {"line": 3, "character": 0}
    assert top["symbol"] == "load_config" and top["kind"] == "function"
    assert "load_config" in top["snippet"]
    assert top["language"] == "python"
    assert out["took_ms"] >= 0


async def test_explain_says_why_each_result_scored_as_it_did(started):
    s = await started(FILES)
    await s.idle()
    plain = await s.search("parse json config")
    assert "explain" not in plain["results"][0]
    out = await s.search("parse json config", explain=True)
    top = out["results"][0]
    assert top["uri"] == uri(s.root / "app/config.py")
    # The evidence behind the fused score: the word match and the cosine, raw.
    assert top["explain"]["bm25"] is not None and top["explain"]["similarity"] is not None
    assert [r["uri"] for r in out["results"]] == [r["uri"] for r in plain["results"]]


async def test_search_filters_by_language_and_glob(started):
    s = await started(FILES)
    await s.idle()
    md = await s.search("demo project", lang="markdown")
    assert [r["language"] for r in md["results"]] == ["markdown"]
    net = await s.search("page", glob=["app/net.py"])
    assert {r["uri"] for r in net["results"]} == {uri(s.root / "app/net.py")}


async def test_workspace_symbol_answers_semantically(started, caps):
    s = await started(FILES)
    await s.idle()
    symbols = await s.client.workspace_symbol_async(
        lsp.WorkspaceSymbolParams(query="download web page with retries")
    )
    assert symbols, "no symbols"
    first = symbols[0]
    # SymbolInformation with a full location: what Neovim 0.7 needs.
    assert isinstance(first, lsp.SymbolInformation)
    assert first.location.uri == uri(s.root / "app/net.py")
    assert first.location.range.start.line == 3 and first.name == "fetch_page"
    assert await s.client.workspace_symbol_async(lsp.WorkspaceSymbolParams(query="")) == []


async def test_code_action_finds_similar_code(started):
    files = dict(FILES)
    files["app/config2.py"] = FILES["app/config.py"].replace("load_config", "read_settings")
    s = await started(files)
    await s.idle()
    doc = s.open(s.root / "app/config.py")
    actions = await s.client.text_document_code_action_async(
        lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=doc),
            range=lsp.Range(
                start=lsp.Position(line=4, character=4), end=lsp.Position(line=4, character=4)
            ),
            context=lsp.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions and actions[0].title == "Find similar code"
    cmd = actions[0].command
    assert cmd is not None and cmd.command == "kenning.similar"
    out = await s.command(cmd.command, *(cmd.arguments or []))
    uris = [r["uri"] for r in out["results"]]
    assert uris[0] == uri(s.root / "app/config2.py")
    # The chunk itself (load_config, lines 3-6) is left out; the file's import
    # block is another chunk and may appear.
    assert not [
        r
        for r in out["results"]
        if r["uri"] == doc and r["range"]["start"]["line"] <= 4 <= r["range"]["end"]["line"]
    ]

    # A selection works too.
    sel = await s.command(
        "kenning.similar",
        {
            "uri": doc,
            "range": {"start": {"line": 3, "character": 0}, "end": {"line": 6, "character": 0}},
            "k": 2,
        },
    )
    assert len(sel["results"]) <= 2 and sel["results"]


async def test_status_and_reindex(started):
    s = await started(FILES)
    await s.idle()
    (s.root / "app" / "extra.py").write_text("def extra_helper():\n    return 42\n")
    out = await s.command("kenning.reindex", {})
    assert out["files"] == 4
    assert out["chunks"] >= 4
    assert out["took_s"] >= 0
    status = await s.command("kenning.status")
    assert status["files"] == 4 and status["pending"] == 0
    assert status["metrics"]["watching"] in ("client", "watchfiles")
    assert [f["root"] for f in status["folders"]] == [str(s.root)]


async def test_shutdown_exits_cleanly(started, caps):
    s = await started(FILES)
    await s.idle()
    await s.client.shutdown_async(None)
    s.client.exit(None)
    server = s.client._server
    assert server is not None
    assert await server.wait() == 0
    s.client.capabilities = None  # already shut down: the fixture has nothing to do
    assert caps in ("visual-studio-code", NEOVIM)
