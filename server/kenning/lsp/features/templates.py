"""Templates in the editor: ``kenning.matchTemplates``, ``kenning.applyTemplate``,
completion on ``# kenning: ...`` comment lines, and the "Insert template: NAME"
code actions (offered by :mod:`kenning.lsp.features.actions` through
:func:`code_actions`).

Each workspace folder has its own library (``Index.templates``: built-in, user
and ``.kenning/templates`` files; an edit on disk is picked up by the library's
own stat check). Embedding the templates takes the model a few seconds, so it
is done in the background as soon as the session says a folder's index is
open and the model has loaded (or failed to), never on the path of the first
request that needs it.

Insertion follows what editors do with snippets: the text goes in at the
position, and every line after the first gets the indentation of the line at
the position. A blank line, or a ``kenning:`` request comment, is replaced
whole. Clients that advertise ``workspace.workspaceEdit.snippetEditSupport``
(LSP 3.18) get a ``SnippetTextEdit`` with the placeholders intact; others get
the plain text (:func:`~kenning.engine.snippets.snippet_to_text`).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from kenning.engine.languages import detect_language
from kenning.engine.session import Event, FolderOpened, ModelFailed, ModelReady
from kenning.engine.snippets import snippet_to_text
from kenning.engine.templates import TemplateLibrary, comment_request, normalize_language
from kenning.engine.workspace import Index
from kenning.errors import KenningError, LocationError, UsageError
from kenning.lsp import convert, guard
from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)

MATCH_K = 5
COMPLETION_K = 5
ACTION_K = 3
# Below this a template is a guess, not a fit. With the default model, code
# written from a template scores 0.5-0.8 against it (a GenServer's handle_call
# alone 0.52, the whole module 0.77), unrelated code 0.1-0.43.
ACTION_FLOOR = 0.45
COMPLETION_TRIGGERS = [":", " "]


class Templates:
    """Per-folder template libraries, warmed in the background."""

    def __init__(self, server: KenningServer) -> None:
        self.server = server
        # Index objects whose library is embedded (identity: a settings change reopens indexes).
        self._warm: set[int] = set()
        self._warming: set[int] = set()
        self._loose: TemplateLibrary | None = None

    # -- warming ------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        # Any thread; the warming starts from the event loop.
        if isinstance(event, FolderOpened | ModelReady | ModelFailed):
            self.server.call_on_loop(self._warm_ready_folders)

    def _warm_ready_folders(self) -> None:
        # Until the model has loaded (or failed to), warming would only load
        # keywords and the first match would pay for the embedding after all.
        if not self.server.embedders.decided or self.server.closing:
            return
        for folder in list(self.server.folders.values()):
            index = folder.index
            if index is None or folder.closed:
                continue
            key = id(index)
            if key in self._warm or key in self._warming:
                continue
            self._warming.add(key)
            future = self.server.queries.submit(self._warm_one, index)
            future.add_done_callback(functools.partial(self._warmed_soon, key))

    def _warm_one(self, index: Index) -> None:
        started = time.perf_counter()
        library = index.templates
        library.warm()
        for problem in library.problems[:20]:
            log.warning("template: %s", problem)
        log.info(
            "%s: %d templates ready (%.2fs, %s)",
            index.root,
            len(library.templates()),
            time.perf_counter() - started,
            "by meaning and keywords" if library.embedder is not None else "keywords only",
        )

    def _warmed_soon(self, key: int, future: Any) -> None:
        self.server.call_on_loop(self._warmed, key, future)

    def _warmed(self, key: int, future: Any) -> None:
        self._warming.discard(key)
        if future.cancelled():
            return  # shutting down
        # A failure is logged and the index counts as warm: matching still
        # works (it retries the embedding itself); retrying here would loop.
        if future.exception() is not None:
            log.warning("embedding the templates failed: %s", future.exception())
        self._warm.add(key)

    def is_warm(self, index: Index) -> bool:
        return id(index) in self._warm

    # -- libraries ----------------------------------------------------------------

    async def library_for(self, uri: str) -> tuple[TemplateLibrary, Path | None]:
        """The library of the folder holding ``uri`` and the file's path; outside
        every folder (or for an ``untitled:`` buffer, path None), a library of
        the built-in and user templates only."""
        try:
            index, path = await self.server.index_for(uri)
        except LocationError:
            try:
                loose_path: Path | None = convert.uri_to_path(uri)
            except LocationError:
                loose_path = None
            if self._loose is None:
                self._loose = TemplateLibrary(None, embedder=self.server.embedders.get_nowait())
            elif self._loose.embedder is None:
                self._loose.embedder = self.server.embedders.get_nowait()
            return self._loose, loose_path
        library = await self.server.in_query_thread(lambda: index.templates)
        return library, path

    async def model(self) -> None:
        """Wait for the model (loading it if the first index has not yet)."""
        if self.server.embedders.get_nowait() is None:
            await self.server.in_query_thread(self.server.embedders.load)


# -- commands ----------------------------------------------------------------------


async def match_templates(ls: KenningServer, obj: dict[str, Any]) -> dict[str, Any]:
    uri, line, end_line = convert.get_location(obj)
    k = convert.get_k(obj, MATCH_K)
    index, path = await ls.index_for(uri)
    if ls.sync is not None:
        # The chunk under the cursor must be the one in the buffer, not a stale one.
        await ls.sync.flush_and_wait(uri)
    await service(ls).model()
    started = time.perf_counter()
    matches = await ls.in_query_thread(index.match_templates, path, line, k, end_line)
    return {
        "matches": [m.to_json() for m in matches],
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def _template_id(obj: dict[str, Any]) -> str:
    value = obj.get("templateId")
    if not isinstance(value, str) or not value.strip():
        raise UsageError(
            'templateId: expected a template id string, e.g. "python-http-client-retry"'
        )
    return value.strip()


def _position(obj: dict[str, Any]) -> lsp.Position:
    value = obj.get("position")
    if not isinstance(value, dict):
        raise UsageError("position: expected {line, character} (0-based)")
    line, char = value.get("line"), value.get("character", 0)
    if isinstance(line, bool) or not isinstance(line, int) or line < 0:
        raise UsageError("position: expected {line, character} with a 0-based line")
    if isinstance(char, bool) or not isinstance(char, int) or char < 0:
        char = 0
    return lsp.Position(line=line, character=char)


def document_line(
    ls: KenningServer, uri: str, path: Path | None, line: int
) -> tuple[str, int | None]:
    """The text of ``line`` (no line break) in the editor's buffer, else on disk, and
    the buffer's version."""
    doc = ls.workspace.text_documents.get(uri)
    if doc is not None:
        lines = doc.lines
        text = lines[line] if line < len(lines) else ""
        return text.rstrip("\r\n"), doc.version
    if path is None:
        raise LocationError(f"{uri}: not open in the editor and not a file")
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for n, text in enumerate(fh):
                if n == line:
                    return text.rstrip("\r\n"), None
    except OSError as exc:
        raise LocationError(f"{path}: {exc.strerror or exc}") from None
    return "", None


