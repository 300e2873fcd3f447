"""The MCP tools: their JSON schemas, argument checks, and answers sized for a context window.

Every argument is checked here, so that a wrong one is a
:class:`~kenning.errors.UsageError` naming it in one line (the server turns it
into a tool error) rather than a validator's page of text. Answers come in two
forms: ``structuredContent`` (the output schema below) and a compact text
rendering for clients that show the model only text. The defaults keep a search
answer under about 2,000 tokens; ``k`` and ``snippet_lines`` are capped.
"""

from __future__ import annotations

from typing import Any

from kenning.engine.languages import language_filter
from kenning.engine.scan import filter_spec
from kenning.engine.search import MODES
from kenning.engine.types import SearchHit
from kenning.errors import UsageError

DEFAULT_K = 8
MAX_K = 50
DEFAULT_SNIPPET_LINES = 6
MAX_SNIPPET_LINES = 40
# Per snippet, and per line within it: a minified line must not fill the window.
MAX_SNIPPET_CHARS = 2_000
MAX_LINE_CHARS = 200
MAX_QUERY_CHARS = 1_000
MAX_CODE_CHARS = 20_000
DEFAULT_PATTERNS = 10
MAX_PATTERNS = 50
# Members listed per pattern (the size says how many there are).
PATTERN_MEMBERS = 5
DEFAULT_TEMPLATES = 5
MAX_TEMPLATES = 20

# -- schemas --------------------------------------------------------------------

_K = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_K,
    "default": DEFAULT_K,
    "description": f"how many results (default {DEFAULT_K}, at most {MAX_K})",
}
_SNIPPET = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_SNIPPET_LINES,
    "default": DEFAULT_SNIPPET_LINES,
    "description": f"lines of code shown per result (default {DEFAULT_SNIPPET_LINES}, "
    f"at most {MAX_SNIPPET_LINES}; 0 for locations only)",
}
_PATH = {
    "type": "string",
    "description": "a file relative to the workspace root, or an absolute path inside it",
}
_LINE = {"type": "integer", "minimum": 1, "description": "a 1-based line in that file"}
_STRINGS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}

_HIT = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "start_line": {"type": "integer"},
        "end_line": {"type": "integer"},
        "symbol": {"type": ["string", "null"]},
        "kind": {"type": "string"},
        "language": {"type": "string"},
        "score": {"type": "number"},
        "snippet": {"type": "string"},
        "stale": {"type": "boolean"},
        "root": {"type": "string"},
        "repo": {"type": "string", "description": "the repository the hit belongs to"},
        "endpoint": {
            "type": "string",
            "description": "the shard endpoint (kenning mcp --remote) that answered it",
        },
        "explain": {"type": "object"},
    },
    "required": ["path", "start_line", "end_line", "symbol", "kind", "score", "stale"],
}
_INDEX_STATE = {
    "phase": {
        "type": "string",
        "enum": ["reading", "loading model", "embedding", "ready"],
        "description": "what the index is doing: reading files (words first), loading the "
        "model, embedding, or ready",
    },
    "pending": {"type": "integer", "description": "chunks not embedded yet"},
    "complete": {"type": "number", "description": "share of chunks embedded"},
}
_HITS_ANSWER = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "mode": {"type": "string"},
        "took_ms": {"type": "number"},
        "results": {"type": "array", "items": _HIT},
        "notes": {"type": "array", "items": {"type": "string"}},
        **_INDEX_STATE,
    },
    "required": ["results", "phase", "pending"],
}
_LOCATION = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "start_line": {"type": "integer"},
        "end_line": {"type": "integer"},
        "symbol": {"type": ["string", "null"]},
        "similarity": {"type": "number"},
        "stale": {"type": "boolean"},
        "root": {"type": "string"},
    },
    "required": ["path", "start_line", "end_line", "symbol", "stale"],
}

