"""LSP snippet syntax (``$1``, ``${1:default}``, ``${1|a,b|}``, ``$TM_FILENAME``):
checking a template's body, and its plain text for clients without snippets.

Template bodies are LSP snippets (the grammar of the LSP specification's
"Snippet Syntax"); :mod:`kenning.engine.templates` checks every body with
:func:`validate_snippet` when it loads a template file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class SnippetError(ValueError):
    """A snippet that does not follow the LSP snippet grammar."""


@dataclass(frozen=True, slots=True)
class _Text:
    value: str


@dataclass(frozen=True, slots=True)
class _Tabstop:
    number: int
    children: tuple[_Node, ...] = ()
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Variable:
    name: str
    children: tuple[_Node, ...] | None = None


_Node = _Text | _Tabstop | _Variable
_VAR_START = re.compile(r"[_A-Za-z]")
_VAR_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_INT = re.compile(r"[0-9]+")


class _SnippetParser:
    """Recursive descent over the grammar in the LSP specification ("Snippet syntax")."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0

    def where(self, pos: int | None = None) -> str:
        at = self.pos if pos is None else pos
        line = self.src.count("\n", 0, at) + 1
        column = at - (self.src.rfind("\n", 0, at) + 1) + 1
        return f"line {line} column {column}"

    def parse(self) -> tuple[_Node, ...]:
        nodes = self.parse_any(inside=False)
        return nodes

    def parse_any(self, inside: bool) -> tuple[_Node, ...]:
        nodes: list[_Node] = []
        text: list[str] = []
        src = self.src
        while self.pos < len(src):
            ch = src[self.pos]
            if ch == "\\" and self.pos + 1 < len(src) and src[self.pos + 1] in "$}\\":
                text.append(src[self.pos + 1])
                self.pos += 2
            elif ch == "}" and inside:
                break
            elif ch == "$":
                node = self.parse_dollar()
                if node is None:
                    text.append("$")
                    self.pos += 1
                else:
                    if text:
                        nodes.append(_Text("".join(text)))
                        text = []
                    nodes.append(node)
            else:
                text.append(ch)
                self.pos += 1
        if text:
            nodes.append(_Text("".join(text)))
        return tuple(nodes)

    def parse_dollar(self) -> _Node | None:
        src, start = self.src, self.pos
        nxt = src[start + 1 : start + 2]
        if nxt.isdigit():
            m = _INT.match(src, start + 1)
            assert m is not None
            self.pos = m.end()
            return _Tabstop(int(m.group()))
        if nxt and _VAR_START.match(nxt):
            m = _VAR_NAME.match(src, start + 1)
            assert m is not None
            self.pos = m.end()
            return _Variable(m.group())
        if nxt != "{":
            return None  # a lone '$' is plain text
        self.pos = start + 2
        m = _INT.match(src, self.pos)
        if m:
            number = int(m.group())
            self.pos = m.end()
            return self.finish_tabstop(number, start)
        m = _VAR_NAME.match(src, self.pos)
        if m:
            self.pos = m.end()
            return self.finish_variable(m.group(), start)
        raise SnippetError(
            f"'${{' at {self.where(start)} must be followed by a tabstop number or a "
            "variable name (write '\\$' for a literal dollar sign)"
        )

    def expect_close(self, opened: int) -> None:
        if self.pos >= len(self.src) or self.src[self.pos] != "}":
            raise SnippetError(f"'${{' at {self.where(opened)} is never closed with '}}'")
        self.pos += 1

    def finish_tabstop(self, number: int, opened: int) -> _Tabstop:
        ch = self.src[self.pos : self.pos + 1]
        if ch == "}":
            self.pos += 1
            return _Tabstop(number)
        if ch == ":":
            self.pos += 1
            children = self.parse_any(inside=True)
            self.expect_close(opened)
            return _Tabstop(number, children)
        if ch == "|":
            self.pos += 1
            choices = self.parse_choices(opened)
            return _Tabstop(number, (_Text(choices[0]),), choices)
        raise SnippetError(
            f"tabstop '${{{number}' at {self.where(opened)} must continue with '}}', ':' or '|'"
        )

    def parse_choices(self, opened: int) -> tuple[str, ...]:
        src = self.src
        choices: list[str] = []
        current: list[str] = []
        while self.pos < len(src):
            ch = src[self.pos]
            if ch == "\\" and self.pos + 1 < len(src) and src[self.pos + 1] in ",|\\$}":
                current.append(src[self.pos + 1])
                self.pos += 2
            elif ch == ",":
                choices.append("".join(current))
                current = []
                self.pos += 1
            elif ch == "|":
                choices.append("".join(current))
                self.pos += 1
                if src[self.pos : self.pos + 1] != "}":
                    raise SnippetError(f"choice at {self.where(opened)} must end with '|}}'")
                self.pos += 1
                return tuple(choices)
            else:
                current.append(ch)
                self.pos += 1
        raise SnippetError(f"choice at {self.where(opened)} is never closed with '|}}'")

    def finish_variable(self, name: str, opened: int) -> _Variable:
        ch = self.src[self.pos : self.pos + 1]
        if ch == "}":
            self.pos += 1
            return _Variable(name)
        if ch == ":":
            self.pos += 1
            children = self.parse_any(inside=True)
            self.expect_close(opened)
            return _Variable(name, children)
        if ch == "/":
            # A transform (regex/format/options): editors apply it; as plain text
            # we only need to skip it correctly.
            self.pos += 1
            for _part in range(2):
                self.skip_until_unescaped("/", opened)
            self.skip_until_unescaped("}", opened)
            return _Variable(name)
        raise SnippetError(
            f"variable '${{{name}' at {self.where(opened)} must continue with '}}', ':' or '/'"
        )

    def skip_until_unescaped(self, stop: str, opened: int) -> None:
        src = self.src
        while self.pos < len(src):
            ch = src[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if ch == stop:
                return
        raise SnippetError(f"transform at {self.where(opened)} is never closed")


def _parse_snippet(body: str) -> tuple[_Node, ...]:
    return _SnippetParser(body).parse()


def validate_snippet(body: str) -> list[int]:
    """Check ``body`` against the LSP snippet grammar; return its tabstop numbers in order.

    Raises :class:`SnippetError` with the line and column of the first problem.
    """
    numbers: list[int] = []

    def walk(nodes: Sequence[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Tabstop):
                numbers.append(node.number)
                walk(node.children)
            elif isinstance(node, _Variable) and node.children:
                walk(node.children)

    walk(_parse_snippet(body))
    return numbers


def snippet_to_text(body: str, variables: Mapping[str, str] | None = None) -> str:
    """Turn an LSP snippet into the plain text an editor would insert with no edits.

    Placeholders become their default text (a mirrored ``$1`` repeats the text of
    ``${1:...}``), choices their first option, empty tabstops nothing. Variables take
    ``variables[name]``, then their own default, then their name, so the result
    still reads sensibly (``$TM_FILENAME_BASE`` stays a visible hint).
    An invalid snippet raises :class:`SnippetError`.
    """
    nodes = _parse_snippet(body)
    values = dict(variables or {})
    defaults: dict[int, tuple[_Node, ...]] = {}

    def collect(items: Sequence[_Node]) -> None:
        for node in items:
            if isinstance(node, _Tabstop):
                if node.children and node.number not in defaults:
                    defaults[node.number] = node.children
                collect(node.children)
            elif isinstance(node, _Variable) and node.children:
                collect(node.children)

    collect(nodes)

    def render(items: Sequence[_Node], depth: int) -> str:
        out: list[str] = []
        for node in items:
            if isinstance(node, _Text):
                out.append(node.value)
            elif isinstance(node, _Tabstop):
                children = node.children or defaults.get(node.number, ())
                # A placeholder that mirrors itself would recurse forever.
                if depth < 8:
                    out.append(render(children, depth + 1))
            elif node.name in values:
                out.append(values[node.name])
            elif node.children is not None:
                out.append(render(node.children, depth + 1))
            else:
                out.append(node.name)
        return "".join(out)

    return render(nodes, 0)