def variables_for(path: Path | None) -> dict[str, str]:
    """The snippet variables an editor would fill in, for the plain-text form."""
    if path is None:
        return {}
    return {
        "TM_FILENAME": path.name,
        "TM_FILENAME_BASE": path.stem,
        "TM_DIRECTORY": str(path.parent),
        "TM_FILEPATH": str(path),
    }


def indented(text: str, indent: str, first: str) -> str:
    """``text`` with ``first`` before its first line and ``indent`` before every
    other non-blank line."""
    lines = text.split("\n")
    rest = [(indent + ln) if ln.strip() else ln for ln in lines[1:]]
    return "\n".join([first + lines[0], *rest])


def insertion(
    line_text: str,
    position: lsp.Position,
    body: str,
    snippet: bool,
    units: int,
    variables: dict[str, str] | None = None,
) -> tuple[lsp.Range, str]:
    """Where and what to insert for a template at ``position`` of a line.

    ``units`` is the line's length in the client's position units. A blank line or
    a ``kenning:`` request comment is replaced whole, indented like the line;
    otherwise the text goes in at the position, later lines indented like the line.
    """
    indent = line_text[: len(line_text) - len(line_text.lstrip())]
    text = body if snippet else snippet_to_text(body, variables)
    line = position.line
    if not line_text.strip() or comment_request(line_text) is not None:
        rng = lsp.Range(
            start=lsp.Position(line=line, character=0), end=lsp.Position(line=line, character=units)
        )
        return rng, indented(text, indent, indent)
    at = lsp.Position(line=line, character=min(position.character, units))
    return lsp.Range(start=at, end=at), indented(text, indent, "")


