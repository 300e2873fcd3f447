"""``kenning/status``: the server tells the client its state when it changes, and
an idle server does nothing at all (no polling loop anywhere)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.index_checks import make_corpus

from .conftest import Session, idle_status, start_session, stop_session

FILES = 30


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); here after the name, 12 and 13.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_status_is_pushed_as_indexing_goes_and_matches_the_command(
    tmp_path: Path, kenning_home: Path, caps: str
) -> None:
    make_corpus(tmp_path / "ws", FILES)
    # Embedding slowed to a couple of seconds: long enough for a status in between.
    slow = {"KENNING_FAKE_DELAY": "0.005"}
    s: Session = await start_session([tmp_path / "ws"], kenning_home, caps, env=slow)
    try:
        done = await s.status_where(lambda st: idle_status(st) and st["chunks"] > 0)
        # Busy states were said on the way there: the client saw indexing start.
        assert any(st["metrics"]["indexing"] for st in s.statuses[: s.statuses.index(done)])
        answer = await s.command("kenning.status")
        for key in ("files", "chunks", "embedded", "pending", "model", "device", "precision"):
            assert done[key] == answer[key], key
        assert done["files"] == FILES

        # An edit is said too: the buffer is indexed, then the server is idle again.
        seen = len(s.statuses)
        s.open(tmp_path / "ws" / "pkg1" / "mod1.py")
        st = await s.status_where(
            lambda st: idle_status(st) and st["folders"][0]["buffers"] == 1, after=seen
        )
        assert st["files"] == FILES
    finally:
        await stop_session(s)


async def test_an_idle_server_uses_no_cpu(tmp_path: Path, kenning_home: Path, caps: str) -> None:
    make_corpus(tmp_path / "ws", FILES)
    s: Session = await start_session([tmp_path / "ws"], kenning_home, caps)
    try:
        await s.status_where(lambda st: idle_status(st) and st["chunks"] > 0)
        # The last notification of the first index may still be on its way out.
        await asyncio.sleep(0.5)
        pid = s.client._server.pid  # type: ignore[attr-defined, union-attr]
        before = cpu_seconds(pid)
        await asyncio.sleep(5)
        used = cpu_seconds(pid) - before
        assert used < 0.05, f"an idle server used {used * 1000:.0f} ms of CPU in 5 s"
    finally:
        await stop_session(s)
