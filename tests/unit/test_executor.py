"""The index thread: short jobs interrupt long ones, which resume; cancellation sticks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from kenning.engine.executor import IndexWorker


@dataclass
class Report:
    steps: int
    cancelled: bool = False


def resumable(total: int, log: list[str], step_s: float = 0.01):
    """A long job like the engine's refresh: does steps, stops when cancelled, resumes."""
    done = [0]

    def run(cancel: threading.Event) -> Report:
        log.append("long-start")
        while done[0] < total:
            if cancel.is_set():
                log.append("long-stop")
                return Report(done[0], cancelled=True)
            time.sleep(step_s)
            done[0] += 1
        log.append("long-done")
        return Report(done[0])

    return run


@pytest.fixture
def worker():
    w = IndexWorker(min_slice_s=0.05)
    yield w
    w.close()


def test_short_job_interrupts_long_job_which_resumes(worker):
    log: list[str] = []
    job = worker.submit_long("refresh", resumable(40, log))
    time.sleep(0.15)
    assert worker.submit(lambda: log.append("edit") or "ok").result(timeout=5) == "ok"
    report = job.future.result(timeout=5)
    assert report.steps == 40 and not report.cancelled
    assert log.index("long-stop") < log.index("edit") < log.index("long-done")
    assert log.count("long-start") == 2


def test_long_job_gets_a_minimum_slice(worker):
    log: list[str] = []
    worker.min_slice_s = 0.3
    job = worker.submit_long("refresh", resumable(100, log))
    time.sleep(0.02)
    started = time.monotonic()
    worker.submit(lambda: log.append("edit")).result(timeout=5)
    assert time.monotonic() - started >= 0.2  # waited for the slice, not the whole job
    job.future.result(timeout=5)


def test_same_key_not_started_is_reused(worker):
    gate = threading.Event()
    worker.submit(gate.wait)
    a = worker.submit_long("embed", lambda cancel: Report(1))
    b = worker.submit_long("embed", lambda cancel: Report(2))
    assert a is b
    gate.set()
    assert a.future.result(timeout=5).steps == 1


def test_user_cancel_stops_for_good(worker):
    log: list[str] = []
    job = worker.submit_long("refresh", resumable(1000, log))
    time.sleep(0.1)
    job.cancel_by_user()
    report = job.future.result(timeout=5)
    assert report.cancelled
    assert "long-done" not in log and log.count("long-start") == 1


def test_cancel_matching_drops_queued_jobs(worker):
    gate = threading.Event()
    worker.submit(gate.wait)
    ran: list[str] = []
    job = worker.submit_long("refresh:/ws/a", lambda c: ran.append("a"))
    other = worker.submit_long("refresh:/ws/b", lambda c: ran.append("b") or Report(1))
    worker.cancel_matching(":/ws/a")
    gate.set()
    assert other.future.result(timeout=5).steps == 1
    assert job.future.cancelled() and ran == ["b"]


def test_a_failing_job_does_not_stop_the_worker(worker):
    def boom() -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError):
        worker.submit(boom).result(timeout=5)
    assert worker.submit(lambda: 42).result(timeout=5) == 42


def test_close_refuses_new_work():
    w = IndexWorker()
    w.close()
    with pytest.raises(RuntimeError):
        w.submit(lambda: 1).result(timeout=1)
    assert w.submit_long("x", lambda c: 1).future.exception(timeout=1) is not None


def test_a_shared_job_runs_until_its_last_waiter_gives_up(worker):
    gate = threading.Event()
    worker.submit(gate.wait)
    log: list[str] = []
    first = worker.submit_long("refresh", resumable(5, log))
    second = worker.submit_long("refresh", resumable(5, log))
    assert first is second and first.owners == 2
    second.release()  # one request cancelled: the other still wants the result
    gate.set()
    assert not first.future.result(timeout=5).cancelled
    assert log[-1] == "long-done"


def test_an_urgent_job_skips_the_slice_and_goes_before_queued_long_jobs(worker):
    log: list[str] = []
    worker.min_slice_s = 30  # an edit would wait this long; a request does not
    running = worker.submit_long("refresh", resumable(2000, log))
    queued = worker.submit_long("embed", resumable(3, log, step_s=0))
    time.sleep(0.05)
    started = time.monotonic()
    assert worker.submit(lambda: log.append("ask") or 7, urgent=True).result(timeout=5) == 7
    assert time.monotonic() - started < 5
    running.cancel_by_user()
    queued.future.result(timeout=5)
    # Asked after "embed" was queued, answered before it started.
    assert log[:3] == ["long-start", "long-stop", "ask"]
