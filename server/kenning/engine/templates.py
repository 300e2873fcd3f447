"""The template library: built-in, user and workspace templates, and matching.

A template is a reusable piece of code written as an LSP snippet (``${1:name}``
placeholders, a final ``$0``). Templates come from three places, later ones
adding to or overriding earlier ones by id:

1. ``builtin``: the JSON files shipped in ``kenning/templates/``;
2. ``user``: ``*.json`` in the user folder (default ``kenning_home()/templates``);
3. ``workspace``: ``*.json`` in ``<workspace>/.kenning/templates/``.

The file format is documented in ``docs/templates.md``. A file that cannot be
read or a template that fails validation is reported in :attr:`TemplateLibrary.problems`
(one line naming the file and the field) and skipped; everything else keeps
working. Files are re-read when their modification time or size changes, checked
at most once per ``check_interval`` seconds, so an edit on disk is picked up
without a restart.

Matching blends meaning and keywords (see :data:`SEMANTIC_WEIGHT`)::

    score = SEMANTIC_WEIGHT * best_cosine + (1 - SEMANTIC_WEIGHT) * keyword_score
    keyword_score = min(1, matched_keywords / KEYWORD_SATURATION)

``best_cosine`` is the highest cosine similarity between the code (or query) and
any of the template's embedded texts: its description card, its body as plain text
and each example. Without an embedder the score is ``keyword_score`` alone.

Language: when a language is given, only templates for that language are
candidates; when no template covers it, every template is, and ``why`` says so.

Templates are embedded lazily (first match, or :meth:`TemplateLibrary.warm`), keyed
by content hash in memory and in ``<cache_dir>/<model id>.npz`` (default
``kenning_home()/templates-cache``), so a reload or a new process embeds only
templates it has never seen.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xxhash

from kenning.config import kenning_home
from kenning.engine.home import owned_dir, repair, slot_problem
from kenning.engine.languages import LANGUAGE_ALIASES
from kenning.engine.snippets import SnippetError, snippet_to_text, validate_snippet
from kenning.errors import KenningError, UsageError

log = logging.getLogger(__name__)

__all__ = [
    "KEYWORD_SATURATION",
    "SEMANTIC_WEIGHT",
    "EmbedderLike",
    "SnippetError",
    "Template",
    "TemplateLibrary",
    "TemplateMatch",
    "builtin_dir",
    "comment_request",
    "normalize_language",
    "parse_template_file",
    "snippet_to_text",
    "validate_snippet",
]

# Meaning dominates; keywords break ties between templates that are about the
# same thing and rescue matches the model misses on very short code.
SEMANTIC_WEIGHT = 0.8
# Three matched keywords already say "this is that pattern"; more should not let
# a template with a long keyword list outrank a closer one.
KEYWORD_SATURATION = 3

SOURCES = ("builtin", "user", "workspace")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_ALLOWED_FIELDS = frozenset(
    {"id", "name", "languages", "description", "keywords", "body", "examples", "$schema"}
)
_QUERY_CACHE_SIZE = 256


class EmbedderLike(Protocol):
    """What the library needs from an embedder (``kenning.engine.embedder.Embedder`` fits)."""

    model_id: str

    @property
    def dims(self) -> int: ...

    @property
    def space(self) -> str: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


# ---------------------------------------------------------------------------
# Languages


def normalize_language(language: str | None) -> str | None:
    """Canonical language name (``typescriptreact`` -> ``typescript``), or None."""
    if language is None:
        return None
    lang = language.strip().lower()
    if not lang:
        return None
    return LANGUAGE_ALIASES.get(lang, lang)


# ---------------------------------------------------------------------------
# Comment requests


_COMMENT_REQUEST = re.compile(
    r"""^\s*
    (?:\#+|//+[/!]?|--+|;+|%+|/\*+|<!--|\*|\(\*|\{-)   # an opening comment marker
    \s*kenning\s*:\s*
    (?P<query>.*?)
    \s*(?:\*+/|-->|\*\)|-\})?\s*$                     # an optional closing marker
    """,
    re.IGNORECASE | re.VERBOSE,
)


def comment_request(line: str) -> str | None:
    """The query of a ``kenning:`` comment line, in any common comment syntax.

    ``"# kenning: http client with retries"`` -> ``"http client with retries"``;
    ``//``, ``--``, ``;;``, ``%``, ``/* ... */``, ``<!-- ... -->``, ``(* ... *)`` and
    ``{- ... -}`` work the same way. Anything else, or an empty query, gives None.
    """
    m = _COMMENT_REQUEST.match(line.rstrip("\r\n"))
    if not m:
        return None
    query = m.group("query").strip()
    return query or None


# ---------------------------------------------------------------------------
# Templates and their files


@dataclass(frozen=True)
class Template:
    """One template. ``body`` is an LSP snippet; ``source`` is builtin, user or workspace."""

    id: str
    name: str
    languages: tuple[str, ...]
    description: str
    keywords: tuple[str, ...]
    body: str
    examples: tuple[str, ...]
    source: str
    file: str

    @property
    def text(self) -> str:
        """The body as the plain text a client without snippet support inserts."""
        return snippet_to_text(self.body)

    def content_hash(self) -> str:
        """A hash of everything that matching depends on (not source or file)."""
        h = xxhash.xxh3_128()
        for part in (
            self.id,
            self.name,
            *self.languages,
            self.description,
            *self.keywords,
            self.body,
            *self.examples,
        ):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "languages": list(self.languages),
            "description": self.description,
            "keywords": list(self.keywords),
            "source": self.source,
            "file": self.file,
        }


class _FieldError(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


def _string(raw: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    if key not in raw:
        if required:
            raise _FieldError(key, "is missing")
        return ""
    value = raw[key]
    if not isinstance(value, str):
        raise _FieldError(key, f"must be a string, not {_json_type(value)}")
    if required and not value.strip():
        raise _FieldError(key, "must not be empty")
    return value


def _text_block(value: Any, key: str) -> str:
    """A string, or a list of lines (easier to read and diff in JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    raise _FieldError(key, f"must be a string or a list of strings, not {_json_type(value)}")


def _string_list(raw: Mapping[str, Any], key: str, *, required: bool) -> tuple[str, ...]:
    if key not in raw:
        if required:
            raise _FieldError(key, "is missing")
        return ()
    value = raw[key]
    if not isinstance(value, list):
        raise _FieldError(key, f"must be a list of strings, not {_json_type(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _FieldError(f"{key}[{i}]", "must be a non-empty string")
        out.append(item.strip())
    if required and not out:
        raise _FieldError(key, "must name at least one entry")
    return tuple(out)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _template_from_json(raw: Any, source: str, file: str) -> tuple[Template, list[str]]:
    """Build one template; raise _FieldError on the first invalid field.

    Returns the template and warnings (unknown fields, which are ignored).
    """
    if not isinstance(raw, dict):
        raise _FieldError("", f"a template must be an object, not {_json_type(raw)}")
    template_id = _string(raw, "id")
    if not _ID_RE.match(template_id):
        raise _FieldError(
            "id", f"{template_id!r} must be lowercase letters, digits, '.', '_' or '-'"
        )
    name = _string(raw, "name").strip()
    languages = tuple(
        normalize_language(lang) or lang for lang in _string_list(raw, "languages", required=True)
    )
    description = _string(raw, "description").strip()
    keywords = _string_list(raw, "keywords", required=False)
    if "body" not in raw:
        raise _FieldError("body", "is missing")
    body = _text_block(raw["body"], "body")
    if not body.strip():
        raise _FieldError("body", "must not be empty")
    try:
        validate_snippet(body)
    except SnippetError as exc:
        raise _FieldError("body", f"invalid snippet: {exc}") from None
    examples: list[str] = []
    raw_examples = raw.get("examples", [])
    if not isinstance(raw_examples, list):
        raise _FieldError("examples", f"must be a list, not {_json_type(raw_examples)}")
    for i, example in enumerate(raw_examples):
        text = _text_block(example, f"examples[{i}]")
        if not text.strip():
            raise _FieldError(f"examples[{i}]", "must not be empty")
        examples.append(text)
    warnings = [
        f"field {key!r}: unknown field (ignored)" for key in raw if key not in _ALLOWED_FIELDS
    ]
    template = Template(
        id=template_id,
        name=name,
        languages=languages,
        description=description,
        keywords=keywords,
        body=body,
        examples=tuple(examples),
        source=source,
        file=file,
    )
    return template, warnings


def parse_template_file(path: Path, source: str) -> tuple[list[Template], list[str]]:
    """Read one template file: the valid templates in it and one line per problem.

    A file holds one template object, a list of them, or ``{"templates": [...]}``.
    A bad template is skipped; the others in the same file still load.
    """
    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [], [f"{shown}: cannot be read: {exc.strerror or exc}"]
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return [], [f"{shown}: is not UTF-8 text"]
    except json.JSONDecodeError as exc:
        return [], [f"{shown}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]

    single = isinstance(raw, dict) and "templates" not in raw
    if single:
        items: list[Any] = [raw]
    elif isinstance(raw, dict) and isinstance(raw.get("templates"), list):
        items = raw["templates"]
    elif isinstance(raw, list):
        items = raw
    else:
        return [], [
            f'{shown}: expected a template object, a list of templates or {{"templates": [...]}}'
        ]

    templates: list[Template] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if single:
            where = shown
        else:
            label = item.get("id") if isinstance(item, dict) else None
            where = f"{shown}: templates[{index}]" + (
                f" ({label!r})" if isinstance(label, str) else ""
            )
        try:
            template, warnings = _template_from_json(item, source, shown)
        except _FieldError as exc:
            prefix = f"field {exc.field_name!r}: " if exc.field_name else ""
            problems.append(f"{where}: {prefix}{exc.message}")
            continue
        problems.extend(f"{where}: {warning}" for warning in warnings)
        if template.id in seen:
            problems.append(
                f"{where}: field 'id': {template.id!r} is already used by "
                f"templates[{seen[template.id]}] in the same file (ignored)"
            )
            continue
        seen[template.id] = index
        templates.append(template)
    return templates, problems


def builtin_dir() -> Path:
    """The folder of built-in template files shipped in the package."""
    return Path(__file__).resolve().parent.parent / "templates"


# ---------------------------------------------------------------------------
# Keywords


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _stem(word: str) -> str:
    # Just enough to make "retries" meet "retry" and "handlers" meet "handler".
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _tokens(text: str) -> frozenset[str]:
    """Identifier-split, lowercased, lightly stemmed tokens of code or prose.

    Whole identifiers are kept as well as their parts, so ``handle_call`` and
    ``GenServer`` match the keywords ``handle_call`` and ``genserver`` as well as
    ``call`` and ``server``.
    """
    out: set[str] = set()
    for m in _WORD.finditer(text):
        word = m.group()
        out.add(_stem(word.lower()))
        for piece in word.split("_"):
            for part in _CAMEL.findall(piece):
                if len(part) > 1:
                    out.add(_stem(part.lower()))
    return frozenset(out)


def _keyword_parts(keyword: str) -> tuple[str, ...]:
    """A keyword matches when every whitespace-separated word of it is present."""
    parts = []
    for word in keyword.split():
        cleaned = re.sub(r"[^A-Za-z0-9_]", "", word).lower()
        if cleaned:
            parts.append(_stem(cleaned))
    return tuple(parts)


# ---------------------------------------------------------------------------
# Matching


@dataclass
class TemplateMatch:
    """A template that fits some code or a query, with its score and the reason."""

    template: Template
    score: float
    why: str
    # The language it was matched for: the requested one when the template covers
    # it, otherwise the template's first language.
    language: str = ""

    def to_json(self) -> dict[str, object]:
        t = self.template
        return {
            "id": t.id,
            "name": t.name,
            "languages": list(t.languages),
            "language": self.language or (t.languages[0] if t.languages else ""),
            "description": t.description,
            "source": t.source,
            "score": round(self.score, 4),
            "why": self.why,
        }


@dataclass
class _Entry:
    """A loaded template with what matching needs, computed once."""

    template: Template
    keyword_parts: tuple[tuple[str, ...], ...]  # aligned with template.keywords
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    digest: str


@dataclass
class _FileState:
    signature: tuple[int, int, int]
    templates: list[Template]
    problems: list[str]


@dataclass
class _Index:
    """Every embedded text of every template, stacked for one matrix product."""

    model_id: str
    entries: list[_Entry]  # the snapshot the matrix was built from, in row order
    matrix: np.ndarray  # (n_texts, dims)
    starts: np.ndarray  # (n_templates,) first row of each template
    counts: list[int]  # rows per template


def _embedding_texts(template: Template) -> tuple[tuple[str, ...], tuple[str, ...]]:
    card = f"{template.name}. {template.description}"
    if template.keywords:
        card += " Keywords: " + ", ".join(template.keywords) + "."
    texts = [card, template.text]
    labels = ["the description", "the template body"]
    for i, example in enumerate(template.examples, start=1):
        texts.append(example)
        labels.append(f"example {i}")
    return tuple(texts), tuple(labels)


class TemplateLibrary:
    """Built-in, user and workspace templates, kept fresh, embedded once, matched fast.

    Thread-safe: the language server may call it from its executor threads.
    """

    def __init__(
        self,
        workspace_root: Path | None,
        user_dir: Path | None = None,
        embedder: EmbedderLike | None = None,
        *,
        builtin: Path | None = None,
        check_interval: float = 0.5,
        cache_dir: Path | None = None,
        disk_cache: bool = True,
    ) -> None:
        self.workspace_root = Path(workspace_root) if workspace_root is not None else None
        self.user_dir = Path(user_dir) if user_dir is not None else kenning_home() / "templates"
        self.builtin_dir = Path(builtin) if builtin is not None else builtin_dir()
        self.embedder = embedder
        self.check_interval = check_interval
        self.cache_dir: Path | None = None
        if disk_cache:
            self.cache_dir = (
                cache_dir if cache_dir is not None else kenning_home() / "templates-cache"
            )
        self._lock = threading.RLock()
        self._embed_lock = threading.Lock()
        self._disk_loaded: set[str] = set()
        self._files: dict[Path, _FileState] = {}
        self._entries: dict[str, _Entry] = {}
        self._ordered: list[Template] = []
        self._problems: list[str] = []
        self._last_check = float("-inf")
        self._generation = 0
        # Vectors by (model id, content hash): a reload re-embeds only what changed.
        self._vectors: dict[tuple[str, str], np.ndarray] = {}
        self._index: _Index | None = None
        self._index_generation = -1
        self._query_cache: OrderedDict[
            tuple[str, str], tuple[np.ndarray | None, frozenset[str]]
        ] = OrderedDict()

    # -- loading ------------------------------------------------------------

    def _folders(self) -> list[tuple[str, Path]]:
        folders = [("builtin", self.builtin_dir), ("user", self.user_dir)]
        if self.workspace_root is not None:
            folders.append(("workspace", self.workspace_root / ".kenning" / "templates"))
        return folders

    @staticmethod
    def _list_json(folder: Path) -> list[Path]:
        try:
            return sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file())
        except OSError:
            return []

    def reload(self, force: bool = False) -> bool:
        """Re-read template files whose size or modification time changed.

        Returns True when the set of templates changed. Called by every public
        method, at most once per ``check_interval`` unless ``force``.
        """
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_check < self.check_interval:
                return False
            self._last_check = now
            changed = False
            seen: set[Path] = set()
            for source, folder in self._folders():
                for path in self._list_json(folder):
                    seen.add(path)
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    signature = (st.st_mtime_ns, st.st_size, st.st_ino)
                    state = self._files.get(path)
                    if state is not None and state.signature == signature:
                        continue
                    templates, problems = parse_template_file(path, source)
                    self._files[path] = _FileState(signature, templates, problems)
                    changed = True
            for gone in [p for p in self._files if p not in seen]:
                del self._files[gone]
                changed = True
            if changed or (not self._ordered and not self._problems):
                self._rebuild()
            return changed

    def _rebuild(self) -> None:
        by_id: dict[str, Template] = {}
        problems: list[str] = []
        rank = {source: i for i, source in enumerate(SOURCES)}
        ordered_files = sorted(
            self._files.items(), key=lambda kv: (rank[self._source_of(kv[0])], str(kv[0]))
        )
        origin: dict[str, str] = {}
        for path, state in ordered_files:
            problems.extend(state.problems)
            for template in state.templates:
                previous = by_id.get(template.id)
                if previous is not None and previous.source == template.source:
                    problems.append(
                        f"{path}: field 'id': {template.id!r} is also defined in "
                        f"{origin[template.id]} (this one wins)"
                    )
                by_id[template.id] = template
                origin[template.id] = str(path)
        entries: dict[str, _Entry] = {}
        for template_id, template in by_id.items():
            old = self._entries.get(template_id)
            digest = template.content_hash()
            if old is not None and old.digest == digest and old.template == template:
                entries[template_id] = old
                continue
            texts, labels = _embedding_texts(template)
            entries[template_id] = _Entry(
                template=template,
                keyword_parts=tuple(_keyword_parts(k) for k in template.keywords),
                texts=texts,
                labels=labels,
                digest=digest,
            )
        self._entries = entries
        self._ordered = sorted(by_id.values(), key=lambda t: t.id)
        self._problems = problems
        self._generation += 1
        digests = {e.digest for e in entries.values()}
        self._vectors = {k: v for k, v in self._vectors.items() if k[1] in digests}

    def _source_of(self, path: Path) -> str:
        for source, folder in reversed(self._folders()):
            if path.parent == folder:
                return source
        return "builtin"

    def templates(self) -> list[Template]:
        """Every valid template, overrides applied, sorted by id."""
        self.reload()
        with self._lock:
            return list(self._ordered)

    @property
    def problems(self) -> list[str]:
        """One line per invalid file, template or field: ``path: field 'x': what is wrong``."""
        self.reload()
        with self._lock:
            return list(self._problems)

    def get(self, template_id: str) -> Template:
        """The template with this id; :class:`UsageError` if there is none."""
        self.reload()
        with self._lock:
            entry = self._entries.get(template_id)
        if entry is None:
            raise UsageError(
                f"unknown template {template_id!r} (see `kenning templates list` for the ids)"
            )
        return entry.template

    # -- embedding ----------------------------------------------------------

    def warm(self) -> None:
        """Load and embed every template now rather than on the first match."""
        self.reload()
        self._ensure_index()

    def _ensure_index(self) -> _Index | None:
        embedder = self.embedder
        if embedder is None:
            return None
        model_id = embedder.space
        # One embedding run at a time; the main lock is not held while the model
        # runs, so listing templates never waits for it.
        with self._embed_lock:
            with self._lock:
                if self._index_is_current(model_id):
                    return self._index
                if model_id not in self._disk_loaded:
                    self._disk_loaded.add(model_id)
                    self._vectors.update(
                        self._read_disk_cache(model_id, int(getattr(embedder, "dims", 0)))
                    )
                entries = list(self._entries.values())
                missing = [e for e in entries if (model_id, e.digest) not in self._vectors]
                generation = self._generation
            if missing:
                flat = [text for e in missing for text in e.texts]
                vectors = np.asarray(embedder.embed_documents(flat), dtype=np.float32)
                if vectors.ndim != 2 or vectors.shape[0] != len(flat):
                    raise ValueError(
                        f"embedder returned shape {vectors.shape} for {len(flat)} texts"
                    )
                row = 0
                with self._lock:
                    for e in missing:
                        n = len(e.texts)
                        self._vectors[(model_id, e.digest)] = vectors[row : row + n]
                        row += n
                self._write_disk_cache(model_id, entries)
            with self._lock:
                index = self._build_index(model_id, entries, int(getattr(embedder, "dims", 0)))
                self._index = index
                self._index_generation = generation
                return index

    def _index_is_current(self, model_id: str) -> bool:
        return (
            self._index is not None
            and self._index_generation == self._generation
            and self._index.model_id == model_id
        )

    def _build_index(self, model_id: str, entries: list[_Entry], dims: int) -> _Index:
        blocks = [self._vectors[(model_id, e.digest)] for e in entries]
        counts = [len(block) for block in blocks]
        starts = np.cumsum([0, *counts[:-1]]) if counts else np.zeros(0)
        if blocks:
            matrix = np.ascontiguousarray(np.vstack(blocks), dtype=np.float32)
        else:
            matrix = np.zeros((0, dims), dtype=np.float32)
        return _Index(
            model_id=model_id,
            entries=entries,
            matrix=matrix,
            starts=np.asarray(starts, dtype=np.int64),
            counts=counts,
        )

    # The vectors of every template ever embedded, per model, so that a new
    # process (each CLI run, each server start) does not pay for the model again.

    def _cache_file(self, model_id: str) -> Path | None:
        if self.cache_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_id) or "model"
        return self.cache_dir / f"{safe}.npz"

    def _read_disk_cache(self, model_id: str, dims: int) -> dict[tuple[str, str], np.ndarray]:
        path = self._cache_file(model_id)
        if path is None:
            return {}
        problem = slot_problem(path)
        if problem is None:
            if not path.is_file():
                return {}
            try:
                with np.load(path, allow_pickle=False) as data:
                    digests = [str(d) for d in data["digests"]]
                    counts = [int(c) for c in data["counts"]]
                    matrix = np.asarray(data["vectors"], dtype=np.float32)
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                problem = str(exc) or type(exc).__name__
        if problem is not None:
            # Derived data only: recompute rather than fail.
            repair(path, f"{path}: the template vector cache is damaged ({problem})")
            return {}
        if matrix.ndim != 2 or (dims and matrix.shape[1] != dims):
            # Vectors of a model that went by this id before (a folder model
            # replaced in place): embed again, and the next write replaces them.
            return {}
        out: dict[tuple[str, str], np.ndarray] = {}
        row = 0
        for digest, count in zip(digests, counts, strict=False):
            out[(model_id, digest)] = matrix[row : row + count]
            row += count
        return out

    def _write_disk_cache(self, model_id: str, entries: list[_Entry]) -> None:
        path = self._cache_file(model_id)
        if path is None:
            return
        with self._lock:
            blocks = [(e.digest, self._vectors.get((model_id, e.digest))) for e in entries]
        kept = [(d, v) for d, v in blocks if v is not None]
        if not kept:
            return
        try:
            owned_dir(path.parent)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    digests=np.asarray([d for d, _ in kept]),
                    counts=np.asarray([len(v) for _, v in kept], dtype=np.int64),
                    vectors=np.vstack([v for _, v in kept]).astype(np.float32),
                )
            os.replace(tmp, path)
        except (OSError, KenningError) as exc:
            log.warning("cannot write template vector cache %s: %s", path, exc)

    def _query(self, kind: str, text: str) -> tuple[np.ndarray | None, frozenset[str]]:
        """The vector and tokens of a chunk or query, cached: the editor asks again and
        again about the chunk under the cursor."""
        embedder = self.embedder
        # By vector space, not model id: int8 and fp32 vectors of one model differ.
        space = getattr(embedder, "space", embedder.model_id) if embedder is not None else ""
        key = (f"{kind}:{space}", text)
        with self._lock:
            hit = self._query_cache.get(key)
            if hit is not None:
                self._query_cache.move_to_end(key)
                return hit
        vector: np.ndarray | None = None
        if embedder is not None:
            if kind == "query":
                vector = np.asarray(embedder.embed_query(text), dtype=np.float32).reshape(-1)
            else:
                vector = np.asarray(embedder.embed_documents([text]), dtype=np.float32)[0]
        value = (vector, _tokens(text))
        with self._lock:
            self._query_cache[key] = value
            while len(self._query_cache) > _QUERY_CACHE_SIZE:
                self._query_cache.popitem(last=False)
        return value

    # -- matching -----------------------------------------------------------

    def match(self, text: str, language: str | None, k: int = 5) -> list[TemplateMatch]:
        """Templates that fit this code (a chunk or a selection), best first."""
        if k <= 0:
            raise UsageError(f"k must be a positive number, not {k}")
        self.reload()
        index = self._ensure_index()
        vector, tokens = self._query("code", text)
        return self._rank(vector, tokens, language, k, index)

    def match_query(
        self, query: str, language: str | None = None, k: int = 5
    ) -> list[TemplateMatch]:
        """Templates for a free-text request such as ``http client with retries``."""
        if k <= 0:
            raise UsageError(f"k must be a positive number, not {k}")
        if not query.strip():
            raise UsageError("the template query is empty")
        self.reload()
        index = self._ensure_index()
        vector, tokens = self._query("query", query)
        return self._rank(vector, tokens, language, k, index)

    def match_vector(
        self, vector: np.ndarray, text: str, language: str | None, k: int = 5
    ) -> list[TemplateMatch]:
        """Like :meth:`match` with the chunk's vector already at hand (from the index).

        The vector must come from the same model as this library's embedder.
        """
        if k <= 0:
            raise UsageError(f"k must be a positive number, not {k}")
        self.reload()
        index = self._ensure_index()
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        return self._rank(vec, self._text_tokens(text), language, k, index)

    def _text_tokens(self, text: str) -> frozenset[str]:
        model_id = self.embedder.model_id if self.embedder is not None else ""
        with self._lock:
            hit = self._query_cache.get((f"code:{model_id}", text))
        return hit[1] if hit is not None else _tokens(text)

    def _rank(
        self,
        vector: np.ndarray | None,
        tokens: frozenset[str],
        language: str | None,
        k: int,
        index: _Index | None,
    ) -> list[TemplateMatch]:
        semantic = index is not None and vector is not None
        if index is not None:
            # The snapshot the vectors belong to, even if a reload happened since.
            candidates = list(enumerate(index.entries))
        else:
            with self._lock:
                candidates = list(enumerate(self._entries.values()))
        lang = normalize_language(language)
        note = ""
        if lang is not None:
            fitting = [(i, e) for i, e in candidates if lang in e.template.languages]
            if fitting:
                candidates = fitting
            else:
                note = f"; no templates for {lang}, so all languages are shown"
        if not candidates:
            return []

        sims: np.ndarray | None = None
        if semantic:
            assert index is not None and vector is not None
            if len(index.matrix) and vector.shape[0] != index.matrix.shape[1]:
                raise ValueError(
                    f"vector has {vector.shape[0]} dimensions, the templates "
                    f"{index.matrix.shape[1]}"
                )
            sims = index.matrix @ vector

        # Score everything, then spend string formatting on the k that are returned.
        scored: list[tuple[float, float, str, int, _Entry, list[str]]] = []
        for i, e in candidates:
            matched = [
                kw
                for kw, parts in zip(e.template.keywords, e.keyword_parts, strict=True)
                if parts and all(p in tokens for p in parts)
            ]
            kw_score = min(1.0, len(matched) / KEYWORD_SATURATION)
            which = -1
            if sims is not None and index is not None:
                start = int(index.starts[i])
                own = sims[start : start + index.counts[i]]
                which = int(np.argmax(own))
                sim = max(0.0, min(1.0, float(own[which])))
                score = SEMANTIC_WEIGHT * sim + (1.0 - SEMANTIC_WEIGHT) * kw_score
            elif matched:
                sim = 0.0
                score = kw_score
            else:
                continue  # no model and no keyword: nothing says this template fits
            scored.append((score, sim, e.template.id, which, e, matched))
        scored.sort(key=lambda item: (-item[0], -item[1], item[2]))

        out: list[TemplateMatch] = []
        for score, sim, _id, which, e, matched in scored[:k]:
            t = e.template
            kw_text = ("keywords: " + ", ".join(matched)) if matched else "no keywords matched"
            if which >= 0:
                why = f"similar to {e.labels[which]} ({sim:.2f}); {kw_text}"
            else:
                why = f"{kw_text} (keywords only: no embedding model)"
            match_lang = lang if lang in t.languages else t.languages[0]
            out.append(TemplateMatch(t, score, why + note, match_lang))
        return out
