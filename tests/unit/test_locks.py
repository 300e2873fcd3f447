"""The run lock and buffer owners: exclusive across processes, gone with a killed one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kenning.engine.locks import BufferOwners, RunLock, busy_note

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kenning.engine.locks import RunLock, BufferOwners
    lock = RunLock(Path(sys.argv[1]), "kenning index")
    assert lock.acquire()
    mark = BufferOwners(Path(sys.argv[2])).mark
    print(mark, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "indexing.lock"), str(tmp_path / "locks")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    mark = int(proc.stdout.readline())
    yield proc, mark
    proc.kill()
    proc.wait()


def test_one_holder_at_a_time_and_others_see_who(tmp_path: Path) -> None:
    a = RunLock(tmp_path / "indexing.lock", "language server")
    b = RunLock(tmp_path / "indexing.lock", "kenning search")
    assert a.holder() is None and b.holder() is None
    assert a.acquire()
    started = time.monotonic()
    assert not b.acquire(wait_s=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    who = b.holder()
    assert who is not None
    assert who["pid"] == os.getpid() and who["command"] == "language server"
    assert who["since"] <= time.time()
    assert busy_note(who).startswith(f"another process (pid {os.getpid()}, language server)")
    # The holder does not report itself.
    assert a.holder() is None
    a.release()
    assert b.holder() is None
    assert b.acquire()
    b.close()
    a.close()


def test_reentrant_within_one_lock(tmp_path: Path) -> None:
    a = RunLock(tmp_path / "indexing.lock")
    b = RunLock(tmp_path / "indexing.lock")
    assert a.acquire() and a.acquire()
    a.release()
    assert not b.acquire()
    a.release()
    assert b.acquire()
    b.close()
    a.close()


def test_a_waiting_acquire_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    import threading

    a = RunLock(tmp_path / "indexing.lock")
    b = RunLock(tmp_path / "indexing.lock")
    assert a.acquire()
    threading.Timer(0.3, a.release).start()
    started = time.monotonic()
    assert b.acquire(wait_s=10)
    assert time.monotonic() - started < 5
    b.close()
    a.close()


def test_closing_releases(tmp_path: Path) -> None:
    a = RunLock(tmp_path / "indexing.lock")
    assert a.acquire()
    a.close()
    b = RunLock(tmp_path / "indexing.lock")
    assert b.acquire()
    b.close()


def test_the_locks_die_with_a_killed_process(tmp_path: Path, holder) -> None:  # type: ignore[no-untyped-def]
    proc, mark = holder
    ours = RunLock(tmp_path / "indexing.lock")
    owners = BufferOwners(tmp_path / "locks")
    who = ours.holder()
    assert who is not None and who["pid"] == proc.pid and who["command"] == "kenning index"
    assert not ours.acquire()
    assert mark == -proc.pid and owners.alive(mark)

    proc.kill()
    proc.wait()
    assert ours.holder() is None
    assert ours.acquire()
    ours.close()
    # Liveness is remembered for a second (a refresh asks once per marked row).
    time.sleep(1.1)
    assert not owners.alive(mark)
    assert not (tmp_path / "locks" / f"{proc.pid}.lock").exists()


def test_a_mark_that_no_process_ever_took_is_dead(tmp_path: Path) -> None:
    owners = BufferOwners(tmp_path / "locks")
    # -1: what older versions wrote for every buffer.
    assert not owners.alive(-1)
    assert not owners.alive(-999_999_999)
    assert owners.mark == -os.getpid()
    assert owners.alive(owners.mark)
