"""Live sync: unsaved edits and changes made outside the editor become searchable."""

from __future__ import annotations

from lsprotocol import types as lsp

from .conftest import VSCODE, eventually, uri

FILES = {
    "src/shapes.py": """
        def area_of_circle(radius):
            return 3.14159 * radius * radius
        """,
    "src/other.py": "def unrelated():\n    return None\n",
}

NEW_FUNCTION = '''

def frobnicate_widgets(widgets):
    """Polish every widget until it shines."""
    return [w.polish() for w in widgets]
'''


def _found(out: dict, name: str) -> bool:
    return any(name in (r["symbol"] or "") or name in r["snippet"] for r in out["results"])


async def test_unsaved_edit_becomes_searchable(started):
    s = await started(FILES)
    await s.idle()
    path = s.root / "src/shapes.py"
    on_disk = path.read_text()
    doc = s.open(path, version=3)
    end = len(on_disk.splitlines())
    # An incremental change; versions jump like Neovim's do.
    s.client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=doc, version=17),
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

    async def found() -> bool:
        return _found(await s.search("frobnicate widgets polish"), "frobnicate_widgets")

    await eventually(found, timeout=10)
    assert path.read_text() == on_disk  # only the buffer changed
    status = await s.idle()
    assert status["folders"][0]["buffers"] == 1

    # Closing the unsaved buffer brings back the file on disk.
    s.client.text_document_did_close(
        lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=doc))
    )

    async def gone() -> bool:
        return not _found(await s.search("frobnicate widgets polish"), "frobnicate_widgets")

    await eventually(gone, timeout=10)


async def test_the_last_of_quick_edits_wins(started):
    s = await started(FILES, init_options={"index": {"debounceMs": 50}})
    await s.idle()
    path = s.root / "src/other.py"
    doc = s.open(path)
    for version, name in enumerate(["first_draft_fn", "second_draft_fn", "final_name_fn"], 5):
        s.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=doc, version=version * 3),
                content_changes=[
                    lsp.TextDocumentContentChangeWholeDocument(
                        text=f"def {name}():\n    return 'draft'\n"
                    )
                ],
            )
        )

    async def final() -> bool:
        return _found(await s.search("final_name_fn"), "final_name_fn")

    await eventually(final)
    await s.idle()
    out = await s.search("draft", k=50)
    names = {r["symbol"] or r["snippet"] for r in out["results"] if r["uri"] == doc}
    assert all("first_draft_fn" not in n and "second_draft_fn" not in n for n in names)


async def test_file_changed_outside_the_editor(started, caps):
    s = await started(FILES)
    await s.idle()
    new = s.root / "src/generated.py"
    new.write_text("def quantum_flux_capacitor():\n    return 'charged'\n")
    (s.root / "src/other.py").unlink()
    if caps == VSCODE:
        # VS Code watches files for us: the server asked it to.
        assert [r.method for r in s.registrations] == [lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES]
        s.client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(
                changes=[
                    lsp.FileEvent(uri=uri(new), type=lsp.FileChangeType.Created),
                    lsp.FileEvent(
                        uri=uri(s.root / "src/other.py"), type=lsp.FileChangeType.Deleted
                    ),
                ]
            )
        )
    # Neovim 0.7 cannot watch files: the server's own watcher sees the change.

    async def found() -> bool:
        return _found(await s.search("quantum flux capacitor"), "quantum_flux_capacitor")

    await eventually(found, timeout=10)

    async def deleted() -> bool:
        out = await s.search("unrelated")
        return all(r["uri"] != uri(s.root / "src/other.py") for r in out["results"])

    await eventually(deleted, timeout=10)
    status = await s.command("kenning.status")
    assert status["metrics"]["watching"] == ("client" if caps == VSCODE else "watchfiles")


async def test_client_refusing_registration_falls_back_to_own_watcher(started, caps):
    s = await started(FILES, accept_registrations=False)
    await s.idle()
    status = await s.command("kenning.status")
    assert status["metrics"]["watching"] == "watchfiles"
    (s.root / "src/late.py").write_text("def zeppelin_mooring_mast():\n    return 1\n")

    async def found() -> bool:
        return _found(await s.search("zeppelin mooring mast"), "zeppelin_mooring_mast")

    await eventually(found, timeout=10)
