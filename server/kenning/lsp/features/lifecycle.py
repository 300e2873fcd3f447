"""initialize, settings, workspace folders, shutdown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from kenning.lsp import guard
from kenning.lsp.convert import uri_to_path
from kenning.lsp.features import register_all
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)


def register(server: KenningServer) -> None:
    server.feature(lsp.INITIALIZE)(initialize)
    server.feature(lsp.INITIALIZED)(initialized)
    server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    server.feature(lsp.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)(did_change_folders)
    server.feature(lsp.SHUTDOWN)(shutdown)


def _roots(params: lsp.InitializeParams) -> list[Path]:
    uris: list[str] = []
    if params.workspace_folders:
        uris = [f.uri for f in params.workspace_folders]
    elif params.root_uri:
        uris = [params.root_uri]
    elif params.root_path:
        return [Path(params.root_path)]
    roots = []
    for uri in uris:
        try:
            roots.append(uri_to_path(uri))
        except Exception as exc:
            log.warning("workspace folder %s left out: %s", uri, exc)
    return roots


def initialize(ls: KenningServer, params: lsp.InitializeParams) -> None:
    ls.loop = asyncio.get_running_loop()
    # No folder is open yet: this only sets what they will be opened with.
    ls.session.apply_settings(ls.read_settings(params.initialization_options))
    ls.initial_roots = _roots(params)
    client = params.client_info.name if params.client_info else "an unnamed client"
    log.info("initialize from %s; folders: %s", client, [str(r) for r in ls.initial_roots])
    names = register_all(ls, ls.settings)
    log.info("features: %s", ", ".join(names))


@guard.notification("initialized")
async def initialized(ls: KenningServer, params: lsp.InitializedParams) -> None:
    for note in ls.notes:
        ls.show_warning(note)
    for root in ls.initial_roots:
        ls.add_folder(root)
    if ls.folders:
        # Searches are answered from the existing index at once; this brings it up to date.
        ls.start_refresh("kenning: indexing")
    else:
        log.info("no workspace folder: nothing to index until one is added")
    if ls.watching is not None:
        await ls.watching.start()


def _section(data: Any) -> Any:
    if isinstance(data, dict) and "kenning" in data:
        return data["kenning"]
    return data


@guard.notification("workspace/didChangeConfiguration")
async def did_change_configuration(
    ls: KenningServer, params: lsp.DidChangeConfigurationParams
) -> None:
    data = _section(params.settings)
    caps = ls.client_capabilities
    if data is None and caps and caps.workspace and caps.workspace.configuration:
        # The pull model: the notification carries nothing, the client answers this.
        answer = await ls.workspace_configuration_async(
            lsp.ConfigurationParams(items=[lsp.ConfigurationItem(section="kenning")])
        )
        data = answer[0] if answer else None
    if data is None:
        return
    ls.apply_settings(ls.read_settings(data))


@guard.notification("workspace/didChangeWorkspaceFolders")
async def did_change_folders(
    ls: KenningServer, params: lsp.DidChangeWorkspaceFoldersParams
) -> None:
    for folder in params.event.removed:
        ls.remove_folder(uri_to_path(folder.uri))
        log.info("workspace folder removed: %s", folder.uri)
    added = []
    for folder in params.event.added:
        f = ls.add_folder(uri_to_path(folder.uri))
        if f is not None:
            added.append(f)
            log.info("workspace folder added: %s", folder.uri)
    if added:
        if ls.sync is not None:
            ls.sync.resync_open_documents()
        if ls.watching is not None:
            await ls.watching.folders_changed()
        ls.start_refresh("kenning: indexing", added)


async def shutdown(ls: KenningServer, params: None) -> None:
    log.info("shutting down")
    await asyncio.get_running_loop().run_in_executor(None, ls.stop_work)
