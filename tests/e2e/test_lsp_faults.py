"""The language server with a damaged or unusable KENNING_HOME: it says so
clearly, repairs what it can, and goes on serving searches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.e2e.conftest import (
    VSCODE,
    eventually,
    start_session,
    stop_session,
    uri,
    write_files,
)

# What is under test is the home, not the client: one client's capabilities suffice.
pytestmark = pytest.mark.parametrize("caps", [VSCODE])

FILES = {
    "lib/tokens.py": '''
        def split_into_words(sentence):
            """Split a sentence into word tokens."""
            return sentence.split()
        ''',
    "lib/mail.py": """
        def send_welcome_email(user, smtp):
            smtp.send(user.email, "Welcome aboard")
        """,
}
QUERY = "split sentence into word tokens"


async def test_an_unusable_home_is_shown_and_the_server_still_serves(tmp_path, caps):
    root = write_files(tmp_path / "ws", FILES)
    home = tmp_path / "home"
    home.write_text("a file where a folder should be")
    s = await start_session([root], home, caps)
    try:
        await s.idle()
        out = await s.search(QUERY)
        assert out["results"][0]["uri"] == uri(root / "lib/tokens.py")
        shown = [m.message for m in s.client.messages if "KENNING_HOME" in m.message]
        assert len(shown) == 1 and "is a file, not a folder" in shown[0], shown
        temp = Path(re.search(r"indexes in (\S+), removed", shown[0]).group(1))
        assert temp.is_dir() and list(temp.glob("indexes/*/index.db"))
    finally:
        await stop_session(s)
    assert home.read_text() == "a file where a folder should be"
    await eventually(_gone(temp))


def _gone(path: Path):
    async def check() -> bool:
        return not path.exists()

    return check


async def test_a_damaged_embedding_cache_is_repaired_and_embedding_finishes(
    tmp_path, kenning_home, caps
):
    first = write_files(tmp_path / "first", FILES)
    s = await start_session([first], kenning_home, caps)
    await s.idle()
    await stop_session(s)
    cache = kenning_home / "cache" / "embeddings.db"
    cache.write_bytes(bytes(cache.stat().st_size))  # zeroed

    # A clone: every chunk must come from the cache or be embedded again.
    clone = write_files(tmp_path / "clone", FILES)
    s = await start_session([clone], kenning_home, caps)
    try:
        status = await s.idle()
        assert status["pending"] == 0 and status["embedded"] == status["chunks"] > 0
        out = await s.search(QUERY, mode="vector")
        assert out["results"][0]["uri"] == uri(clone / "lib/tokens.py")
        logged = [m.message for m in s.client.log_messages if " is damaged " in m.message]
        assert len(logged) == 1 and "the embedding cache is damaged" in logged[0], logged
        assert list(cache.parent.glob("embeddings.db.corrupt-*"))
    finally:
        await stop_session(s)


async def test_a_folder_in_place_of_the_log_file_is_moved_aside(tmp_path, kenning_home, caps):
    root = write_files(tmp_path / "ws", FILES)
    log = kenning_home / "logs" / "lsp.log"
    (log / "inside").mkdir(parents=True)
    s = await start_session([root], kenning_home, caps)
    try:
        await s.idle()
        assert (await s.search(QUERY))["results"]
        assert log.is_file() and "language server" in log.read_text()
        assert list(log.parent.glob("lsp.log.corrupt-*"))
    finally:
        await stop_session(s)
