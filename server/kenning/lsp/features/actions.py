"""``textDocument/codeAction``: "Find similar code" for the chunk or selection,
"Insert template: NAME" for the templates that fit it, and "Show N similar
chunks" when it has near-duplicates (with ``duplicates.diagnostics`` on).

Each action runs a command through ``workspace/executeCommand``
(``kenning.similar``, ``kenning.applyTemplate``, ``kenning.duplicates``).
Clients that show a command's result (the VS Code extension) show the
matches; Neovim discards it, so ``clients/neovim`` has ``:KenningSimilar``.
The template and duplicate actions are extras: if either fails, the failure
is logged and the other actions are still offered.
"""

from __future__ import annotations

import logging

from lsprotocol import types as lsp

from kenning.lsp import convert, guard
from kenning.lsp.features import duplicates, templates
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)

TITLE = "Find similar code"


def register(server: KenningServer) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(resolve_provider=False))
    @guard.request("textDocument/codeAction")
    async def code_action(ls: KenningServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        if params.context.only:
            return []  # ours are kindless: shown in the general list, not in filtered ones
        uri = params.text_document.uri
        try:
            path = convert.uri_to_path(uri).resolve()
        except Exception:
            return []
        folder = ls.folder_of(path)
        if folder is None:
            return []
        r = params.range
        arg: dict[str, object]
        if (r.start.line, r.start.character) == (r.end.line, r.end.character):
            arg = {"uri": uri, "position": {"line": r.start.line, "character": r.start.character}}
        else:
            arg = {"uri": uri, "range": convert.range_json(r)}
        actions = [
            lsp.CodeAction(
                title=TITLE,
                command=lsp.Command(title=TITLE, command="kenning.similar", arguments=[arg]),
            )
        ]
        dups = duplicates.service(ls)
        if dups is not None:
            try:
                shown = dups.action(uri, r.start)
                if shown is not None:
                    actions.append(shown)
            except Exception:
                log.warning("the duplicates code action failed", exc_info=True)
        index = folder.index
        if index is not None and getattr(ls, "templates", None) is not None:
            try:
                actions.extend(await templates.code_actions(ls, uri, index, path, r.start))
            except Exception:
                log.warning("the template code actions failed", exc_info=True)
        return actions
