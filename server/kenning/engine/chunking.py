"""Turn one file's text into semantic chunks.

Code is parsed with tree-sitter and cut along its definitions; markdown is cut at its
headings; anything else, and any file whose parse fails, is cut into line windows.

What a caller can rely on, for any text at all (this module never raises for input):

* Chunks come back ordered by ``start_line``; ``1 <= start_line <= end_line <= n``
  where ``n`` is the number of lines (``\\n``, ``\\r\\n`` and a lone ``\\r`` all end a
  line, as in LSP).
* Together the chunks cover every non-blank line. No chunk is blank.
* Chunks do not overlap, with two deliberate exceptions: fallback line windows (and
  the windows of an oversized markdown section) overlap by ``WINDOW_OVERLAP`` lines,
  and a definition that starts on the line where the previous chunk ends shares that
  line with it.
* ``text`` is exactly the file's lines ``start_line..end_line``, except for the later
  parts of a split definition (a function over ``MAX_UNIT_LINES``/``MAX_UNIT_CHARS``,
  or a class's fields that come after its methods): those are prefixed with the
  definition's signature line(s) so they embed with context, while their line range
  still names only the real lines of the part. A part holding only closers (``}``,
  ``end``) is not a chunk of its own; it joins the chunk before it.
* ``digest == digest_text(text)``.

Kinds: "function", "method" (a function inside a class, interface, impl or type;
Go methods; C++ ``A::f``; Lua ``M:f``), "class", "interface" (also traits and
protocols), "type" (struct, enum, union, typedef, type alias), "impl" (Rust impl,
Swift extension), "module" (namespaces, Rust ``mod``, Ruby and Elixir modules),
"section" (markdown), "block" (top-level statements grouped together) and "window"
(line windows). A class chunk holds the class's header, docstring, fields and other
lines that are not inside its methods; each method is its own chunk.

Fallbacks: an unknown language, a parser that raises, a parse over its CPU budget, or
a tree that is mostly ERROR nodes gives line windows. C and C++ are the exception to
the last rule: their parse errors usually come from the preprocessor in valid code, so
the walk goes through ERROR nodes. A ``.h`` file that looks like C++ is parsed, and
reported, as "cpp".

Symbols are dotted scope paths: ``Store.flush``, ``Cache.Get`` (Go receiver type),
``Ring.push`` (Rust impl type), ``Shop.Counter.start_link``. C++, C# and PHP
namespaces do not prefix symbols. Blocks and windows have no symbol; markdown
sections carry their heading text.

This module is what the prepare stage (``prepare.py``) runs on every file, in the
indexing worker processes too: it imports nothing heavy (no numpy, no store).
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from collections.abc import Sequence
from itertools import accumulate, repeat
from typing import Any

import xxhash

from kenning.engine.languages import (
    SPECS,
    STRUCTURED_LANGUAGES,
    SUPPORTED_LANGUAGES,
    Def,
    LanguageSpec,
    detect_language,
)
from kenning.engine.namers import (
    HOOKS,
    NAMERS,
    Resolved,
    dotted,
    node_bytes,
    node_text,
    set_source,
)
from kenning.engine.text import fts_columns
from kenning.engine.types import Chunk

__all__ = [
    "MAX_BLOCK_LINES",
    "MAX_UNIT_CHARS",
    "MAX_UNIT_LINES",
    "STRUCTURED_LANGUAGES",
    "SUPPORTED_LANGUAGES",
    "WINDOW_LINES",
    "WINDOW_OVERLAP",
    "chunk_text",
    "detect_language",
    "digest_text",
]

log = logging.getLogger(__name__)

MAX_UNIT_LINES = 60
"""A definition longer than this is split at statement boundaries."""
MAX_UNIT_CHARS = 2000
"""...and so is one with more characters than this."""
MAX_DOC_UNIT_LINES = 2 * MAX_UNIT_LINES
MAX_DOC_UNIT_CHARS = 3 * MAX_UNIT_CHARS
"""A definition whose code is within the limits above stays whole up to these sizes,
its docstring and doc comments included."""
MIN_CHUNK_LINES = 3
"""A piece shorter than this (a lone signature line, an ``impl X {`` header, a one-line
function) joins a neighbour rather than stand alone: it matches every query a little."""
MAX_BLOCK_LINES = 40
"""Top-level statements between definitions are grouped into blocks of at most this."""
WINDOW_LINES = 40
"""Line windows (the fallback) hold at most this many lines..."""
WINDOW_CHARS = 2000
"""...and at most this many characters, but never less than one line."""
WINDOW_OVERLAP = 5
"""Consecutive fallback windows share this many lines (less for short windows)."""
SIGNATURE_MAX_LINES = 4
"""At most this many signature lines prefix the later parts of a split definition."""
MAX_NESTING = 4
"""Definitions nested deeper than this (class in class in ...) stay inside their parent."""
ERROR_FALLBACK_RATIO = 0.5
"""If parse errors span more than this share of the lines, use line windows instead."""
PARSE_BUDGET_MIN_BYTES = 65536
"""Files at least this big parse under a CPU-time budget (tree-sitter's error recovery
can blow up on adversarial input); smaller ones parse too fast to need one."""
PARSE_BUDGET_S = 2.0
PARSE_BUDGET_S_PER_MB = 5.0
"""The budget: this much CPU time, plus this much per megabyte of source."""

# C++ that lives in a `.h` file: parsed (and reported) as "cpp".
_CPP_HINTS = re.compile(
    r"^[ \t]*(?:class|namespace|template)\b|^[ \t]*(?:public|private|protected):|\bstd::",
    re.M,
)

# tree-sitter-bash's scanner reads out of bounds (SIGSEGV on Linux, now and then)
# on a `{` followed later by a character outside the BMP (4 UTF-8 bytes): upstream
# tree-sitter/tree-sitter-bash#337, open. Such a file is cut into line windows.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _bash_would_crash(text: str) -> bool:
    brace = text.find("{")
    return brace >= 0 and _ASTRAL.search(text, brace) is not None


# A part of a class or function that holds only closers (`}`, `end`, `});`) joins the
# chunk before it instead of becoming a chunk of its own.
_TRIVIAL_LINE = re.compile(
    r"[\s{}()\[\];,.]*(?:(?:end|fi|done|esac)\b[\s{}()\[\];,.]*)?(?:(?://|#\s|--|/\*).*)?"
)
_METHOD_OWNERS = frozenset({"class", "interface", "impl", "type"})
_MAX_SPLIT_DEPTH = 48
_MAX_TRANSPARENT_DEPTH = 16

_local = threading.local()


def digest_text(text: str) -> str:
    """xxh3-128 hex digest of ``text`` with line endings, trailing whitespace and
    blank lines normalised away, so whitespace-only edits keep the digest."""
    norm = "\n".join(filter(None, map(str.rstrip, text.splitlines())))
    return xxhash.xxh3_128_hexdigest(norm.encode("utf-8", "surrogatepass"))


def _parser(grammar: str) -> Any:
    # tree-sitter parsers are not thread-safe; one per thread and grammar.
    cache: dict[str, Any] | None = getattr(_local, "parsers", None)
    if cache is None:
        cache = _local.parsers = {}
    parser = cache.get(grammar)
    if parser is None:
        from tree_sitter_language_pack import get_parser

        parser = cache[grammar] = get_parser(grammar)  # type: ignore[arg-type]
    return parser


def _split_lines(text: str) -> tuple[str, list[str]]:
    """The text with every line ending made ``\n``, and its lines."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return text, lines


def chunk_text(
    path: str, text: str, language: str | None = None, lexical: bool = False
) -> list[Chunk]:
    """Chunks of one file. ``path`` is stored as given (workspace-relative, posix);
    ``language`` None means ``detect_language(path)``. Never raises for any text.

    ``lexical``: fill each chunk's lexical index columns too (``Chunk.lexical``),
    as the prepare stage does in its worker processes.
    """
    text, lines = _split_lines(text)
    if language is None:
        language = detect_language(path, lines[0] if lines else None) or "text"
    if not lines:
        return []
    # cum[i]: characters before row i, newlines included.
    cum = list(accumulate(map(int.__add__, map(len, lines), repeat(1)), initial=0))
    pieces: list[list[Any]] | None = None
    if language == "c" and path.endswith(".h") and _CPP_HINTS.search(text, 0, 200_000):
        language = "cpp"
    spec = SPECS.get(language)
    if spec is not None and spec.grammar == "bash" and _bash_would_crash(text):
        spec = None
    try:
        if spec is not None:
            pieces = _Tree(spec, lines, cum).pieces(text)
            if pieces is not None:
                pieces = _merge_small(_fill_gaps(_trim(pieces, lines), lines, cum), cum)
        elif language == "markdown":
            pieces = _fill_gaps(_trim(_markdown(lines, cum), lines), lines, cum)
    except Exception:  # a grammar quirk must cost structure, never the file
        log.warning("chunking %s as %s failed; using line windows", path, language, exc_info=True)
        pieces = None
    if pieces is None:
        pieces = [
            [s, e, "window", None, None, None, None, False]
            for s, e in _windows(
                lines, cum, 0, len(lines) - 1, WINDOW_LINES, WINDOW_CHARS, WINDOW_OVERLAP
            )
        ]
    out = []
    for p in pieces:
        s, e, kind, symbol, prefix, unit = p[:6]
        # The text's lines s..e, newlines included: one slice, no join.
        body = text[cum[s] : cum[e + 1] - 1]
        if prefix:
            body = f"{prefix}\n{body}"
        us = ue = None
        if unit is not None and (unit.start < s or unit.end > e):
            us, ue = unit.start + 1, unit.end + 1
        also = _extra(p, 8)
        out.append(
            Chunk(
                path,
                s + 1,
                e + 1,
                kind,
                symbol,
                language,
                body,
                digest_text(body),
                us,
                ue,
                also,
                fts_columns(symbol, also, body) if lexical else None,
                _extra(p, 9),
            )
        )
    return out


def _is_blank(line: str) -> bool:
    return not line or line.isspace()


def _windows(
    lines: Sequence[str],
    cum: Sequence[int],
    s: int,
    e: int,
    max_lines: int,
    max_chars: int,
    overlap: int,
) -> list[tuple[int, int]]:
    """Row ranges of at most ``max_lines``/``max_chars`` (but at least one line) that
    cover the non-blank rows of ``s..e``; blank edges are trimmed."""
    out: list[tuple[int, int]] = []
    i = s
    while i <= e:
        while i <= e and _is_blank(lines[i]):
            i += 1
        if i > e:
            break
        j = min(e, i + max_lines - 1)
        by_chars = bisect.bisect_right(cum, cum[i] + max_chars, i + 1) - 2
        j = max(i, min(j, by_chars))
        k = j
        while k > i and _is_blank(lines[k]):
            k -= 1
        out.append((i, k))
        if j >= e:
            break
        i = j + 1 - min(overlap, (j - i + 1) // 4)
    return out


def _trim(pieces: list[list[Any]], lines: Sequence[str]) -> list[list[Any]]:
    """Drop blank edge lines (a node may end in trailing blank lines, and a part may
    start where an earlier chunk left off) and pieces left with nothing."""
    out = []
    for p in pieces:
        s, e = p[0], p[1]
        while s <= e and _is_blank(lines[s]):
            s += 1
        while e > s and _is_blank(lines[e]):
            e -= 1
        if s <= e:
            p[0], p[1] = s, e
            out.append(p)
    return out


def _fill_gaps(
    pieces: list[list[Any]], lines: Sequence[str], cum: Sequence[int]
) -> list[list[Any]]:
    """Cover any non-blank line the structure missed with blocks: the coverage
    promise must not depend on every grammar behaving as expected."""
    pieces.sort(key=lambda p: p[0])
    out: list[list[Any]] = []
    covered = -1
    for p in [*pieces, [len(lines), len(lines), None]]:
        if p[0] > covered + 1:
            for s, e in _windows(
                lines, cum, covered + 1, p[0] - 1, MAX_BLOCK_LINES, MAX_UNIT_CHARS, 0
            ):
                out.append([s, e, "block", None, None, None, None, False])
        if p[2] is None:
            break
        out.append(p)
        covered = max(covered, p[1])
    return out


def _merge_small(pieces: list[list[Any]], cum: Sequence[int]) -> list[list[Any]]:
    """Join every piece under ``MIN_CHUNK_LINES`` to a neighbour, while the two fit.

    The neighbour is, first, another part of the same definition; then, for a
    class's header or its fields after the methods, the member next to it; then a
    sibling in the same definition (or that definition's own part); then whichever
    is next to it. Parts of definitions go first and loose statements last, each
    smallest first, so a header joins its class before a stray line joins either.
    Loose statements never join the definition below them (an import is not part
    of the function after it): one that has nothing else to join stays small, and
    search leaves it out of answers (see search.Searcher).
    """
    if len(pieces) < 2:
        return pieces
    while True:
        small = [i for i, p in enumerate(pieces) if p[1] - p[0] + 1 < MIN_CHUNK_LINES]
        if not small:
            return pieces
        small.sort(key=lambda i: (pieces[i][2] == "block", pieces[i][1] - pieces[i][0]))
        for i in small:
            j = _partner(pieces, i, cum)
            if j is not None:
                a, b = min(i, j), max(i, j)
                pieces[a] = _join(pieces[a], pieces[b])
                del pieces[b]
                break
        else:
            return pieces


MERGE_TINY_DEFINITIONS = True


def _partner(pieces: list[list[Any]], i: int, cum: Sequence[int]) -> int | None:
    p = pieces[i]
    s, e, unit, parent = p[0], p[1], p[5], p[6]
    if not MERGE_TINY_DEFINITIONS and unit is None and p[2] != "block":
        return None
    near = [j for j in (i - 1, i + 1) if 0 <= j < len(pieces)]
    order: list[int] = []
    if unit is not None:
        order += [j for j in near if pieces[j][5] is unit]
        members = [j for j in near if pieces[j][6] is unit]
        order += members[::-1] if p[7] else members
    if p[2] == "block" and unit is None:
        # Statements after a definition (`module.exports = Foo;`) are its tail;
        # imports above one are not its head: they join only other statements.
        near = [j for j in near if j < i or pieces[j][2] == "block"]
    order += [
        j
        for j in near
        if (pieces[j][6] is parent and pieces[j][5] is None)
        or (parent is not None and pieces[j][5] is parent)
    ]
    order += near
    for j in dict.fromkeys(order):
        q = pieces[j]
        lo, hi = min(s, q[0]), max(e, q[1])
        if hi - lo < MAX_DOC_UNIT_LINES and cum[hi + 1] - cum[lo] <= MAX_DOC_UNIT_CHARS:
            return j
    return None


def _join(first: list[Any], second: list[Any]) -> list[Any]:
    """Two neighbouring pieces as one, named after the one that is a definition of
    its own (else the longer). It keeps a signature prefix only when its first
    lines are a later part of that same definition."""

    def weight(p: list[Any]) -> tuple[bool, int]:
        return (p[5] is None and p[2] != "block", p[1] - p[0])

    main = second if weight(second) > weight(first) else first
    joined = list(main)
    joined[0] = min(first[0], second[0])
    joined[1] = max(first[1], second[1])
    same = first is main or (first[5] is not None and first[5] is main[5])
    joined[4] = first[4] if same else None
    joined[7] = first[7] if same else main[7]
    unit = main[5]
    if unit is not None:  # a definition's range holds every line its parts took in
        unit.start = min(unit.start, joined[0])
        unit.end = max(unit.end, joined[1])
    # The other piece's definitions stay findable by name (see Chunk.also), and
    # search can answer by one of them, with its own lines (see Chunk.parts).
    other = second if main is first else first
    also = [*_extra(main, 8), *_extra(other, 8)]
    parts = [*_extra(main, 9), *_extra(other, 9)]
    if other[3] and other[3] != main[3]:
        also.append(other[3])
        # A part of a split definition (a class's header) is no answer of its
        # own: its definition's other chunks answer for it.
        if other[2] != "block" and other[5] is None:
            s, e = _extra(other, 10) or (other[0], other[1])
            parts.append((other[3], s + 1, e + 1, other[2]))
    del joined[8:]
    joined += [
        tuple(dict.fromkeys(a for a in also if a != main[3])),
        tuple(sorted(dict.fromkeys(q for q in parts if q[0] != main[3]), key=lambda q: q[1])),
        _extra(main, 10) or (main[0], main[1]),
    ]
    return joined


def _extra(p: list[Any], i: int) -> tuple[Any, ...]:
    """A piece's optional field ``i``, which only joined pieces have: 8 the other
    symbols it holds, 9 their (symbol, first line, last line, kind), 1-based, 10
    the rows of its own definition before anything joined it."""
    return p[i] if len(p) > i else ()


# --- markdown -----------------------------------------------------------------------

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r" {0,3}(?:=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def _markdown(lines: Sequence[str], cum: Sequence[int]) -> list[list[Any]]:
    n = len(lines)
    heads: list[tuple[int, str, int]] = []  # (first row, title, row of the heading text)
    i = 0
    if lines[0].strip() == "---":  # YAML front matter is not a setext underline
        for j in range(1, n):
            if lines[j].strip() in ("---", "..."):
                i = j + 1
                break
    fence = ""
    prev_para = False  # previous line is paragraph text a setext underline may apply to
    while i < n:
        line = lines[i]
        if fence:
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = ""
            i += 1
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)
            prev_para = False
        elif (m := _ATX.match(line)) is not None:
            heads.append((i, (m.group(2) or "").strip(), i))  # "" for a bare `#`
            prev_para = False
        elif prev_para and _SETEXT.match(line):
            heads.append((i - 1, lines[i - 1].strip(), i - 1))
            prev_para = False
        else:
            prev_para = not _is_blank(line) and not line.startswith(("    ", "\t"))
        i += 1
    starts = [0] + [h[0] for h in heads if h[0] > 0]
    titles: list[tuple[str | None, int]] = [(None, -1)] if not heads or heads[0][0] > 0 else []
    titles += [(h[1] or None, h[2]) for h in heads]
    pieces: list[list[Any]] = []
    for k, s in enumerate(starts):
        e = starts[k + 1] - 1 if k + 1 < len(starts) else n - 1
        title, hrow = titles[k]
        while e >= s and _is_blank(lines[e]):
            e -= 1
        if e < s:
            continue
        if e - s + 1 <= MAX_UNIT_LINES and cum[e + 1] - cum[s] <= MAX_UNIT_CHARS:
            pieces.append([s, e, "section", title, None, None, None, False])
            continue
        prefix = lines[hrow].strip() if hrow >= 0 else None
        for w, (ws, we) in enumerate(
            _windows(lines, cum, s, e, WINDOW_LINES, WINDOW_CHARS, WINDOW_OVERLAP)
        ):
            pieces.append(
                [ws, we, "section", title, prefix if w and ws > hrow else None, None, None, False]
            )
    return pieces


# --- tree-sitter ----------------------------------------------------------------------


def _rows(node: Any, last: int) -> tuple[int, int]:
    """A node's first and last row, clamped to the file's last row ``last``."""
    sr = node.start_point[0]
    er, ec = node.end_point
    # A node that swallowed its trailing newline ends at column 0 of the next row.
    if ec == 0 and er > sr:
        er -= 1
    # Zero-width nodes (a MISSING token at the end of the file) can sit past the end.
    # (Comparisons, not min(): this runs for every node the walk looks at.)
    return (sr if sr < last else last), (er if er < last else last)


def _docstring(body: Any | None) -> Any | None:
    """The string literal that opens a body (a Python docstring), if any."""
    if body is None:
        return None
    for child in body.named_children:
        if child.type == "comment":
            continue
        if child.type == "expression_statement" and child.named_child_count == 1:
            child = child.named_children[0]
        return child if child.type in ("string", "concatenated_string") else None
    return None


class _Owner:
    """A definition whose lines are spread over several items (a class around its
    methods, or a function too big for one chunk): its rows ``start..end``, and the
    definition it sits in (``parent``)."""

    __slots__ = ("container", "end", "kind", "parent", "signature", "start", "symbol")

    def __init__(
        self,
        kind: str,
        symbol: str | None,
        signature: str,
        start: int,
        end: int,
        parent: _Owner | None,
        container: bool,
    ) -> None:
        self.kind = kind
        self.symbol = symbol
        self.signature = signature
        self.start = start
        self.end = end
        self.parent = parent
        self.container = container


# Items, in document order:
#   ("u", start, end, kind, symbol, owner): a whole definition that fits in one chunk
#   ("f", start, end, owner, node, header, depth): lines of `owner` (None: top level)
#   that are not definitions; `node` lets an oversized item be split along its children.
Item = tuple[Any, ...]


class _Tree:
    def __init__(self, spec: LanguageSpec, lines: list[str], cum: list[int]) -> None:
        self.spec = spec
        self.lines = lines
        self.cum = cum
        self.items: list[Item] = []
        self.last = len(lines) - 1
        self.namers = NAMERS.get(spec.grammar, {})
        self.hook = HOOKS.get(spec.grammar)

    def pieces(self, text: str) -> list[list[Any]] | None:
        source = text.encode("utf-8", "surrogatepass")
        parser = _parser(self.spec.grammar)
        if len(source) < PARSE_BUDGET_MIN_BYTES:
            tree = parser.parse(source)
        else:
            # Thread CPU time, not wall time: a busy machine must not change the result.
            deadline = (
                time.thread_time() + PARSE_BUDGET_S + PARSE_BUDGET_S_PER_MB * len(source) / 1e6
            )
            try:
                tree = parser.parse(
                    lambda offset, _point: source[offset : offset + 65536],
                    progress_callback=lambda _offset, _has_error: time.thread_time() > deadline,
                )
            except ValueError:  # tree-sitter's word for "cancelled"
                log.info("parse over budget; using line windows")
                return None
        if tree is None:
            return None
        root = tree.root_node
        if root.has_error and not self.spec.tolerate_errors:
            if root.type == "ERROR":
                return None
            bad = 0
            for child in root.children:
                if child.type == "ERROR":
                    s, e = _rows(child, self.last)
                    bad += e - s + 1
            if bad > ERROR_FALLBACK_RATIO * len(self.lines):
                return None
        set_source(source)
        try:
            self._walk(root.children, None, None, 0, 0)
        finally:
            set_source(b"")
        return self._pack()

    # -- sizes --------------------------------------------------------------------
    def _fits(self, s: int, e: int, max_lines: int) -> bool:
        cum = self.cum
        return e - s < max_lines and cum[e + 1] - cum[s] <= MAX_UNIT_CHARS

    def _code_fits(self, start: int, end: int, decl: Any, body: Any | None) -> bool:
        """Whether a definition stays one chunk: its code within the unit limits, and
        the whole of it, comments and docstring included, within twice those.

        A long docstring or doc comment is what a reader (and a query) most wants
        next to the code; counting it would split a short function into a lone
        signature line and a few stray statements.
        """
        if self._fits(start, end, MAX_UNIT_LINES):
            return True
        cum = self.cum
        if end - start >= MAX_DOC_UNIT_LINES or cum[end + 1] - cum[start] > MAX_DOC_UNIT_CHARS:
            return False
        code_start = max(start, min(decl.start_point[0], end))
        lines = end - code_start + 1
        chars = cum[end + 1] - cum[code_start]
        doc = _docstring(body)
        if doc is not None:
            ds, de = _rows(doc, self.last)
            if code_start <= ds <= de <= end:
                lines -= de - ds + 1
                chars -= cum[de + 1] - cum[ds]
        return lines <= MAX_UNIT_LINES and chars <= MAX_UNIT_CHARS

    def _trivial(self, s: int, e: int) -> bool:
        if e - s > 2:
            return False
        return all(_TRIVIAL_LINE.fullmatch(self.lines[r]) for r in range(s, e + 1))

    # -- definitions --------------------------------------------------------------
    def _resolve(self, node: Any, depth: int = 0) -> Resolved | None:
        t = node.type
        d = self.spec.defs.get(t)
        if d is not None:
            namer = self.namers.get(t)
            if namer is not None:
                name, kind = namer(node)
                if name is None and kind == "":
                    return None  # the namer says this is not a definition after all
                if kind:
                    d = Def(kind, d.container, d.scoped)
                return d, name, node
            return d, self._name(node), node
        if t in self.spec.wrappers and depth < 3:
            for child in reversed(node.named_children):
                found = self._resolve(child, depth + 1)
                if found is not None:
                    return found
            return None
        if self.hook is not None:
            return self.hook(node)
        return None

    def _name(self, node: Any) -> str | None:
        name = node.child_by_field_name("name")
        if name is None and self.spec.name_types:
            for child in node.named_children:
                if child.type in self.spec.name_types:
                    name = child
                    break
        text = node_text(name)
        if text and text[0] in "'\"":  # TypeScript `declare module "x"`
            text = text.strip("'\"") or None
        return dotted(text)  # Ruby `class A::B`, C++ `namespace a::b`

    def _body(self, decl: Any) -> Any | None:
        body = decl.child_by_field_name("body")
        if body is None and self.spec.body_types:
            for child in decl.children:
                if child.type in self.spec.body_types:
                    return child
        return body

    def _header_end(self, decl_start: int, body: Any) -> int:
        """Last row of a definition's header: the row before its body, or the body's
        first row when the body starts mid-line (`def f(): ...`, `fn f() {`)."""
        br, bc = body.start_point
        line = self.lines[br] if br < len(self.lines) else ""
        before = line[:bc] if line.isascii() else line.encode("utf-8", "surrogatepass")[:bc]
        end = br if before.strip() else br - 1
        return max(end, decl_start)

    def _signature(self, decl: Any, body: Any | None) -> str:
        s = decl.start_point[0]
        e = self._header_end(s, body) if body is not None else s
        e = min(e, s + SIGNATURE_MAX_LINES - 1, len(self.lines) - 1)
        return "\n".join(self.lines[s : e + 1])

    def _doc_above(self, s: int, e: int, below: int) -> bool:
        """Whether comment rows ``s..e`` are a doc comment (``/**``, ``///``) for the
        definition at row ``below``, with no more than two blank lines between."""
        lines = self.lines
        if below - e > 3 or not all(_is_blank(lines[r]) for r in range(e + 1, below)):
            return False
        head = lines[s].lstrip()
        return head.startswith(("/**", "///")) and not head.startswith("////")

    # -- the walk -----------------------------------------------------------------
    def _attachable(self, node: Any) -> bool:
        prefixes = self.spec.attach_prefixes
        if prefixes and node.type != "comment":
            return node_bytes(node).startswith(prefixes)
        return True

    def _walk(
        self, nodes: Sequence[Any], owner: _Owner | None, scope: str | None, depth: int, tdepth: int
    ) -> None:
        items = self.items
        spec = self.spec
        last = self.last
        transparent, attach, defs, wrappers = (
            spec.transparent,
            spec.attach,
            spec.defs,
            spec.wrappers,
        )
        hooked = self.hook is not None
        pend_s = pend_e = -1  # comments/attributes waiting for the definition below them
        prev_end = -1
        for node in nodes:
            t = node.type
            sr, er = _rows(node, last)
            if t in transparent and tdepth < _MAX_TRANSPARENT_DEPTH:
                if pend_s >= 0:
                    items.append(("f", pend_s, pend_e, owner, None, False, 0))
                    pend_s = -1
                self._walk(node.children, owner, scope, depth, tdepth + 1)
                prev_end = er
                continue
            if t in attach and sr > prev_end and self._attachable(node):
                if pend_s >= 0 and sr > pend_e + 1:
                    items.append(("f", pend_s, pend_e, owner, None, False, 0))
                    pend_s = -1
                if pend_s < 0:
                    pend_s = sr
                pend_e = prev_end = er
                continue
            # Most nodes are plain statements: _resolve would say None without a look.
            found = (
                self._resolve(node)
                if (t in defs or t in wrappers or hooked) and node.is_named
                else None
            )
            start = sr
            if pend_s >= 0:
                if found is not None and (sr <= pend_e + 1 or self._doc_above(pend_s, pend_e, sr)):
                    start = pend_s
                else:
                    items.append(("f", pend_s, pend_e, owner, None, False, 0))
                pend_s = -1
            if found is None:
                items.append(("f", sr, er, owner, node, False, 0))
            else:
                self._unit(found, start, er, owner, scope, depth)
            prev_end = er
        if pend_s >= 0:
            items.append(("f", pend_s, pend_e, owner, None, False, 0))

    def _unit(
        self,
        found: Resolved,
        start: int,
        end: int,
        owner: _Owner | None,
        scope: str | None,
        depth: int,
    ) -> None:
        d, name, decl = found
        kind = d.kind
        if kind == "function" and owner is not None and owner.kind in _METHOD_OWNERS:
            kind = "method"
        symbol = f"{scope}.{name}" if scope and name else (name or scope)
        items = self.items
        if d.container and depth < MAX_NESTING:
            body = self._body(decl)
            if body is None:
                if not d.scoped:  # `namespace App;` names the file, it is not a unit
                    items.append(("f", start, end, owner, decl, False, 0))
                    return
            else:
                inner = _Owner(kind, symbol, self._signature(decl, body), start, end, owner, True)
                header_end = self._header_end(decl.start_point[0], body)
                items.append(("f", start, header_end, inner, None, True, 0))
                self._walk(body.children, inner, symbol if d.scoped else scope, depth + 1, 0)
                body_end = _rows(body, self.last)[1]
                if end > body_end:
                    items.append(("f", body_end + 1, end, inner, None, False, 0))
                return
        body = self._body(decl)
        if self._code_fits(start, end, decl, body):
            items.append(("u", start, end, kind, symbol, owner))
            return
        big = _Owner(kind, symbol, self._signature(decl, body), start, end, owner, False)
        if body is None:
            items.append(("f", start, end, big, decl, True, 0))
            return
        items.append(("f", start, self._header_end(decl.start_point[0], body), big, None, True, 0))
        for child in body.children:
            s, e = _rows(child, self.last)
            items.append(("f", s, e, big, child, False, 0))
        body_end = _rows(body, self.last)[1]
        if end > body_end:
            items.append(("f", body_end + 1, end, big, None, False, 0))

    # -- packing items into pieces ------------------------------------------------
    def _pack(self) -> list[list[Any]]:
        pieces: list[list[Any]] = []
        # the open group: [owner, start, end, has_header]
        group: list[Any] | None = None
        last_end = -1

        def close() -> None:
            nonlocal group
            if group is None:
                return
            owner, s, e, header = group
            group = None
            if not header and pieces and self._trivial(s, e):
                pieces[-1][1] = max(pieces[-1][1], e)
                return
            if owner is None:
                pieces.append([s, e, "block", None, None, None, None, False])
            else:
                pieces.append(
                    [
                        s,
                        e,
                        owner.kind,
                        owner.symbol,
                        None if header else owner.signature,
                        owner,
                        owner.parent,
                        header,
                    ]
                )

        cum = self.cum
        last = self.last
        trivial = self._trivial
        stack = self.items[::-1]
        while stack:
            item = stack.pop()
            if item[0] == "u":
                _, s, e, kind, symbol, parent = item
                close()
                if e <= last_end:
                    continue  # wholly on lines already taken (`class A {} class B {}`)
                pieces.append([s, e, kind, symbol, None, None, parent, False])
                last_end = e
                continue
            _, s, e, owner, node, header, depth = item
            if s <= last_end:
                s = last_end + 1
                if s > e:
                    continue
            limit = MAX_BLOCK_LINES if owner is None else MAX_UNIT_LINES
            # (_fits inlined: this loop runs for every item)
            if group is not None and group[0] is owner:
                gs = group[1]
                if (e - gs < limit and cum[e + 1] - cum[gs] <= MAX_UNIT_CHARS) or trivial(s, e):
                    group[2] = e
                    group[3] = group[3] or header
                    last_end = e
                    continue
                close()
            elif group is not None:
                close()
            if e - s < limit and cum[e + 1] - cum[s] <= MAX_UNIT_CHARS:
                group = [owner, s, e, header]
                last_end = e
                continue
            # Too big for one chunk: split along the node's children, or by lines.
            children: Sequence[Any] = (
                node.children if node is not None and depth < _MAX_SPLIT_DEPTH else ()
            )
            if len(children) > 1 or (children and _rows(children[0], last) != (s, e)):
                subs: list[Item] = []
                for i, child in enumerate(children):
                    cs, ce = _rows(child, last)
                    if i == 0:
                        cs = s
                    subs.append(("f", cs, ce, owner, child, header and i == 0, depth + 1))
                if subs and subs[-1][2] < e:
                    subs.append(("f", subs[-1][2] + 1, e, owner, None, False, depth + 1))
                stack.extend(reversed(subs))
                continue
            if len(children) == 1:
                stack.append(("f", s, e, owner, children[0], header, depth + 1))
                continue
            for i, (ws, we) in enumerate(
                _windows(self.lines, self.cum, s, e, limit, MAX_UNIT_CHARS, 0)
            ):
                close()
                group = [owner, ws, we, header and i == 0]
                last_end = we
        close()
        return pieces
