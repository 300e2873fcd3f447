"""Word handling shared by the FTS index and lexical queries.

FTS5's unicode61 tokenizer already splits ``parse_http_response`` at the
underscores; camelCase and PascalCase need help, so every mixed-case word is
written to the index followed by its parts (``parseHttpResponse`` -> ``parse
http response``). Queries are split the same way, so natural words find code.
"""

from __future__ import annotations

import re

_RUN = re.compile(r"[^\W_]+")
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
    """``text`` followed by the parts of its mixed-case words, for the FTS index."""
    extra: list[str] = []
    seen: set[str] = set()
    for word in _RUN.findall(text):
        if word in seen or word.islower() or word.isupper() or word.isdigit():
            continue
        seen.add(word)
        parts = split_word(word)
        if len(parts) > 1:
            extra.extend(parts)
    if not extra:
        return text
    return text + "\n" + " ".join(extra)


def query_terms(query: str) -> list[str]:
    """The distinct lower-case words of a query, identifiers split, stopwords dropped."""
    terms: list[str] = []
    for word in _RUN.findall(query):
        for part in [word.lower(), *split_word(word)]:
            if part not in terms and part not in STOPWORDS:
                terms.append(part)
    if not terms:
        # A query made only of stopwords still deserves an answer.
        terms = [w.lower() for w in _RUN.findall(query)]
    return terms


def fts_match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's words, each as a quoted token."""
    terms = query_terms(query)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
