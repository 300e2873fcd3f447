"""A small real-code retrieval set, built at test time from Python's standard library.

The recipe is the dev benchmark's, on other code: each query is the first sentence
of a function's docstring, and that docstring is deleted from a copy of the module,
so the words of the query do not sit next to the code they describe. The standard
library is real, reviewed code that every test machine already has; nothing is
vendored. The modules are the running Python's own, so the set moves a little
between Python versions: tests hold it to floors, not to exact numbers.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# Modules on many subjects, with docstrings on most functions.
MODULES = (
    "textwrap",
    "shlex",
    "heapq",
    "calendar",
    "statistics",
    "fractions",
    "queue",
    "sched",
    "graphlib",
    "tempfile",
    "csv",
    "pprint",
)
MIN_WORDS = 5
MAX_WORDS = 45
_SKIP = re.compile(r"^(deprecated|alias|see |same as|like |internal|helper|private)", re.I)
_CODE = re.compile(r">>>|->|::|[{}$`]|https?:|\w\(")
PER_MODULE = 8
"""At most this many queries per module, spread over it, so no module dominates."""


@dataclass(frozen=True)
class Target:
    query: str
    path: str  # relative to the corpus root
    line: int  # the `def` line, 1-based, after the edit
    symbol: str  # Class.method or function


def first_sentence(doc: str) -> str | None:
    """The docstring's first sentence, on one line, or None when it is no query."""
    para = doc.strip().split("\n\n", 1)[0]
    text = " ".join(para.split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = m.group(1) if m else text
    words = re.findall(r"[A-Za-z]{2,}", sentence)
    if not MIN_WORDS <= len(words) <= MAX_WORDS or _SKIP.match(sentence) or _CODE.search(sentence):
        return None
    return sentence


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out.append((f"{node.name}.{item.name}", item))
    return out


def build(root: Path) -> list[Target]:
    """Write the edited modules under ``root`` and return the targets, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates: list[tuple[str, str, int, int, int, str]] = []
    texts: dict[str, list[str]] = {}
    for name in MODULES:
        source = stdlib / f"{name}.py"
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8")
        lines = text.split("\n")
        texts[name] = lines
        for symbol, fn in _functions(ast.parse(text)):
            doc = ast.get_docstring(fn, clean=False)
            if doc is None or len(fn.body) < 2:
                continue  # no docstring, or nothing left once it is gone
            node = fn.body[0]
            start, end = node.lineno, node.end_lineno or node.lineno
            if start <= fn.lineno or lines[start - 1].strip()[:1] not in "\"'rRuU":
                continue  # a docstring on the `def` line cannot be cut out whole
            sentence = first_sentence(doc)
            if sentence is not None:
                candidates.append((sentence, name, fn.lineno, start, end, symbol))
    # A query must name one function, and its words must not remain elsewhere.
    counts: dict[str, int] = {}
    for c in candidates:
        counts[c[0]] = counts.get(c[0], 0) + 1
    kept = [c for c in candidates if counts[c[0]] == 1]
    targets: list[Target] = []
    for name, lines in texts.items():
        mine = sorted((c for c in kept if c[1] == name), key=lambda c: c[3])
        cut: set[int] = set()
        for _, _, _, start, end, _ in mine:
            cut.update(range(start, end + 1))
        out_lines = [line for i, line in enumerate(lines, 1) if i not in cut]
        edited = "\n".join(out_lines)
        for sentence, _, def_line, *_rest, symbol in mine:
            shift = sum(1 for i in cut if i < def_line)
            targets.append(Target(sentence, f"{name}.py", def_line - shift, symbol))
        (root / f"{name}.py").write_text(edited, encoding="utf-8")
    corpus = "\n".join("\n".join(v) for v in texts.values())
    targets = [t for t in targets if corpus.count(t.query) <= 1]
    out: list[Target] = []
    for name in texts:
        mine = [t for t in targets if t.path == f"{name}.py"]
        step = max(1.0, len(mine) / PER_MODULE)
        out += [mine[int(i * step)] for i in range(min(PER_MODULE, len(mine)))]
    return out