def snippet_edits_supported(ls: KenningServer) -> bool:
    caps = ls.client_capabilities
    ws = caps.workspace if caps else None
    edit = ws.workspace_edit if ws else None
    return bool(edit and edit.snippet_edit_support and edit.document_changes)


async def apply_template(ls: KenningServer, obj: dict[str, Any]) -> dict[str, Any]:
    uri = obj.get("uri")
    if not isinstance(uri, str) or not uri:
        raise UsageError("uri: expected a file URI string")
    position = _position(obj)
    template_id = _template_id(obj)
    caps = ls.client_capabilities
    if caps is not None and not (caps.workspace and caps.workspace.apply_edit):
        raise KenningError("this editor cannot apply edits (no workspace/applyEdit support)")
    library, path = await service(ls).library_for(uri)
    template = await ls.in_query_thread(library.get, template_id)
    line_text, version = document_line(ls, uri, path, position.line)
    snippet = snippet_edits_supported(ls)
    units = ls.workspace.position_codec.client_num_units(line_text)
    rng, text = insertion(line_text, position, template.body, snippet, units, variables_for(path))
    edit: lsp.WorkspaceEdit
    if snippet:
        edit = lsp.WorkspaceEdit(
            document_changes=[
                lsp.TextDocumentEdit(
                    text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                        uri=uri, version=version
                    ),
                    edits=[lsp.SnippetTextEdit(range=rng, snippet=lsp.StringValue(value=text))],
                )
            ]
        )
    else:
        edit = lsp.WorkspaceEdit(changes={uri: [lsp.TextEdit(range=rng, new_text=text)]})
    result = await ls.workspace_apply_edit_async(
        lsp.ApplyWorkspaceEditParams(edit=edit, label=f"Insert template: {template.name}")
    )
    if not result.applied:
        reason = result.failure_reason or "no reason given"
        raise KenningError(f"the editor did not insert template {template.id!r}: {reason}")
    return {
        "applied": True,
        "templateId": template.id,
        "snippet": snippet,
        "uri": uri,
        "range": convert.range_json(rng),
    }


# -- completion ----------------------------------------------------------------------


def _client_snippets(ls: KenningServer) -> tuple[bool, bool]:
    """(completion snippets, insertTextMode asIs) as the client advertises them."""
    caps = ls.client_capabilities
    td = caps.text_document if caps else None
    item = td.completion.completion_item if td and td.completion else None
    if item is None:
        return False, False
    modes = item.insert_text_mode_support.value_set if item.insert_text_mode_support else []
    return bool(item.snippet_support), lsp.InsertTextMode.AsIs in modes


def _language(path: Path | None, language_id: str | None, first_line: str) -> str | None:
    lang = detect_language(path.name, first_line) if path is not None else None
    if lang and lang != "text":
        return lang
    return normalize_language(language_id)


