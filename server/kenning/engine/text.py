"""Word handling shared by the FTS index and lexical queries.

FTS5's unicode61 tokenizer already splits ``parse_http_response`` at the
underscores; camelCase and PascalCase need help, so the indexed text has its
case boundaries opened up (``parseHttpResponse`` -> ``parse Http Response``).
Queries are split the same way, so natural words find code.
"""

from __future__ import annotations

import re

import xxhash

_RUN = re.compile(r"[^\W_]+")
# Case boundaries inside words: parseHTTPResponse -> parse HTTP Response. A space goes
# before a capital that follows a small letter or digit, or that follows a capital
# and precedes a small letter. The pattern starts with the capital, so the regex
# engine skips ahead to capitals instead of trying every position; split() with the
# capital captured leaves no Python call per match. Two and a half times faster than
# two re.sub passes with templates on real code (measured; same output).
_BOUNDARY = re.compile(r"([A-Z])(?:(?<=[a-z0-9].)|(?<=[A-Z].)(?=[a-z]))")


def split_case(text: str) -> str:
    parts = _BOUNDARY.split(text)
    if len(parts) == 1:
        return text
    parts[1::2] = [" " + c for c in parts[1::2]]
    return "".join(parts)


_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "i",
        "in",
        "into",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "does",
        "do",
        "can",
        "find",
        "code",
        "function",
        "show",
        "me",
        "my",
        "our",
        "we",
        "you",
        "your",
        "all",
        "any",
        "some",
    ]
)


def split_word(word: str) -> list[str]:
    """``parseHTTPResponse2`` -> ``["parse", "http", "response", "2"]``."""
    return [p.lower() for p in _PARTS.findall(word)]


def fts_text(text: str) -> str:
    """``text`` with camelCase words split, for the FTS index.

    The split is done in one regex pass over the whole text (a per-word Python
    loop cost more than the rest of indexing); queries are split the same way,
    and the symbol column keeps the whole identifier too (see fts_symbol).
    """
    return split_case(text)


def fts_symbol(symbol: str) -> str:
    """A symbol both whole and split, so exact names and their words both match."""
    split = split_case(symbol)
    return symbol if split == symbol else f"{symbol} {split}"


def fts_name(symbol: str) -> str:
    """The last part of a dotted symbol, whole and split: ``Store.writeFile`` ->
    ``writeFile write File``. Its own FTS column, weighted above the scope it sits in."""
    return fts_symbol(symbol.rsplit(".", 1)[-1])


def fts_columns(symbol: str | None, also: tuple[str, ...], text: str) -> tuple[str, str, str]:
    """A chunk's (symbol, body, name) FTS columns; ``also`` names the other
    definitions it holds, which are found by their names too."""
    symbols = [x for x in (symbol, *also) if x]
    return (
        " ".join(map(fts_symbol, symbols)),
        fts_text(text),
        " ".join(fts_name(x) for x in symbols),
    )


def fts_path(path: str) -> str:
    """A path with its camelCase words opened up, like the text (``lib/httpServer.js``)."""
    return split_case(path)


EMBED_HEADER_VERSION = 1
"""Bump when :func:`embed_header` or :func:`embed_input` change: vectors are cached
by what was embedded (see :func:`embed_key`)."""


def embed_header(path: str, language: str, kind: str, symbol: str | None) -> str:
    """What a chunk's code is embedded under: where it is and what it defines.

    The code alone often says neither (a method's text does not hold its class,
    a file's path names its subject). Identifiers here are opened into words a
    sentence model knows (``SmallVec`` -> ``Small Vec``); the code itself is
    embedded as written (opening its identifiers too measured no better on the
    dev benchmark: bench/README.md).
    """
    head = f"{split_case(path)}\n{language} {kind}"
    return f"{head} {split_case(symbol)}" if symbol else head


def embed_input(header: str, text: str) -> str:
    """The text a chunk is embedded as: its header, then its code."""
    return f"{header}\n{text}" if header else text


def embed_key(header: str, digest: str) -> str:
    """The cache key of a chunk's vector: its header and its text's digest."""
    return xxhash.xxh3_128_hexdigest(f"{EMBED_HEADER_VERSION}\0{header}\0{digest}".encode())


NAME_VERSION = 1
"""Bump when :func:`name_input` changes (see :func:`name_key`)."""


def name_input(path: str, symbol: str | None) -> str:
    """The text a chunk's name vector is embedded from: its qualified name
    opened into words (``Session.get_adapter`` -> ``Session get adapter``), or
    its file's path when it defines nothing. A doc comment's first sentence
    ("Returns the connection adapter for the URL") is closer to a name than to
    a body of code: searched beside the code's vector, the name's lifted hybrid
    MRR@10 by 0.02 on the dev benchmark (bench/README.md, "Name vectors")."""
    return split_case(symbol) if symbol else split_case(path)


def name_key(text: str) -> str:
    """The cache key of a name vector; never equal to a chunk's (:func:`embed_key`)."""
    return xxhash.xxh3_128_hexdigest(f"name\0{NAME_VERSION}\0{text}".encode())


def words_of(text: str) -> set[str]:
    """The lower-case words of ``text`` with identifiers opened (``is_empty`` ->
    ``{"is", "empty"}``), none of them whole; for comparing a query with a name."""
    return {part for word in _RUN.findall(text) for part in split_word(word)}


def query_words(query: str) -> set[str]:
    """:func:`words_of` a query, stopwords and one-letter fragments left out."""
    return {w for w in words_of(query) if w not in STOPWORDS and len(w) > 1}


def query_terms(query: str) -> list[str]:
    """The distinct lower-case words of a query, identifiers split, stopwords dropped."""
    terms: list[str] = []
    for word in _RUN.findall(query):
        for part in [word.lower(), *split_word(word)]:
            # One-letter fragments ("function's" -> "s") match everywhere.
            if part not in terms and part not in STOPWORDS and len(part) > 1:
                terms.append(part)
    if not terms:
        # A query made only of stopwords still deserves an answer.
        terms = [w.lower() for w in _RUN.findall(query)]
    return terms
