"""Templates in the editor: match, insert (snippet or plain text), complete, code actions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from kenning.engine.templates import TemplateLibrary

from . import conftest as harness
from .conftest import NEOVIM, VSCODE, Session, eventually, uri

# An Elixir module written like a GenServer, shared with the other template tests.
GENSERVER_LIKE = (Path(__file__).parents[1] / "fixtures" / "genserver_like.ex").read_text()

PY = "import os\n\n\ndef main():\n    if True:\n        \n    return os.getcwd()\n"
BLANK_LINE = 5  # 0-based: the line holding only "        " inside the if

FILES = {"lib/rate_limiter.ex": GENSERVER_LIKE, "app/main.py": PY}
HANDLE_CAST = 35  # 0-based, inside handle_cast of the GenServer template's own text


def builtin(template_id: str) -> Any:
    return TemplateLibrary(None, user_dir=Path("/nonexistent"), disk_cache=False).get(template_id)


def record_edits(s: Session) -> list[lsp.ApplyWorkspaceEditParams]:
    edits: list[lsp.ApplyWorkspaceEditParams] = []

    @s.client.feature(lsp.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        edits.append(params)
        return lsp.ApplyWorkspaceEditResult(applied=True)

    return edits


def at(line: int, character: int = 0) -> dict[str, int]:
    return {"line": line, "character": character}


async def warm(s: Session, doc: str, line: int) -> list[lsp.CodeAction]:
    """Code actions at ``line`` once the templates are embedded (in the background)."""

    async def actions() -> list[lsp.CodeAction]:
        got = await s.client.text_document_code_action_async(
            lsp.CodeActionParams(
                text_document=lsp.TextDocumentIdentifier(uri=doc),
                range=lsp.Range(
                    start=lsp.Position(line=line, character=2),
                    end=lsp.Position(line=line, character=2),
                ),
                context=lsp.CodeActionContext(diagnostics=[]),
            )
        )
        out = [a for a in got or [] if isinstance(a, lsp.CodeAction)]
        return out if any(a.title.startswith("Insert template:") for a in out) else []

    return await eventually(actions, timeout=15)


async def test_match_insert_and_unknown_template(started, caps):
    worker = builtin("elixir-genserver").text
    s = await started({**FILES, "lib/worker.ex": worker})
    edits = record_edits(s)
    await s.idle()
    ex = s.open(s.root / "lib/rate_limiter.ex")
    out = await s.command("kenning.matchTemplates", {"uri": ex, "position": at(15, 4)})
    assert out["matches"], out
    first = out["matches"][0]
    assert set(first) >= {"id", "name", "language", "score", "description", "why"}
    # Elixir code gets Elixir templates only.
    assert {m["language"] for m in out["matches"]} == {"elixir"}
    scores = [m["score"] for m in out["matches"]]
    assert scores == sorted(scores, reverse=True)

    # "Insert template: NAME" code actions carry the applyTemplate command.
    # (The fake embedder scores by shared words: code from the template fits it.)
    actions = await warm(s, uri(s.root / "lib/worker.ex"), HANDLE_CAST)
    assert actions[0].title == "Find similar code"
    inserts = [a for a in actions if a.title.startswith("Insert template:")]
    assert 1 <= len(inserts) <= 3
    cmd = inserts[0].command
    assert cmd is not None and cmd.command == "kenning.applyTemplate"
    assert cmd.arguments and cmd.arguments[0]["templateId"] == "elixir-genserver"

    # Insert into the blank, indented line of a Python file: plain text (neither
    # client advertises snippet edits), every line indented like that line.
    py = s.open(s.root / "app/main.py", text=PY)
    done = await s.command(
        "kenning.applyTemplate",
        {"uri": py, "position": at(BLANK_LINE, 8), "templateId": "python-retry-decorator"},
    )
    assert done["applied"] is True and done["snippet"] is False
    assert len(edits) == 1
    change = edits[0].edit
    text_edits = change.changes[py] if change.changes else []
    assert len(text_edits) == 1
    edit = text_edits[0]
    assert edit.range.start == lsp.Position(line=BLANK_LINE, character=0)
    assert edit.range.end == lsp.Position(line=BLANK_LINE, character=8)
    plain = builtin("python-retry-decorator").text
    assert "${" not in edit.new_text and "$0" not in edit.new_text
    lines = edit.new_text.split("\n")
    assert lines[0] == "        " + plain.split("\n")[0]
    assert all(ln.startswith("        ") or not ln.strip() for ln in lines)
    assert [ln.strip() for ln in lines] == [ln.strip() for ln in plain.split("\n")]

    # An unknown template is a clear error, and the server goes on serving.
    with pytest.raises(JsonRpcException) as err:
        await s.command(
            "kenning.applyTemplate", {"uri": py, "position": at(0), "templateId": "no-such-thing"}
        )
    assert "unknown template 'no-such-thing'" in str(err.value)
    with pytest.raises(JsonRpcException) as err:
        await s.command("kenning.applyTemplate", {"uri": py, "position": at(0)})
    assert "templateId" in str(err.value)
    assert len(edits) == 1
    assert (await s.search("rate limiter genserver"))["results"]


@pytest.mark.parametrize("caps", [VSCODE])
async def test_snippet_edit_when_the_client_supports_it(started, monkeypatch):
    real = harness.client_capabilities

    def with_snippet_edits(spec: str) -> lsp.ClientCapabilities:
        caps = real(spec)
        assert caps.workspace is not None and caps.workspace.workspace_edit is not None
        edit = attrs.evolve(caps.workspace.workspace_edit, snippet_edit_support=True)
        return attrs.evolve(caps, workspace=attrs.evolve(caps.workspace, workspace_edit=edit))

    monkeypatch.setattr(harness, "client_capabilities", with_snippet_edits)
    s = await started(FILES)
    edits = record_edits(s)
    py = s.open(s.root / "app/main.py", text=PY)
    done = await s.command(
        "kenning.applyTemplate",
        {"uri": py, "position": at(BLANK_LINE, 8), "templateId": "python-retry-decorator"},
    )
    assert done["snippet"] is True
    (change,) = edits[0].edit.document_changes or []
    assert isinstance(change, lsp.TextDocumentEdit)
    assert change.text_document.uri == py and change.text_document.version == 1
    (edit,) = change.edits
    assert isinstance(edit, lsp.SnippetTextEdit)
    body = builtin("python-retry-decorator").body
    assert edit.snippet.value.split("\n")[0] == "        " + body.split("\n")[0]
    assert "${1:" in edit.snippet.value


async def test_completion_on_a_kenning_comment(started, caps):
    s = await started(FILES)
    await s.idle()
    text = "import time\n\n    # kenning: retry with backoff\nx = 1\n"
    doc = s.open(s.root / "app/main.py", text=text)
    line = "    # kenning: retry with backoff"
    result = await s.client.text_document_completion_async(
        lsp.CompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=doc),
            position=lsp.Position(line=2, character=len(line)),
        )
    )
    assert isinstance(result, lsp.CompletionList) and result.items
    ids = [i.label_details.description for i in result.items if i.label_details]
    assert any("retry" in i for i in ids[:2]), ids
    assert all(i.startswith("python-") for i in ids), ids
    item = result.items[0]
    assert isinstance(item.text_edit, lsp.TextEdit)
    # The whole comment line is replaced, and the client filters by that line.
    assert item.text_edit.range == lsp.Range(
        start=lsp.Position(line=2, character=0), end=lsp.Position(line=2, character=len(line))
    )
    assert item.filter_text == line
    assert item.text_edit.new_text.startswith("    ")
    if caps == VSCODE:
        assert item.insert_text_format == lsp.InsertTextFormat.Snippet
        assert "${" in item.text_edit.new_text
    else:
        assert caps == NEOVIM
        assert item.insert_text_format == lsp.InsertTextFormat.PlainText
        assert "${" not in item.text_edit.new_text

    # An ordinary line offers nothing.
    plain = await s.client.text_document_completion_async(
        lsp.CompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=doc),
            position=lsp.Position(line=3, character=5),
        )
    )
    assert plain is None or not (plain.items if isinstance(plain, lsp.CompletionList) else plain)


REAL_SERVER = [sys.executable, "-m", "kenning", "lsp"]


@pytest.mark.model
@pytest.mark.parametrize("caps", [VSCODE])
async def test_genserver_module_matches_the_genserver_template_with_the_real_model(
    started, monkeypatch
):
    monkeypatch.setattr(harness, "FAKE_SERVER", REAL_SERVER)
    s = await started({"lib/rate_limiter.ex": GENSERVER_LIKE})
    status = await s.idle(timeout=120)
    assert status["model"] and status["model"] != "fake-bow-64"
    ex = uri(s.root / "lib/rate_limiter.ex")
    out = await s.command("kenning.matchTemplates", {"uri": ex, "position": at(15, 4)})
    ids = [m["id"] for m in out["matches"]]
    assert ids[0] == "elixir-genserver", out["matches"]
    assert out["matches"][0]["score"] - out["matches"][1]["score"] > 0.1
    assert "similar to" in out["matches"][0]["why"]
    # The whole module selected: a clearer fit still.
    whole = {"start": at(0), "end": at(len(GENSERVER_LIKE.splitlines()))}
    out = await s.command("kenning.matchTemplates", {"uri": ex, "range": whole})
    assert out["matches"][0]["id"] == "elixir-genserver" and out["matches"][0]["score"] > 0.6
