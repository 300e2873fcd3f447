"""``workspace/symbol`` answered by semantic search.

Every client's symbol picker (VS Code's "Go to Symbol in Workspace", Neovim's
``vim.lsp.buf.workspace_symbol`` and Telescope, Helix's workspace symbol
picker) thereby searches by meaning with no client code. Results are
``SymbolInformation`` with full locations, which every client understands.
"""

from __future__ import annotations

import logging

from lsprotocol import types as lsp

from kenning.errors import UsageError
from kenning.lsp import convert, guard
from kenning.lsp.features.commands import search
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)


def register(server: KenningServer) -> None:
    @server.feature(lsp.WORKSPACE_SYMBOL)
    @guard.request("workspace/symbol")
    async def workspace_symbol(
        ls: KenningServer, params: lsp.WorkspaceSymbolParams
    ) -> list[lsp.SymbolInformation]:
        query = params.query.strip()
        # Pickers send "" when they open; an empty list is the honest answer.
        if not query or not ls.settings.workspace_symbol.semantic or not ls.folders:
            return []
        try:
            answer = await search(ls, {"query": query}, ls.settings.search.k)
        except UsageError:
            return []  # a query of punctuation only: no symbols, not an error
        return [convert.hit_symbol(h) for h in answer.merged.results]