async def completion(ls: KenningServer, params: lsp.CompletionParams) -> lsp.CompletionList | None:
    uri = params.text_document.uri
    doc = ls.workspace.text_documents.get(uri)
    if doc is None:
        return None
    line = params.position.line
    lines = doc.lines
    if line >= len(lines):
        return None
    text = lines[line].rstrip("\r\n")
    # The common case, an ordinary line, costs one substring test.
    if "kenning" not in text.lower():
        return None
    query = comment_request(text)
    if query is None:
        return None
    templates = service(ls)
    try:
        library, path = await templates.library_for(uri)
        await templates.model()
        language = _language(path, doc.language_id, lines[0] if lines else "")
        matches = await ls.in_query_thread(library.match_query, query, language, COMPLETION_K)
    except KenningError as exc:
        # A completion list is no place for an error message; the log is.
        log.info("template completion: %s", exc)
        return None
    snippets, as_is = _client_snippets(ls)
    units = ls.workspace.position_codec.client_num_units(text)
    variables = variables_for(path)
    items: list[lsp.CompletionItem] = []
    for rank, match in enumerate(matches):
        t = match.template
        rng, new_text = insertion(
            text, params.position, t.body, snippets, units, None if snippets else variables
        )
        preview = snippet_to_text(t.body, variables)
        items.append(
            lsp.CompletionItem(
                label=t.name,
                label_details=lsp.CompletionItemLabelDetails(description=t.id),
                kind=lsp.CompletionItemKind.Snippet,
                detail=f"kenning template {t.id} ({match.score:.2f})",
                documentation=lsp.MarkupContent(
                    kind=lsp.MarkupKind.Markdown,
                    value=f"{t.description}\n\n_{match.why}_\n\n```{match.language}\n{preview}\n```",
                ),
                # The edit replaces the whole comment line, so the client filters
                # by that line's text: match it, or the item would be hidden.
                filter_text=text,
                sort_text=f"{rank:03d}",
                preselect=rank == 0,
                insert_text_format=(
                    lsp.InsertTextFormat.Snippet if snippets else lsp.InsertTextFormat.PlainText
                ),
                # Our text is indented already; the client must not indent it again.
                insert_text_mode=lsp.InsertTextMode.AsIs if as_is else None,
                text_edit=lsp.TextEdit(range=rng, new_text=new_text),
            )
        )
    # Incomplete: the list changes as the request is typed word by word.
    return lsp.CompletionList(is_incomplete=True, items=items)


# -- code actions --------------------------------------------------------------------


async def code_actions(
    ls: KenningServer, uri: str, index: Index, path: Path, position: lsp.Position
) -> list[lsp.CodeAction]:
    """ "Insert template: NAME" for the best templates that fit the chunk at ``position``.

    Cheap: the chunk's stored vector against the embedded library. While the
    library is still being embedded, no template is offered rather than the
    lightbulb waiting for it.
    """
    templates = service(ls)
    if not templates.is_warm(index):
        return []
    try:
        matches = await ls.in_query_thread(index.match_templates, path, position.line + 1, ACTION_K)
    except LocationError:
        return []
    arg_position = {"line": position.line, "character": position.character}
    out: list[lsp.CodeAction] = []
    for match in matches:
        if match.score < ACTION_FLOOR:
            continue
        title = f"Insert template: {match.template.name}"
        out.append(
            lsp.CodeAction(
                title=title,
                command=lsp.Command(
                    title=title,
                    command="kenning.applyTemplate",
                    arguments=[
                        {"uri": uri, "position": arg_position, "templateId": match.template.id}
                    ],
                ),
            )
        )
    return out


def service(ls: KenningServer) -> Templates:
    found = getattr(ls, "templates", None)
    if not isinstance(found, Templates):
        raise KenningError("the templates feature is not enabled")
    return found


def register(server: KenningServer) -> None:
    templates = Templates(server)
    server.templates = templates  # type: ignore[attr-defined]
    server.session.subscribe(templates.on_event)

    @server.command("kenning.matchTemplates")
    @guard.request("kenning.matchTemplates")
    async def cmd_match(ls: KenningServer, *args: Any) -> dict[str, Any]:
        return await match_templates(ls, convert.one_object("kenning.matchTemplates", args))

    @server.command("kenning.applyTemplate")
    @guard.request("kenning.applyTemplate")
    async def cmd_apply(ls: KenningServer, *args: Any) -> dict[str, Any]:
        return await apply_template(ls, convert.one_object("kenning.applyTemplate", args))

    @server.feature(
        lsp.TEXT_DOCUMENT_COMPLETION,
        lsp.CompletionOptions(trigger_characters=COMPLETION_TRIGGERS, resolve_provider=False),
    )
    @guard.request("textDocument/completion")
    async def on_completion(
        ls: KenningServer, params: lsp.CompletionParams
    ) -> lsp.CompletionList | None:
        return await completion(ls, params)
