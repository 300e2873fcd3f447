"""``textDocument/codeAction``: "Find similar code" for the chunk or selection.

The action runs ``kenning.similar`` through ``workspace/executeCommand``.
Clients that show a command's result (the VS Code extension) show the
matches; Neovim discards it, so ``clients/neovim`` has ``:KenningSimilar``.
"""

from __future__ import annotations

from lsprotocol import types as lsp

from kenning.lsp import convert, guard
from kenning.lsp.server import KenningServer

TITLE = "Find similar code"


def register(server: KenningServer) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(resolve_provider=False))
    @guard.request("textDocument/codeAction")
    async def code_action(ls: KenningServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        if params.context.only:
            return []  # ours is kindless: shown in the general list, not in filtered ones
        uri = params.text_document.uri
        try:
            path = convert.uri_to_path(uri).resolve()
        except Exception:
            return []
        if ls.folder_of(path) is None:
            return []
        r = params.range
        arg: dict[str, object]
        if (r.start.line, r.start.character) == (r.end.line, r.end.character):
            arg = {"uri": uri, "position": {"line": r.start.line, "character": r.start.character}}
        else:
            arg = {"uri": uri, "range": convert.range_json(r)}
        return [
            lsp.CodeAction(
                title=TITLE,
                command=lsp.Command(title=TITLE, command="kenning.similar", arguments=[arg]),
            )
        ]
