"""Drive the real language server over stdio, as an editor would.

The server runs as a subprocess (``fake_server.py``: ``kenning lsp`` with the
fake embedder), with the client capabilities of a real editor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Union

import pytest
import pytest_asyncio
from lsprotocol import types as lsp
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from tests.conftest import write_tree

HERE = Path(__file__).resolve().parent
SERVER_SRC = HERE.parent.parent / "server"
FAKE_SERVER = [sys.executable, str(HERE / "fake_server.py")]
REAL_SERVER = [sys.executable, "-m", "kenning", "lsp"]

VSCODE = "visual-studio-code"
NEOVIM = "neovim@v0.7.0"


def uri(path: Path) -> str:
    u = from_fs_path(str(path))
    assert u is not None
    return u


# The same helper as the unit tests'.
write_files = write_tree


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KENNING_HOME"] = str(home)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(SERVER_SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def _plain(obj: Any) -> Any:
    """A notification's params as plain JSON values (pygls hands them over as objects)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple) and not hasattr(obj, "_asdict"):
        return [_plain(v) for v in obj]
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    return obj


def idle_status(status: dict[str, Any]) -> bool:
    m = status["metrics"]
    return status["pending"] == 0 and m["indexing"] is None and not m["queued"] and not m["syncing"]


class Session:
    def __init__(self, client: LanguageClient, roots: list[Path], caps: str) -> None:
        self.client = client
        self.roots = roots
        self.caps = caps
        self.registrations: list[lsp.Registration] = []
        # Every kenning/status notification, oldest first; _status_seen is set on each.
        self.statuses: list[dict[str, Any]] = []
        self._status_seen = asyncio.Event()

        @client.feature("kenning/status")
        def on_status(params: Any) -> None:
            self.statuses.append(_plain(params))
            self._status_seen.set()

    async def status_where(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 20, after: int = 0
    ) -> dict[str, Any]:
        """The first ``kenning/status`` notification (from the ``after``-th on) that
        passes ``check``, waiting for the server to send it: no polling."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for status in self.statuses[seen:]:
                if check(status):
                    return status
            seen = max(seen, len(self.statuses))
            self._status_seen.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                last = self.statuses[-1] if self.statuses else None
                raise AssertionError(f"no kenning/status passed within {timeout}s (last: {last})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_seen.wait(), left)

    @property
    def root(self) -> Path:
        return self.roots[0]

    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=name, arguments=list(args))
        )

    async def search(self, query: str, **kw: Any) -> dict[str, Any]:
        return await self.command("kenning.search", {"query": query, **kw})

    async def idle(self, timeout: float = 20) -> dict[str, Any]:
        """Wait until the server has nothing left to index or embed."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.command("kenning.status")
            m = status["metrics"]
            if (
                status["pending"] == 0
                and m["indexing"] is None
                and not m["queued"]
                and not m["syncing"]
            ):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never went idle: {status}")
            await asyncio.sleep(0.05)

    def open(self, path: Path, text: str | None = None, version: int = 1) -> str:
        u = uri(path)
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(
                    uri=u,
                    language_id="python",
                    version=version,
                    text=path.read_text() if text is None else text,
                )
            )
        )
        return u


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


def _fix_code_action_parsing(client: LanguageClient) -> None:
    # lsprotocol's client-side hook reads any object with a "command" key as a
    # Command, so a CodeAction carrying a Command comes back garbled. The wire
    # format is right (clients read it fine); only this test client needs help.
    converter = client.protocol._converter

    def hook(obj: Any, _: type) -> lsp.Command | lsp.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, lsp.Command)
        return converter.structure(obj, lsp.CodeAction)

    # lsprotocol declares the result with typing.Union, which is what cattrs dispatches on.
    converter.register_structure_hook(Union[lsp.Command, lsp.CodeAction], hook)  # type: ignore[arg-type]  # noqa: UP007


async def start_session(
    roots: list[Path],
    home: Path,
    caps: str,
    init_options: Any = None,
    accept_registrations: bool = True,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Session:
    """``env`` adds to the server's environment; ``command`` replaces the fake
    server (``REAL_SERVER`` runs ``kenning lsp`` with the real model)."""
    config = ClientServerConfig(
        server_command=command or FAKE_SERVER, server_env={**server_env(home), **(env or {})}
    )
    client = await config.start()
    session = Session(client, roots, caps)  # type: ignore[arg-type]
    _fix_code_action_parsing(client)

    if accept_registrations:

        @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
        def register_capability(params: lsp.RegistrationParams) -> None:
            session.registrations.extend(params.registrations)

    folders = [lsp.WorkspaceFolder(uri=uri(r), name=r.name) for r in roots]
    await client.initialize_session(
        lsp.InitializeParams(
            capabilities=client_capabilities(caps),
            root_uri=folders[0].uri if folders else None,
            workspace_folders=folders or None,
            initialization_options=init_options,
        )
    )
    return session


async def stop_session(session: Session) -> None:
    await session.client.shutdown_session()
    await session.client.stop()


@pytest.fixture(params=[VSCODE, NEOVIM])
def caps(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture
async def started(
    tmp_path: Path, kenning_home: Path, caps: str
) -> AsyncIterator[Callable[..., Awaitable[Session]]]:
    """A factory: ``await started(files, init_options=...)`` -> a Session."""
    sessions: list[Session] = []

    async def start(
        files: dict[str, str | bytes] | None = None,
        roots: list[Path] | None = None,
        **kw: Any,
    ) -> Session:
        root = tmp_path / "ws"
        root.mkdir(exist_ok=True)
        write_files(root, files or {})
        session = await start_session(roots or [root], kenning_home, caps, **kw)
        sessions.append(session)
        return session

    yield start
    for s in sessions:
        await stop_session(s)
