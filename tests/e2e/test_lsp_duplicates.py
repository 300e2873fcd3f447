"""Near-duplicate hints: diagnostics on open documents, the code action, live settings."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lsprotocol import types as lsp
from tests.integration.test_processes import FAKE_CLI

from .conftest import VSCODE, Session, eventually, idle_status, uri

# A function, the same function with every name and literal changed, and an
# unrelated one of the same length; shared with the CLI's patterns test.
_FIXTURES = Path(__file__).parents[1] / "fixtures" / "near_duplicates"
FETCH = (_FIXTURES / "profile.py").read_text()
FETCH_COPY = (_FIXTURES / "billing.py").read_text()
UNRELATED = (_FIXTURES / "stats.py").read_text()

FILES = {"a/profile.py": FETCH, "b/billing.py": FETCH_COPY, "c/stats.py": UNRELATED}
ON = {"duplicates": {"diagnostics": True}}


def hints(s: Session, doc: str) -> list[lsp.Diagnostic]:
    return [d for d in s.client.diagnostics.get(doc, []) if d.source == "kenning"]


async def code_actions(s: Session, doc: str, line: int) -> list[lsp.CodeAction]:
    got = await s.client.text_document_code_action_async(
        lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=doc),
            range=lsp.Range(
                start=lsp.Position(line=line, character=4), end=lsp.Position(line=line, character=4)
            ),
            context=lsp.CodeActionContext(diagnostics=[]),
        )
    )
    return [a for a in got or [] if isinstance(a, lsp.CodeAction)]


async def test_renamed_copy_gets_a_hint_until_it_is_deleted(started, caps):
    s = await started(FILES, init_options=ON)
    await s.idle()
    doc = s.open(s.root / "a/profile.py")
    copy = uri(s.root / "b/billing.py")

    async def hinted() -> list[lsp.Diagnostic]:
        return hints(s, doc)

    (hint,) = await eventually(hinted, timeout=15)
    assert hint.severity == lsp.DiagnosticSeverity.Hint
    assert hint.message.startswith("1 similar chunk (closest: b/billing.py:4")
    # The function's lines (0-based 3-10), not the import block.
    assert hint.range.start == lsp.Position(line=3, character=0)
    assert hint.range.end.line == 10
    (related,) = hint.related_information or []
    assert related.location.uri == copy
    assert related.location.range.start.line == 3
    assert "load_account" in related.message

    # The chunk's code actions offer the near-duplicates; the command lists them.
    actions = await code_actions(s, doc, 5)
    shown = [a for a in actions if a.title == "Show 1 similar chunk"]
    assert shown and shown[0].command is not None
    out = await s.command(shown[0].command.command, *(shown[0].command.arguments or []))
    assert [r["uri"] for r in out["results"]] == [copy]
    assert out["results"][0]["symbol"] == "load_account"
    assert out["results"][0]["score"] >= 0.85
    # `kenning duplicates` answers the same from the same index, without the server.
    cli = subprocess.run(
        [
            *FAKE_CLI,
            "duplicates",
            "a/profile.py:6",
            "--no-refresh",
            "--json",
            "--path",
            str(s.root),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    same = json.loads(cli.stdout)
    assert [(r["path"], r["start_line"], r["end_line"], r["score"]) for r in same["results"]] == [
        (r["path"], r["range"]["start"]["line"] + 1, r["range"]["end"]["line"], r["score"])
        for r in out["results"]
    ]
    assert (same["chunk"], same["threshold"]) == (out["chunk"], out["threshold"])
    # The import block (line 0) has no near-duplicate worth a hint.
    assert not [a for a in await code_actions(s, doc, 0) if a.title.startswith("Show ")]

    # The copy deleted on disk: the hint goes away.
    (s.root / "b/billing.py").unlink()
    if caps == VSCODE:
        s.client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(
                changes=[lsp.FileEvent(uri=copy, type=lsp.FileChangeType.Deleted)]
            )
        )

    async def cleared() -> bool:
        return doc in s.client.diagnostics and not hints(s, doc)

    await eventually(cleared, timeout=15)


async def test_hints_follow_the_setting(started, caps):
    s = await started(FILES)
    await s.idle()
    seen = len(s.statuses)
    doc = s.open(s.root / "b/billing.py")
    # The server says when the buffer is indexed and it is idle again: with
    # hints off, nothing is left that could publish one.
    await s.status_where(
        lambda st: idle_status(st) and st["folders"][0]["buffers"] == 1, after=seen
    )
    assert not hints(s, doc)
    titles = [a.title for a in await code_actions(s, doc, 5)]
    assert titles[0] == "Find similar code"
    assert not [t for t in titles if t.startswith("Show ")]

    # Turned on without a restart: the open document gets its hint.
    s.client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"kenning": ON})
    )

    async def hinted() -> list[lsp.Diagnostic]:
        return hints(s, doc)

    (hint,) = await eventually(hinted, timeout=15)
    assert hint.related_information
    assert hint.related_information[0].location.uri == uri(s.root / "a/profile.py")

    # A threshold no pair reaches: the hint goes.
    s.client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(
            settings={"kenning": {"duplicates": {"diagnostics": True, "threshold": 1.0}}}
        )
    )

    async def cleared() -> bool:
        return not hints(s, doc)

    # Renamed literals keep the Jaccard at 1.0 but the vectors differ: below 1.0.
    await eventually(cleared, timeout=15)

    # Back on at the default, then off: published, then cleared.
    s.client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"kenning": ON})
    )
    await eventually(hinted, timeout=15)
    s.client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"kenning": {"duplicates": {}}})
    )
    await eventually(cleared, timeout=15)
