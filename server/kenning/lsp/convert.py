"""Engine types <-> the shapes on the wire: URIs, LSP ranges, command arguments.

The engine speaks workspace-relative paths and 1-based inclusive lines; the
protocol speaks URIs and 0-based ranges. Every conversion lives here, and every
check of what a client sent ends in a :class:`UsageError` or
:class:`LocationError` whose message can go straight back to the user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.uris import from_fs_path, to_fs_path

from kenning.engine.languages import language_filter
from kenning.engine.scan import filter_spec
from kenning.engine.types import SearchHit
from kenning.errors import LocationError, UsageError

MAX_K = 200
# Responses stay well under the 200 KB the contract promises; snippets are
# already short (8 lines, 400 characters), this is the last guard.
MAX_RESPONSE_BYTES = 150_000
MODES = ("hybrid", "vector", "lexical")

SYMBOL_KINDS: dict[str, lsp.SymbolKind] = {
    "function": lsp.SymbolKind.Function,
    "method": lsp.SymbolKind.Method,
    "class": lsp.SymbolKind.Class,
    "struct": lsp.SymbolKind.Struct,
    "interface": lsp.SymbolKind.Interface,
    "trait": lsp.SymbolKind.Interface,
    "enum": lsp.SymbolKind.Enum,
    "module": lsp.SymbolKind.Module,
    "impl": lsp.SymbolKind.Class,
    "constant": lsp.SymbolKind.Constant,
    "variable": lsp.SymbolKind.Variable,
    "type": lsp.SymbolKind.TypeParameter,
    "section": lsp.SymbolKind.Namespace,
}


# -- URIs and paths -------------------------------------------------------------


def uri_to_path(uri: str) -> Path:
    """The local path of a ``file:`` URI; anything else is a LocationError."""
    if not isinstance(uri, str) or not uri:
        raise UsageError("uri: expected a file URI string")
    if not uri.startswith("file:"):
        raise LocationError(f"{uri}: only file: URIs can be indexed")
    path = to_fs_path(uri)
    if not path:
        raise LocationError(f"{uri}: not a valid file URI")
    return Path(path)


def path_to_uri(path: Path | str) -> str:
    uri = from_fs_path(str(path))
    assert uri is not None
    return uri


def hit_uri(hit: SearchHit) -> str:
    if hit.root.startswith(("http://", "https://")):
        # A shard endpoint's hit has no file here: its address names the
        # endpoint, repository, path and lines (the snippet carries the code).
        return f"{hit.root}/{hit.repo}/{hit.path}#L{hit.start_line}-L{hit.end_line}"
    return path_to_uri(Path(hit.root or ".") / hit.path)


def hit_range(hit: SearchHit) -> lsp.Range:
    # Whole lines: from the start of the first to the start of the line after
    # the last, which every client clamps at the end of the file.
    return lsp.Range(
        start=lsp.Position(line=max(0, hit.start_line - 1), character=0),
        end=lsp.Position(line=hit.end_line, character=0),
    )


def range_json(r: lsp.Range) -> dict[str, Any]:
    return {
        "start": {"line": r.start.line, "character": r.start.character},
        "end": {"line": r.end.line, "character": r.end.character},
    }


def hit_json(hit: SearchHit, explain: bool = False) -> dict[str, Any]:
    return {
        "uri": hit_uri(hit),
        "range": range_json(hit_range(hit)),
        "symbol": hit.symbol,
        "kind": hit.kind,
        "language": hit.language,
        "score": round(float(hit.score), 4),
        "snippet": hit.snippet,
        "path": hit.path,
        **({"repo": hit.repo} if hit.repo else {}),
        **({"endpoint": hit.root} if hit.root.startswith(("http://", "https://")) else {}),
        **({"explain": hit.explain} if explain and hit.explain else {}),
    }


def bounded(results: list[dict[str, Any]], limit: int = MAX_RESPONSE_BYTES) -> list[dict[str, Any]]:
    """Drop results from the tail until the list serialises under ``limit`` bytes."""
    out: list[dict[str, Any]] = []
    size = 2
    for item in results:
        n = len(json.dumps(item, ensure_ascii=False).encode()) + 1
        if size + n > limit:
            break
        out.append(item)
        size += n
    return out


def symbol_name(hit: SearchHit) -> str:
    if hit.symbol:
        return hit.symbol
    first = next((ln.strip() for ln in hit.snippet.splitlines() if ln.strip()), "")
    return first[:80] or f"{hit.path}:{hit.start_line}"


def hit_symbol(hit: SearchHit) -> lsp.SymbolInformation:
    # SymbolInformation with a full location, not WorkspaceSymbol: Neovim 0.7's
    # handler crashes on a WorkspaceSymbol without a range.
    return lsp.SymbolInformation(
        name=symbol_name(hit),
        kind=SYMBOL_KINDS.get(hit.kind, lsp.SymbolKind.Object),
        location=lsp.Location(uri=hit_uri(hit), range=hit_range(hit)),
        container_name=f"{hit.path}:{hit.start_line}  {hit.score:.2f}",
    )


# -- command arguments ----------------------------------------------------------


def one_object(command: str, args: Sequence[Any] | None) -> dict[str, Any]:
    """Commands take one JSON object; none at all means ``{}``."""
    if not args:
        return {}
    if len(args) == 1 and args[0] == []:
        return {}  # Lua clients encode an empty table {} as []
    if len(args) != 1 or not isinstance(args[0], dict):
        raise UsageError(f"{command} takes one object argument, e.g. {example(command)}")
    return args[0]


def example(command: str) -> str:
    return {
        "kenning.search": '{"query": "parse json config", "k": 10}',
        "kenning.similar": '{"uri": "file:///path/file.py", "position": {"line": 3, "character": 0}}',
    }.get(command, "{}")


def get_k(obj: dict[str, Any], default: int) -> int:
    k = obj.get("k", default)
    if k is None:
        return min(default, MAX_K)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"k: expected a positive integer, got {json.dumps(k)}")
    return min(k, MAX_K)


def get_str_list(obj: dict[str, Any], key: str) -> list[str] | None:
    """``lang``/``glob``: a string or a list of strings."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return [value] if value else None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v] or None
    raise UsageError(f"{key}: expected a string or a list of strings, got {json.dumps(value)}")


