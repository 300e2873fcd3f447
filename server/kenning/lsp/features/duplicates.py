"""Near-duplicate hints in the editor: "N similar chunks" diagnostics and ``kenning.duplicates``.

Off unless ``duplicates.diagnostics`` is on (followed live: turning it on or
off in the settings takes effect without a restart). The near-duplicate state
itself is the session's (:mod:`kenning.engine.duplicates`, one per folder,
kept in step with the index); this module only publishes it. When the
session says a folder's hints may have changed
(:class:`~kenning.engine.session.DuplicatesChanged`: built, updated after a
write, or gone), the hints of the folder's open documents are computed on the
query pool and published from the event loop: hint-severity diagnostics, one
per chunk that has near-duplicates, with the other chunks as related
information; cleared when the document closes or the setting turns off.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from kenning.engine.duplicates import FolderHints, Hint, hint_at
from kenning.engine.session import DuplicatesChanged, Event
from kenning.errors import KenningError
from kenning.lsp import convert, guard
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)

MAX_RELATED = 20
SOURCE = "kenning"


def _plural(n: int) -> str:
    return f"{n} similar chunk" + ("" if n == 1 else "s")


class DuplicateHints:
    """The diagnostics of open documents, following the session's near-duplicate state."""

    def __init__(self, server: KenningServer) -> None:
        self.server = server
        # What each document was last given, by URI (the event loop's own).
        self.hints: dict[str, list[Hint]] = {}
        self._sent: dict[str, list[lsp.Diagnostic]] = {}
        self._queued: set[Path] = set()
        self._queued_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.server.settings.duplicates.diagnostics)

    # -- session events (any thread) ----------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, DuplicatesChanged):
            self._queue_refresh(event.root)

    def _queue_refresh(self, root: Path) -> None:
        # One pending refresh per folder: a burst of edits costs one recompute.
        with self._queued_lock:
            if root in self._queued:
                return
            self._queued.add(root)
        try:
            self.server.queries.submit(self._refresh_open, root)
        except RuntimeError:
            with self._queued_lock:
                self._queued.discard(root)  # shutting down

    def _refresh_open(self, root: Path) -> None:
        """The hints of every open document of the folder, then publish (query thread)."""
        with self._queued_lock:
            self._queued.discard(root)
        state = self.server.session.duplicate_state(root)
        results: dict[str, list[Hint]] = {}
        if state is not None:
            for uri in list(self.server.workspace.text_documents):
                try:
                    path = convert.uri_to_path(uri).resolve()
                except (KenningError, OSError):
                    continue
                folder = self.server.folder_of(path)
                if folder is None or folder.root != root:
                    continue  # outside, or in a nested folder of its own
                try:
                    results[uri] = self.server.session.hints(state, path)
                except Exception:
                    log.warning("duplicate hints for %s failed", path, exc_info=True)
        self.server.call_on_loop(self._publish_folder, root, state, results)

    # -- publishing (event loop) ------------------------------------------------------

    def _publish_folder(
        self, root: Path, state: FolderHints | None, results: dict[str, list[Hint]]
    ) -> None:
        current = self.server.session.duplicate_state(root) is state and self.enabled
        for uri in [u for u in self._sent if u not in results and _under(u, root)]:
            self.hints.pop(uri, None)
            self._send(uri, [])
            self._sent.pop(uri, None)
        if not current or state is None:
            return
        for uri, hints in results.items():
            doc = self.server.workspace.text_documents.get(uri)
            if doc is None:
                continue  # closed meanwhile
            self.hints[uri] = hints
            diagnostics = [self._diagnostic(state, doc.lines, h) for h in hints]
            if self._sent.get(uri) == diagnostics:
                continue
            self._send(uri, diagnostics)
            self._sent[uri] = diagnostics

    def _diagnostic(self, state: FolderHints, lines: list[str], hint: Hint) -> lsp.Diagnostic:
        row = hint.chunk
        last = min(row.end_line, len(lines)) - 1
        end_char = 0
        if last >= 0:
            end_char = self.server.workspace.position_codec.client_num_units(
                lines[last].rstrip("\r\n")
            )
        best, best_sim = hint.others[0]
        where = f"{best.path}:{best.start_line}"
        return lsp.Diagnostic(
            range=lsp.Range(
                start=lsp.Position(line=max(0, row.start_line - 1), character=0),
                end=lsp.Position(line=max(0, last), character=end_char),
            ),
            message=f"{_plural(len(hint.others))} (closest: {where}, similarity {best_sim:.2f})",
            severity=lsp.DiagnosticSeverity.Hint,
            source=SOURCE,
            code="duplicate",
            related_information=[
                lsp.DiagnosticRelatedInformation(
                    location=lsp.Location(
                        uri=convert.path_to_uri(state.index.root / other.path),
                        range=lsp.Range(
                            start=lsp.Position(line=max(0, other.start_line - 1), character=0),
                            end=lsp.Position(line=other.end_line, character=0),
                        ),
                    ),
                    message=f"{other.symbol or other.kind} ({sim:.2f})",
                )
                for other, sim in hint.others[:MAX_RELATED]
            ],
        )

    def _send(self, uri: str, diagnostics: list[lsp.Diagnostic]) -> None:
        with contextlib.suppress(Exception):  # the client may be gone
            self.server.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
            )

    # -- code action and command ------------------------------------------------------

    def action(self, uri: str, position: lsp.Position) -> lsp.CodeAction | None:
        """ "Show N similar chunks" when the chunk at ``position`` has near-duplicates."""
        if not self.enabled:
            return None
        hint = hint_at(self.hints.get(uri, []), position.line + 1)
        if hint is None:
            return None
        title = f"Show {_plural(len(hint.others))}"
        arg = {"uri": uri, "position": {"line": position.line, "character": position.character}}
        return lsp.CodeAction(
            title=title,
            command=lsp.Command(title=title, command="kenning.duplicates", arguments=[arg]),
        )

    async def command(self, obj: dict[str, Any]) -> dict[str, Any]:
        uri, line, _ = convert.get_location(obj)
        if not self.enabled:
            raise KenningError(
                "near-duplicate detection is off: set kenning.duplicates.diagnostics to true"
            )
        _, path = await self.server.index_for(uri)
        folder = self.server.folder_of(path)
        if folder is None:
            raise KenningError(f"{uri}: outside every workspace folder")
        if self.server.sync is not None:
            await self.server.sync.flush_and_wait(uri)
        found = await self.server.in_query_thread(
            self.server.session.duplicates_of, folder, path, line
        )
        return {
            "results": convert.bounded([convert.hit_json(h) for h in found.hits]),
            "threshold": found.threshold,
            "chunk": {"start_line": found.chunk[0], "end_line": found.chunk[1]}
            if found.chunk
            else None,
        }


def _under(uri: str, root: Path) -> bool:
    try:
        path = convert.uri_to_path(uri)
    except KenningError:
        return False
    return path == root or root in path.parents


def service(ls: KenningServer) -> DuplicateHints | None:
    found = getattr(ls, "duplicates", None)
    return found if isinstance(found, DuplicateHints) else None


def register(server: KenningServer) -> None:
    hints = DuplicateHints(server)
    server.duplicates = hints  # type: ignore[attr-defined]
    server.session.subscribe(hints.on_event)

    @server.command("kenning.duplicates")
    @guard.request("kenning.duplicates")
    async def cmd_duplicates(ls: KenningServer, *args: Any) -> dict[str, Any]:
        return await hints.command(convert.one_object("kenning.duplicates", args))
