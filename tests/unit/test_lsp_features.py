"""The engine-facing halves of the template and duplicate features, without an editor."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as lsp
from tests.conftest import FakeEmbedder, write_tree
from tests.e2e.test_lsp_duplicates import FETCH, FETCH_COPY, UNRELATED

from kenning.engine.duplicates import FolderHints, candidate_floor, hint_at
from kenning.engine.workspace import Index, IndexChange
from kenning.lsp.features.templates import insertion

BODY = "def ${1:name}():\n    return ${2:1}\n$0"


def test_blank_line_is_replaced_and_every_line_indented() -> None:
    rng, text = insertion("    ", lsp.Position(line=7, character=2), BODY, False, 4)
    assert rng == lsp.Range(
        start=lsp.Position(line=7, character=0), end=lsp.Position(line=7, character=4)
    )
    assert text == "    def name():\n        return 1\n"


def test_request_comment_is_replaced_and_snippets_keep_placeholders() -> None:
    line = "  // kenning: a small function"
    rng, text = insertion(line, lsp.Position(line=0, character=5), BODY, True, len(line))
    assert (rng.start.character, rng.end.character) == (0, len(line))
    assert text == "  def ${1:name}():\n      return ${2:1}\n  $0"


def test_code_line_gets_the_text_at_the_position() -> None:
    rng, text = insertion("\tx = 1", lsp.Position(line=3, character=99), BODY, False, 6)
    assert rng.start == rng.end == lsp.Position(line=3, character=6)  # clamped to the line
    assert text == "def name():\n\t    return 1\n"


@pytest.fixture
def index(tmp_path: Path) -> Index:
    root = write_tree(
        tmp_path / "ws",
        {"a/profile.py": FETCH, "b/billing.py": FETCH_COPY, "c/stats.py": UNRELATED},
    )
    ix = Index(root, embedder=FakeEmbedder(), home=tmp_path / "home")
    ix.refresh()
    return ix


def test_floor_allows_for_the_cosine_share() -> None:
    assert candidate_floor(0.85) == pytest.approx(0.8)
    assert candidate_floor(0.2) == 0.0


def test_hints_follow_the_index_through_its_listener(index: Index) -> None:
    state = FolderHints(index, 0.85)
    changes: list[IndexChange] = []
    index.add_listener(changes.append)
    index.add_listener(lambda change: state.update(change.paths))
    assert state.hints("a/profile.py") == []  # not built yet: nothing, not an error
    assert state.build()
    (hint,) = state.hints("a/profile.py")
    assert hint.chunk.symbol == "fetch_profile"
    ((other, sim),) = hint.others
    assert other.path == "b/billing.py" and other.symbol == "load_account" and sim >= 0.85
    assert hint_at([hint], hint.chunk.start_line + 1) is hint
    assert hint_at([hint], 1) is None
    assert state.hints("c/stats.py") == []

    # An unsaved edit that breaks the copy's structure: its keys are replaced.
    index.set_buffer("b/billing.py", "def load_account(client):\n    return client.get('x')\n")
    assert changes[-1] == IndexChange(frozenset({"b/billing.py"}))
    assert state.hints("a/profile.py") == []
    # Closing the buffer brings the copy back from disk.
    index.drop_buffer("b/billing.py")
    assert [h.others[0][0].path for h in state.hints("a/profile.py")] == ["b/billing.py"]

    # Deleted on disk.
    (index.root / "b/billing.py").unlink()
    index.refresh_paths(["b/billing.py"])
    assert changes[-1].paths == frozenset({"b/billing.py"})
    assert state.hints("a/profile.py") == []
    assert len(state) == 2  # the two signed chunks left (imports are too small to sign)