TOOLS: dict[str, dict[str, Any]] = {
    "search": {
        "title": "Search code",
        "description": "Search the workspace's code by meaning and by words (hybrid). Use it "
        "to find where something is done when you do not know the names, e.g. 'retry an "
        "HTTP request with backoff'. Results: path, 1-based line range, symbol, score, a "
        "short snippet; stale=true means the file changed since it was indexed (re-read "
        "it before trusting the lines).",
        "input": {
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "maxLength": MAX_QUERY_CHARS,
                    "description": "what you are looking for, in words or code",
                },
                "k": _K,
                "mode": {
                    "type": "string",
                    "enum": list(MODES),
                    "default": "hybrid",
                    "description": "hybrid (default), vector (meaning only) or lexical (words only)",
                },
                "lang": {
                    **_STRINGS,
                    "description": "only these languages (python, ts, go, ...)",
                },
                "glob": {
                    **_STRINGS,
                    "description": "only paths matching (src/**, *.py; !tests/** leaves out)",
                },
                "explain": {
                    "type": "boolean",
                    "default": False,
                    "description": "add why each result scored as it did",
                },
                "snippet_lines": _SNIPPET,
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        "output": _HITS_ANSWER,
    },
    "similar": {
        "title": "Find similar code",
        "description": "Code most like the code at a location ({path, line}) or like a "
        "snippet you pass ({code}), by meaning. The chunk at the location itself is left out.",
        "input": {
            "type": "object",
            "properties": {
                "path": _PATH,
                "line": _LINE,
                "code": {
                    "type": "string",
                    "maxLength": MAX_CODE_CHARS,
                    "description": "a piece of code to match (instead of path and line)",
                },
                "k": _K,
                "snippet_lines": _SNIPPET,
            },
            "additionalProperties": False,
        },
        "output": _HITS_ANSWER,
    },
    "duplicates": {
        "title": "Near-duplicates",
        "description": "Near-duplicates of the function or block at a location: copies with "
        "names and literals changed. Candidates for a shared helper, or places a fix must "
        "also go.",
        "input": {
            "type": "object",
            "properties": {
                "path": _PATH,
                "line": _LINE,
                "k": _K,
                "threshold": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "description": "how alike counts as a duplicate (default 0.85)",
                },
            },
            "required": ["path", "line"],
            "additionalProperties": False,
        },
        "output": {
            "type": "object",
            "properties": {
                "chunk": _LOCATION,
                "threshold": {"type": "number"},
                "results": {"type": "array", "items": _LOCATION},
                **_INDEX_STATE,
            },
            "required": ["chunk", "threshold", "results"],
        },
    },
    "patterns": {
        "title": "Duplicate-code patterns",
        "description": "The largest families of near-duplicate code in the workspace, each "
        "with a canonical example and its members.",
        "input": {
            "type": "object",
            "properties": {
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PATTERNS,
                    "default": DEFAULT_PATTERNS,
                    "description": f"at most this many families (default {DEFAULT_PATTERNS})",
                },
            },
            "additionalProperties": False,
        },
        "output": {
            "type": "object",
            "properties": {
                "patterns": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "size": {"type": "integer"},
                            "languages": {"type": "array", "items": {"type": "string"}},
                            "canonical": _LOCATION,
                            "members": {"type": "array", "items": _LOCATION},
                        },
                        "required": ["id", "size", "canonical", "members"],
                    },
                },
                "chunks_compared": {"type": "integer"},
                **_INDEX_STATE,
            },
            "required": ["patterns", "chunks_compared"],
        },
    },
    "match_templates": {
        "title": "Matching templates",
        "description": "The code templates (built-in, user and .kenning/templates) that fit "
        "the code at a location, best first, with why.",
        "input": {
            "type": "object",
            "properties": {
                "path": _PATH,
                "line": _LINE,
                "k": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_TEMPLATES,
                    "default": DEFAULT_TEMPLATES,
                },
            },
            "required": ["path", "line"],
            "additionalProperties": False,
        },
        "output": {
            "type": "object",
            "properties": {
                "matches": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "languages": {"type": "array", "items": {"type": "string"}},
                            "score": {"type": "number"},
                            "why": {"type": "string"},
                            "description": {"type": "string"},
                        },
                        "required": ["id", "name", "score"],
                    },
                },
            },
            "required": ["matches"],
        },
    },
    "status": {
        "title": "Index status",
        "description": "What the index holds and how fresh it is: files, chunks, chunks still "
        "to embed, the model, whether files are watched.",
        "input": {"type": "object", "properties": {}, "additionalProperties": False},
        "output": {
            "type": "object",
            "properties": {
                "roots": {"type": "array", "items": {"type": "object"}},
                "files": {"type": "integer"},
                "chunks": {"type": "integer"},
                "embedded": {"type": "integer"},
                "skipped": {"type": "integer"},
                "model": {"type": ["string", "null"]},
                "device": {"type": ["string", "null"]},
                "model_error": {"type": ["string", "null"]},
                "watching": {"type": "boolean"},
                "last_refresh": {"type": ["number", "null"]},
                "remotes": {
                    "type": "array",
                    "description": "the shard endpoints searched too (kenning mcp --remote), "
                    "as last seen: ok, error or slow",
                    "items": {"type": "object"},
                },
                **_INDEX_STATE,
            },
            "required": ["roots", "files", "chunks", "pending", "phase", "model", "watching"],
        },
    },
}


