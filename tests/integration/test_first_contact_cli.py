"""First contact through the CLI, with the real model: a fresh workspace, an
empty KENNING_HOME, a search at once, and searches while the first index
embeds, until it is complete. Every answer is a result list (words first,
then meaning), exit 0, and nothing on stderr but the notes of a quiet run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import (
    FIRST_CONTACT_QUERY,
    FIRST_CONTACT_TARGET,
    first_contact_corpus,
    write_tree,
)

pytestmark = pytest.mark.model


def _env(home: Path) -> dict[str, str]:
    # One core: a first index that takes seconds on any machine.
    return dict(os.environ, KENNING_HOME=str(home), HF_HUB_OFFLINE="1", KENNING_THREADS="1")


def _search(ws: Path, home: Path, *args: str) -> dict[str, Any]:
    command = ["search", FIRST_CONTACT_QUERY, "--json", "-q", "--path", str(ws), *args]
    out = subprocess.run(
        [sys.executable, "-m", "kenning", *command],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and out.stderr == "", out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    assert isinstance(data["results"], list)
    return data


def test_search_at_once_then_while_the_first_index_embeds(
    tmp_path: Path, derived_models: Path
) -> None:
    ws = write_tree(tmp_path / "ws", first_contact_corpus(files=40, per_file=4))
    # No index, no cache, nothing but the int8 model the run derived once
    # (deriving it again here would only cost time: other tests check that).
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "derived").symlink_to(derived_models, target_is_directory=True)

    # At once, with no time to embed: the words answer.
    first = _search(ws, home, "--max-wait", "0")
    assert first["complete"] == 0.0
    assert first["results"][0]["path"] == FIRST_CONTACT_TARGET

    # The first index embeds in the background; searches go on meanwhile.
    indexing = subprocess.Popen(
        [sys.executable, "-m", "kenning", "index", "-q", "--path", str(ws)],
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    answers = []
    try:
        deadline = time.monotonic() + 280
        while True:
            done = indexing.poll() is not None
            answers.append(_search(ws, home, "--no-refresh"))
            if done:
                break
            assert time.monotonic() < deadline, "the first index never finished"
    finally:
        if indexing.poll() is None:
            indexing.kill()
        _, err = indexing.communicate(timeout=60)
    assert indexing.returncode == 0, err
    assert err == ""
    for answer in answers:
        assert answer["results"][0]["path"] == FIRST_CONTACT_TARGET, answer
    # Words while it embedded, then meaning with every vector in.
    assert any(a["complete"] < 1.0 for a in answers), [a["complete"] for a in answers]
    assert answers[-1]["complete"] == 1.0
    top = answers[-1]["results"][0]
    assert top["explain"]["similarity"] is not None and top["explain"]["vector_rank"] == 1
