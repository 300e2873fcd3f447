"""A killed `kenning index` leaves an index that opens, and the next run finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest
from tests import index_checks
from tests.index_checks import make_corpus

from kenning.engine import prepare
from kenning.engine.workspace import Index, index_path


def snapshot(root: Path) -> dict[str, list[tuple[object, ...]]]:
    return index_checks.snapshot(index_path(root.resolve()), vectors=False)


def inline_snapshot(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, list[tuple[object, ...]]]:
    """The index of ``work`` as an inline run builds it, in a home of its own; the
    caller's runs then get a fresh home."""
    monkeypatch.setenv("KENNING_HOME", str(tmp_path / "home-inline"))
    inline = Index(work, workers=1)
    inline.refresh(embed=False)
    inline.close()
    want = snapshot(work)
    monkeypatch.setenv("KENNING_HOME", str(tmp_path / "home-workers"))
    return want


def test_sigkill_midway_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    work = tmp_path / "ws"
    make_corpus(work, 1500)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kenning", "index", "--no-embed", "--json", "--path", str(work)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    db = index_path(work.resolve())
    deadline = time.time() + 60
    # Kill once some files are committed but (very likely) not all.
    while time.time() < deadline:
        if db.exists():
            try:
                conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
                n = conn.execute("SELECT count(*) FROM files").fetchone()[0]
                conn.close()
            except apsw.Error:
                n = 0
            if n >= 100:
                break
        time.sleep(0.01)
    children = subprocess.run(
        ["ps", "--ppid", str(proc.pid), "-o", "pid="], capture_output=True, text=True
    ).stdout.split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Its chunking workers notice and go: nothing is left running.
    for _ in range(50):
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"worker processes outlived the killed index run: {alive}"
    assert index_checks.problems(db) == []
    interrupted = Index(work)
    assert interrupted.store.counts()["files"] < 1500, "the run finished before the kill"
    report = interrupted.refresh(embed=False)
    assert report.files == 1500
    interrupted.close()

    clean = tmp_path / "clean" / "ws"
    make_corpus(clean, 1500)
    Index(clean).refresh(embed=False)
    got, want = snapshot(work), snapshot(clean)
    assert len(got["chunks"]) == len(want["chunks"])
    assert got == want


@pytest.mark.parametrize(
    ("workers", "offload"),
    [(2, False), (1, True)],  # the CLI's run; the language server's, one worker apart
)
def test_worker_processes_build_the_same_index_as_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, offload: bool
) -> None:
    work = tmp_path / "ws"
    make_corpus(work, 600)
    (work / "pkg0" / "bad.py").write_bytes(bytes(range(256)) * 4)  # skipped, in a worker too
    (work / "pkg0" / "latin.py").write_bytes(b"x = '\xe9'\n")  # decoded, in a worker too
    want = inline_snapshot(work, tmp_path, monkeypatch)
    parallel = Index(work, workers=workers, offload=offload)

    def not_here(*args: object) -> None:
        raise AssertionError("a file was chunked in the indexing process")

    # Worker processes import their own copy: only this process's is replaced.
    monkeypatch.setattr(prepare, "prepare_file", not_here)
    report = parallel.refresh(embed=False)
    assert report.files == 601 and report.skip_reasons.get("binary") == 1
    parallel.close()
    assert snapshot(work) == want


def test_a_cancelled_first_index_leaves_no_worker_processes(tmp_path: Path) -> None:
    # A first index starts its workers mid-scan, before the loop that takes their
    # results: a cancel that lands before the first result must still stop them.
    import multiprocessing
    import threading

    work = tmp_path / "ws"
    make_corpus(work, 600)
    index = Index(work, workers=2)
    cancel = threading.Event()
    cancel.set()
    report = index.refresh(embed=False, cancel=cancel)
    assert report.cancelled and report.files == 0
    assert multiprocessing.active_children() == []
    report = index.refresh(embed=False)
    assert report.files == 600 and not report.cancelled
    index.close()


class _DyingPool:
    """Stands in for the worker pool: its results stop with BrokenProcessPool
    after ``after`` files, as when the kernel kills a worker for its memory."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.shut = False

    def map(self, fn, args, chunksize=1):  # type: ignore[no-untyped-def]
        from concurrent.futures.process import BrokenProcessPool

        def results():  # type: ignore[no-untyped-def]
            for i, a in enumerate(args):
                if i == self.after:
                    raise BrokenProcessPool("a child process terminated abruptly")
                yield fn(a)

        return results()

    def shutdown(self, cancel_futures: bool = False) -> None:
        self.shut = True


@pytest.mark.parametrize("failure", ["dies midway", "cannot start"])
def test_failed_worker_processes_leave_the_rest_to_the_index_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    work = tmp_path / "ws"
    make_corpus(work, 600)
    want = inline_snapshot(work, tmp_path, monkeypatch)
    pool = _DyingPool(after=250)

    def start(workers: int) -> _DyingPool:
        if failure == "cannot start":
            raise OSError(11, "Resource temporarily unavailable")
        return pool

    monkeypatch.setattr(prepare, "_worker_pool", start)
    index = Index(work, workers=2)
    report = index.refresh(embed=False)
    assert report.files == 600 and not report.errors
    index.close()
    assert snapshot(work) == want
    if failure == "dies midway":
        assert pool.shut