# -- argument checks ----------------------------------------------------------------


def check_arguments(tool: str, args: dict[str, Any] | None) -> dict[str, Any]:
    """``args`` with defaults filled in; a one-line UsageError for anything wrong."""
    spec = TOOLS[tool]["input"]
    args = dict(args or {})
    props: dict[str, Any] = spec["properties"]
    unknown = [name for name in args if name not in props]
    if unknown:
        expected = ", ".join(props) or "none"
        raise UsageError(f"unknown argument {unknown[0]!r} (arguments: {expected})")
    for name in spec.get("required", []):
        if args.get(name) is None:
            raise UsageError(f"{name} is required")
    out: dict[str, Any] = {}
    for name, schema in props.items():
        value = args.get(name)
        if value is None:
            out[name] = schema.get("default")
            continue
        out[name] = _check(name, value, schema)
    return out


def _check(name: str, value: Any, schema: dict[str, Any]) -> Any:
    if "anyOf" in schema:  # a string or a list of strings
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise UsageError(f"{name}: expected a string or a list of strings")
        return items
    kind = schema["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise UsageError(f"{name}: expected a string, got {_type(value)}")
        limit = schema.get("maxLength")
        if limit is not None and len(value) > limit:
            raise UsageError(f"{name}: {len(value)} characters; at most {limit}")
        if "enum" in schema and value not in schema["enum"]:
            raise UsageError(f"{name}: {value!r} is not one of {', '.join(schema['enum'])}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise UsageError(f"{name}: expected true or false, got {_type(value)}")
        return value
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name}: expected a whole number, got {_type(value)}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{name}: expected a number, got {_type(value)}")
        value = float(value)
        if value != value:  # nan
            raise UsageError(f"{name}: expected a number, got NaN")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise UsageError(f"{name}: must be more than {schema['exclusiveMinimum']}")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and value < low:
        raise UsageError(f"{name}: must be at least {low}, got {value}")
    if high is not None and value > high:
        raise UsageError(f"{name}: must be at most {high}, got {value}")
    return value


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def check_filters(args: dict[str, Any]) -> tuple[list[str] | None, list[str] | None]:
    """``lang`` and ``glob`` checked before any index is asked (a typo is an error,
    not an empty answer)."""
    langs = args.get("lang") or None
    globs = args.get("glob") or None
    if langs:
        language_filter(langs)
    if globs:
        filter_spec(globs, "glob")
    return langs, globs


# -- answers ------------------------------------------------------------------------


def snippet_of(text: str, lines: int) -> str:
    """The first ``lines`` lines of ``text``, each line and the whole capped."""
    if lines <= 0:
        return ""
    kept = []
    for line in text.splitlines()[:lines]:
        line = line.rstrip()
        if len(line) > MAX_LINE_CHARS:
            line = line[: MAX_LINE_CHARS - 1] + "…"
        kept.append(line)
    out = "\n".join(kept)
    if len(out) > MAX_SNIPPET_CHARS:
        out = out[: MAX_SNIPPET_CHARS - 1] + "…"
    return out


def hit_json(
    hit: SearchHit, text: str, stale: bool, explain: bool, root: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": hit.path,
        "start_line": hit.start_line,
        "end_line": hit.end_line,
        "symbol": hit.symbol,
        "kind": hit.kind,
        "language": hit.language,
        "score": round(float(hit.score), 4),
        "snippet": text,
        "stale": stale,
    }
    if root is not None:
        out["root"] = root
    if hit.root.startswith(("http://", "https://")):
        out["endpoint"] = hit.root
        if hit.repo:
            out["repo"] = hit.repo
    if explain and hit.explain:
        out["explain"] = hit.explain
    return out


def render_hits(answer: dict[str, Any]) -> str:
    """The compact text form of a search, similar or duplicates answer."""
    lines: list[str] = []
    head = answer.get("chunk")
    if head is not None:
        lines.append(f"near-duplicates of {_where(head)} (threshold {answer['threshold']:.2f}):")
    for hit in answer["results"]:
        score = hit.get("score", hit.get("similarity"))
        name = hit.get("symbol") or hit.get("kind") or ""
        flag = "  [stale: file changed since indexed]" if hit.get("stale") else ""
        lines.append(f"{_where(hit)}  {name}  {score:.2f}{flag}")
        snippet = hit.get("snippet")
        if snippet:
            lines.extend("    " + ln for ln in snippet.splitlines())
        if hit.get("explain"):
            parts = ", ".join(f"{k}={v}" for k, v in hit["explain"].items() if v is not None)
            lines.append(f"    ({parts})")
    if not answer["results"]:
        lines.append("no results" if head is None else "no near-duplicates")
    lines.extend(f"note: {n}" for n in answer.get("notes", []))
    lines.append(_state_line(answer))
    return "\n".join(line for line in lines if line)


def render_patterns(answer: dict[str, Any]) -> str:
    lines = []
    for p in answer["patterns"]:
        lines.append(
            f"{p['id']}: {p['size']} chunks ({', '.join(p.get('languages', []))}), "
            f"canonical {_where(p['canonical'])} {p['canonical'].get('symbol') or ''}".rstrip()
        )
        for m in p["members"]:
            lines.append(f"    {_where(m)} {m.get('symbol') or ''}  {m['similarity']:.2f}")
        more = p["size"] - 1 - len(p["members"])
        if more > 0:
            lines.append(f"    ... and {more} more")
    if not answer["patterns"]:
        lines.append(f"no near-duplicates among {answer['chunks_compared']} chunks")
    lines.append(_state_line(answer))
    return "\n".join(line for line in lines if line)


def render_matches(answer: dict[str, Any]) -> str:
    lines = [
        f"{m['score']:.2f}  {m['id']}  {m['name']}: {m.get('why', '')}" for m in answer["matches"]
    ]
    return "\n".join(lines) or "no template fits"


def render_status(answer: dict[str, Any]) -> str:
    lines = []
    for r in answer["roots"]:
        if "error" in r:
            lines.append(f"{r['root']}: {r['error']}")
            continue
        lines.append(
            f"{r['root']}: {r['files']} files, {r['chunks']} chunks, {r['pending']} to embed"
            + (f"; being indexed by {r['indexing_by']}" if r.get("indexing_by") else "")
        )
    model = answer["model"] or "none"
    if answer.get("model_error"):
        model += f" ({answer['model_error']})"
    lines.append(f"model {model}; watching files: {'yes' if answer['watching'] else 'no'}")
    for r in answer.get("remotes", []):
        detail = f" ({r['detail']})" if r.get("detail") else ""
        lines.append(f"endpoint {r['url']}: {r['state']}{detail}")
    lines.append(_state_line(answer))
    return "\n".join(line for line in lines if line)


def _where(loc: dict[str, Any]) -> str:
    prefix = f"{loc['root']}/" if loc.get("root") else ""
    return f"{prefix}{loc['path']}:{loc['start_line']}-{loc['end_line']}"


def _state_line(answer: dict[str, Any]) -> str:
    phase = answer.get("phase")
    pending = answer.get("pending") or 0
    if phase is None or (phase == "ready" and not pending):
        return ""
    if phase == "reading":
        return "index: still reading files; results may be missing"
    return f"index: {phase}, {pending} chunks still to embed (results lean on words until done)"