def get_languages(obj: dict[str, Any]) -> list[str] | None:
    """``lang`` as the engine's language ids; an unknown language names the known ones."""
    names = get_str_list(obj, "lang")
    if names is None:
        return None
    try:
        return language_filter(names)
    except UsageError as exc:
        raise UsageError(f"lang: {exc}") from None


def get_globs(obj: dict[str, Any]) -> list[str] | None:
    """``glob``, each checked: one that cannot match a path is an error naming it."""
    globs = get_str_list(obj, "glob")
    if globs is not None:
        try:
            filter_spec(globs, "")
        except UsageError as exc:
            raise UsageError(f"glob: {exc}") from None
    return globs


def get_query(obj: dict[str, Any]) -> str:
    query = obj.get("query")
    if not isinstance(query, str) or not query.strip():
        raise UsageError("query: expected a non-empty string")
    if len(query) > 2000:
        raise UsageError("query: longer than 2000 characters")
    return query


def get_flag(obj: dict[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"{key}: expected true or false, got {value!r}")
    return value


def get_mode(obj: dict[str, Any], default: str) -> str:
    mode = obj.get("mode") or default
    if mode not in MODES:
        raise UsageError(f"mode: expected one of {', '.join(MODES)}, got {json.dumps(mode)}")
    return str(mode)


def _position(value: Any, where: str) -> lsp.Position:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("line"), int)
        or isinstance(value.get("line"), bool)
        or value["line"] < 0
    ):
        raise UsageError(f"{where}: expected {{line, character}} with a 0-based line")
    char = value.get("character", 0)
    return lsp.Position(line=value["line"], character=char if isinstance(char, int) else 0)


def get_location(obj: dict[str, Any]) -> tuple[str, int, int | None]:
    """``{uri, position}`` or ``{uri, range}`` -> (uri, first line, last line or None), 1-based."""
    uri = obj.get("uri")
    if not isinstance(uri, str) or not uri:
        raise UsageError("uri: expected a file URI string")
    if "range" in obj and obj["range"] is not None:
        r = obj["range"]
        if not isinstance(r, dict):
            raise UsageError("range: expected {start, end}")
        start = _position(r.get("start"), "range.start")
        end = _position(r.get("end"), "range.end")
        if (end.line, end.character) < (start.line, start.character):
            start, end = end, start
        last = end.line + 1 if end.character > 0 or end.line == start.line else end.line
        return uri, start.line + 1, max(last, start.line + 1)
    if "position" in obj and obj["position"] is not None:
        pos = _position(obj["position"], "position")
        return uri, pos.line + 1, None
    raise UsageError("expected {uri, position} or {uri, range}")
