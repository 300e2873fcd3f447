"""Properties over random input: file contents that never break the prepare stage,
and sequences of edits that never leave the index inconsistent.

About invariants only (no crash, the chunks' coverage as chunking.py documents
it, index consistency), never about where chunks fall: chunk boundaries are
tuned for search quality and may change. KENNING_PROPERTY_SLOW=1 runs many
more examples of each (minutes instead of seconds).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import FakeEmbedder
from tests.index_checks import problems, snapshot

from kenning.engine.chunking import digest_text
from kenning.engine.languages import _EXTENSIONS, _FILENAMES
from kenning.engine.prepare import Prepared, prepare_file, prepare_text
from kenning.engine.scan import decode_text
from kenning.engine.text import fts_symbol, fts_text
from kenning.engine.types import Chunk
from kenning.engine.workspace import Index, index_path

SLOW = os.environ.get("KENNING_PROPERTY_SLOW") == "1"

# One file name per language the chunker knows (the first extension or name
# that maps to it), plus names that fall back to line windows.
NAMES = (
    sorted({lang: f"file{ext}" for ext, lang in reversed(list(_EXTENSIONS.items()))}.values())
    + sorted({lang: name for name, lang in _FILENAMES.items()}.values())
    + [
        "notes",
        "file.unknownext",
        "pkg/.hidden.py",
    ]
)

# Pieces of many languages' syntax, so random text reaches into the parsers'
# definitions, nesting, comments and strings, not only their error paths.
TOKENS = [
    "def ", "class ", "fn ", "func ", "function ", "impl ", "struct ", "interface ",
    "module ", "defmodule ", "namespace ", "trait ", "enum ", "type ", "let ", "var ",
    "const ", "pub ", "export default ", "async ", "do", "end", "then", "fi", "begin",
    "{", "}", "(", ")", "[", "]", "<", ">", ":", ";", ",", ".", "=", "=>", "->", "::",
    "\n", "\n", "\n", "\n\n", "\r\n", "\r", "    ", "\t", "#", "# ", "## ", "//", "/*",
    "*/", "--", "%", '"', "'", '"""', "`", "```", "@", "$", "\\", "<?php", "#include ",
    "return ", "if ", "else ", "for ", "x", "foo", "Bar", "baz_qux", "_", "0", "42",
    "é", "日本", "\u2028", "\x0c", "\x00", "\ufeff", " ",
]  # fmt: skip
code = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=4)), max_size=120).map("".join)
contents = st.one_of(
    code.map(str.encode),
    st.text(max_size=300).map(str.encode),
    st.binary(max_size=600),
)


