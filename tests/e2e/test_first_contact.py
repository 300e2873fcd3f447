"""First contact through the language server: a fresh workspace, an empty
KENNING_HOME, and searches from the first moment on, while the first index
embeds, until it is complete.

Every answer (``kenning.search``, ``kenning.similar``, ``workspace/symbol``) is
a result list, never an error: words first, then meaning. A tester found the
first search of a session breaking every later one once vectors arrived; the
earlier tests all searched after the first index had finished embedding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from tests.conftest import (
    FIRST_CONTACT_QUERY,
    FIRST_CONTACT_TARGET,
    first_contact_corpus,
    write_tree,
)
from tests.e2e.conftest import REAL_SERVER, VSCODE, Session, start_session, stop_session, uri


async def _search_through_first_index(s: Session, timeout: float) -> list[dict[str, Any]]:
    """Search (and ask for similar code and symbols) until the index is complete."""
    target = s.root / FIRST_CONTACT_TARGET
    target_uri = s.open(target)
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        out = await s.search(FIRST_CONTACT_QUERY)
        assert isinstance(out["results"], list), out
        answers.append(out)
        similar = await s.command(
            "kenning.similar", {"uri": target_uri, "position": {"line": 1, "character": 4}}
        )
        assert isinstance(similar["results"], list), similar
        symbols = await s.client.workspace_symbol_async(
            lsp.WorkspaceSymbolParams(query=FIRST_CONTACT_QUERY)
        )
        assert isinstance(symbols, list)
        status = await s.command("kenning.status")
        m = status["metrics"]
        if (
            out.get("complete") == 1.0
            and status["pending"] == 0
            and m["indexing"] is None
            and not m["queued"]
        ):
            return answers
        assert time.monotonic() < deadline, f"the first index never completed: {status}"


def _check_words_then_meaning(answers: list[dict[str, Any]], root: Path) -> None:
    found = [a for a in answers if a["results"]]
    assert found, "no search ever found anything"
    # Words first: found while the first index was still embedding...
    assert any(a["complete"] < 1.0 for a in found), [a.get("complete") for a in answers]
    # ...then meaning, with every vector in.
    last = answers[-1]
    assert last["complete"] == 1.0 and "notes" not in last
    assert last["results"][0]["uri"] == uri(root / FIRST_CONTACT_TARGET)
    for a in found:
        assert a["results"][0]["uri"] == uri(root / FIRST_CONTACT_TARGET), a


async def test_searches_from_the_first_moment_while_a_slow_first_index_embeds(
    tmp_path: Path, kenning_home: Path, caps: str
) -> None:
    # The real model's width (384: six words of sign bits, where the first bug
    # hid from a 64-wide fake) and a known pace: about 3 s to embed 61 chunks,
    # in batches of 64, so searches run before the first vector and after.
    root = write_tree(tmp_path / "ws", first_contact_corpus(files=20, per_file=3))
    s = await start_session(
        [root],
        kenning_home,
        caps,
        env={"KENNING_FAKE_DIMS": "384", "KENNING_FAKE_DELAY": "0.05"},
    )
    try:
        answers = await _search_through_first_index(s, timeout=120)
        _check_words_then_meaning(answers, root)
        # And it stays healthy: the same searches after the index is complete.
        again = await s.search(FIRST_CONTACT_QUERY)
        assert again["results"][0]["uri"] == uri(root / FIRST_CONTACT_TARGET)
    finally:
        await stop_session(s)


@pytest.mark.model
@pytest.mark.parametrize("caps", [VSCODE])  # the door is the same; the model is the cost
async def test_searches_while_the_real_model_embeds_a_first_index(
    tmp_path: Path, kenning_home: Path, caps: str
) -> None:
    # 200 chunks on one core take the real model seconds even on a fast machine.
    root = write_tree(tmp_path / "ws", first_contact_corpus(files=50, per_file=4))
    s = await start_session(
        [root], kenning_home, caps, env={"KENNING_THREADS": "1"}, command=REAL_SERVER
    )
    try:
        answers = await _search_through_first_index(s, timeout=280)
        _check_words_then_meaning(answers, root)
        status = await s.command("kenning.status")
        assert status["model"] == "all-minilm-l6-v2-int8" and status["precision"] == "int8"
    finally:
        await stop_session(s)