def lines_of(text: str) -> list[str]:
    """As chunking.py documents: \\n, \\r\\n and a lone \\r each end a line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def check_chunks(text: str, chunks: list[Chunk]) -> None:
    lines = lines_of(text)
    n = len(lines)
    starts = [c.start_line for c in chunks]
    assert starts == sorted(starts), "chunks out of order"
    covered: set[int] = set()
    for c in chunks:
        start, end, symbol, body, digest = c.start_line, c.end_line, c.symbol, c.text, c.digest
        unit_start, unit_end = c.unit_start, c.unit_end
        assert c.lexical is not None, "the prepare stage fills the lexical columns"
        fts_sym, fts_body, fts_nm = c.lexical
        assert 1 <= start <= end <= n, (start, end, n)
        # A piece of a split definition points at the whole definition.
        if unit_start is not None:
            assert unit_start <= start <= end <= unit_end <= n, (start, end, unit_end)
        own = "\n".join(lines[start - 1 : end])
        # The later parts of a split definition carry its signature in front.
        assert body == own or body.endswith("\n" + own), (start, end)
        assert body.strip(), "a blank chunk"
        assert digest == digest_text(body)
        # The FTS symbol column names the chunk's own definition first, then any
        # other definitions merged into it.
        assert fts_sym.startswith(fts_symbol(symbol)) if symbol else True
        assert bool(fts_nm) == bool(fts_sym)
        assert fts_body == fts_text(body)
        covered.update(range(start, end + 1))
    blank = {i + 1 for i, line in enumerate(lines) if not line or line.isspace()}
    missing = set(range(1, n + 1)) - blank - covered
    assert not missing, f"non-blank lines in no chunk: {sorted(missing)[:10]}"


PREPARE = settings(
    deadline=None,
    max_examples=400 if SLOW else 12,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", NAMES)
@PREPARE
@given(data=contents)
def test_prepare_never_fails_and_chunks_cover_the_lines(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f"
        path.write_bytes(data)
        prep = prepare_file(name, str(path), len(data), 1, None)
    # "error" is a chunker exception caught at the last moment: a bug.
    assert prep.action in ("write", "skip"), prep.reason
    if prep.action == "skip":
        assert prep.reason in ("binary", "generated", "minified")
        return
    # Bad bytes are read as U+FFFD: the text the chunks must cover is that.
    check_chunks(decode_text(data), prep.chunks)


@pytest.mark.parametrize("name", NAMES)
@PREPARE
@given(text=st.one_of(code, st.text(max_size=300)))
def test_prepare_text_of_any_buffer(name: str, text: str) -> None:
    # An editor buffer: any text at all, NUL and lone line separators included.
    prep = prepare_text(name, text, len(text), -1, "digest")
    assert prep.action == "write", prep.reason
    check_chunks(text, prep.chunks)


@PREPARE
@given(name=st.sampled_from(NAMES), text=st.one_of(code, st.text(max_size=300)))
def test_a_prepared_file_crosses_the_worker_boundary_as_plain_data(name: str, text: str) -> None:
    # A worker process sends its answer as a tuple: only builtins are pickled
    # (no class of kenning's to look up on the other side), and the record that
    # comes back is the one the worker made, every chunk field included.
    prep = prepare_text(name, text, len(text), -1, "digest")
    data = pickle.dumps(prep.to_tuple())
    assert b"kenning" not in data
    assert Prepared.from_tuple(pickle.loads(data)) == prep


def test_a_shell_script_that_crashes_the_bash_grammar_is_cut_into_windows() -> None:
    # Found by the property above: `''{` and a character outside the BMP made
    # tree-sitter-bash read out of bounds, killing the process about one parse in
    # 150 (tree-sitter/tree-sitter-bash#337). A process of its own, parsing it
    # a thousand times: a crash must not take the test run down with it.
    script = (
        "from kenning.engine.chunking import chunk_text\n"
        "for _ in range(1000):\n"
        "    chunks = chunk_text('run.sh', \"''{\\U000df29d\\necho {a,b} \\U0001f600\\n\")\n"
        "assert [c.kind for c in chunks] == ['window'], chunks\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]


# -- edit sequences ----------------------------------------------------------------

PATHS = ["a.py", "b.py", "sub/c.py", "sub/d.js", "e.md", "f.txt"]
FUNCS = [
    "def parse_config(path):\n    return open(path).read()\n",
    "def send_request(url, retries=3):\n    for _ in range(retries):\n        pass\n",
    "class Cache:\n    def get(self, key):\n        return self.data[key]\n",
    "function renderPage(req, res) {\n  return res.send(req.body);\n}\n",
    "# Title\n\nSome words about a cache.\n\n## Part\n\nMore words.\n",
]
source = st.lists(st.sampled_from(FUNCS), min_size=0, max_size=4).map("\n\n".join)
file_bytes = st.one_of(source.map(str.encode), source.map(str.encode), contents)
buffer_text = st.one_of(source, source, code)

op = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(PATHS), file_bytes),
    st.tuples(st.just("delete"), st.sampled_from(PATHS)),
    st.tuples(st.just("rename"), st.sampled_from(PATHS), st.sampled_from(PATHS)),
    st.tuples(st.just("buffer"), st.sampled_from(PATHS), buffer_text),
    st.tuples(st.just("drop"), st.sampled_from(PATHS)),
    st.tuples(st.just("refresh"), st.booleans()),
    st.tuples(st.just("refresh_paths"), st.lists(st.sampled_from(PATHS), max_size=3)),
    st.tuples(st.just("embed")),
)


def apply(index: Index, root: Path, step: tuple, buffers: dict[str, str]) -> None:
    kind = step[0]
    if kind == "write":
        path = root / step[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(step[2])
    elif kind == "delete":
        (root / step[1]).unlink(missing_ok=True)
    elif kind == "rename":
        src, dst = root / step[1], root / step[2]
        if src.exists() and src != dst:
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
    elif kind == "buffer":
        if index.set_buffer(step[1], step[2]):
            buffers[step[1]] = step[2]
        else:
            buffers.pop(step[1], None)
    elif kind == "drop":
        index.drop_buffer(step[1])
        buffers.pop(step[1], None)
    elif kind == "refresh":
        index.refresh(embed=step[1])
    elif kind == "refresh_paths":
        index.refresh_paths(step[1])
    else:
        index.embed_pending()


@settings(
    deadline=None,
    max_examples=300 if SLOW else 25,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=st.lists(op, max_size=12))
def test_edit_sequences_keep_the_index_consistent_and_end_as_a_fresh_index(
    steps: list[tuple],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home, root, fresh = Path(tmp) / "home", Path(tmp) / "ws", Path(tmp) / "fresh"
        root.mkdir()
        index = Index(root, embedder=FakeEmbedder(), home=home)
        db = index_path(index.root, home)
        buffers: dict[str, str] = {}
        try:
            for step in steps:
                apply(index, root, step, buffers)
                assert problems(db) == [], step
            index.refresh()
            assert problems(db) == []
        finally:
            index.close()
        got = snapshot(db)

        # The final files: what is on disk, with the open buffers in place of it.
        shutil.copytree(root, fresh)
        for rel, text in buffers.items():
            (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
            (fresh / rel).write_bytes(text.encode("utf-8"))
        clean = Index(fresh, embedder=FakeEmbedder(), home=home)
        clean.refresh()
        clean.close()
        want = snapshot(index_path(clean.root, home))
        assert got == want
