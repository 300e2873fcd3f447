"""The one thread that writes to the indexes: refreshes, editor buffers, embedding.

A live session (:mod:`kenning.engine.session`) answers requests while it
indexes: a door's request thread (the language server's event loop) must stay
free, so every write runs here, one job at a time (the engine serialises
writes anyway).

Two kinds of job:

* short jobs (an edited buffer, a few changed files): run in order, soon;
* long jobs (a full refresh, embedding what is pending): cancellable. When a
  short job arrives while a long one runs, the long one is asked to stop at
  its next safe point, the short job runs, and the long job is queued again.
  The engine's refresh is resumable, so the restart costs a re-scan, and an
  edit made during a first index of a large workspace is searchable at once
  instead of after the whole index is built.

A long job gets at least ``min_slice_s`` of work before it is interrupted so
that continuous typing cannot starve it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

LongFn = Callable[[threading.Event], Any]


def was_cancelled(result: Any) -> bool:
    return bool(getattr(result, "cancelled", False))


@dataclass
class LongJob:
    key: str
    fn: LongFn
    future: Future[Any] = field(default_factory=Future)
    cancel: threading.Event = field(default_factory=threading.Event)
    user_cancelled: bool = False
    started_at: float | None = None
    runs: int = 0
    # How many requests wait on this job (submit_long shares a queued job).
    owners: int = 1

    def release(self) -> None:
        """One waiter gives up (its request was cancelled); the last one stops the job."""
        self.owners -= 1
        if self.owners <= 0:
            self.cancel_by_user()

    def cancel_by_user(self) -> None:
        """Stop for good (``$/cancelRequest``, a cancelled progress, shutdown)."""
        self.user_cancelled = True
        self.cancel.set()


class IndexWorker:
    def __init__(
        self,
        min_slice_s: float = 1.0,
        name: str = "kenning-index",
        on_change: Callable[[str | None, list[str]], None] | None = None,
    ) -> None:
        """``on_change(running, queued)`` is called (on the calling or the worker
        thread) when a long job is queued, starts or ends: status follows it."""
        self._on_change = on_change
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._queued: dict[str, LongJob] = {}
        self._running: LongJob | None = None
        self._timer: threading.Timer | None = None
        self._closed = False
        # Short jobs submitted and not yet finished: a long job that comes up
        # in the pool's queue before them goes back behind them.
        self._shorts = 0
        self.min_slice_s = min_slice_s

    # -- submitting -----------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> Future[Any]:
        """Run ``fn(*args)`` soon, interrupting a long job if one is running:
        after its ``min_slice_s`` (so that typing cannot starve it), or at its
        next safe point when ``urgent`` (a request someone is waiting on)."""
        with self._lock:
            if self._closed:
                return _failed(RuntimeError("the index worker is shut down"))
            self._shorts += 1
            future = self._pool.submit(self._guard, fn, *args)
            self._preempt_locked(urgent)
        return future

    def submit_long(self, key: str, fn: LongFn) -> LongJob:
        """Queue a cancellable job; a job with the same key not yet started is reused."""
        with self._lock:
            job = self._queued.get(key)
            if job is not None:
                job.owners += 1
                return job
            job = LongJob(key, fn)
            if self._closed:
                job.future.set_exception(RuntimeError("the index worker is shut down"))
                return job
            self._queued[key] = job
            self._pool.submit(self._run_long, job)
        self._changed()
        return job

    def cancel_matching(self, suffix: str) -> None:
        """Stop for good every queued or running long job whose key ends with ``suffix``."""
        with self._lock:
            jobs = [j for k, j in self._queued.items() if k.endswith(suffix)]
            for job in jobs:
                del self._queued[job.key]
            if self._running is not None and self._running.key.endswith(suffix):
                jobs.append(self._running)
        for job in jobs:
            job.cancel_by_user()
            if not job.future.done():
                job.future.cancel()

    def running(self) -> str | None:
        job = self._running
        return job.key if job else None

    def queued(self) -> list[str]:
        with self._lock:
            return list(self._queued)

    # -- shutting down --------------------------------------------------------

    def close(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            jobs = list(self._queued.values())
            if self._running is not None:
                jobs.append(self._running)
            if self._timer is not None:
                self._timer.cancel()
        for job in jobs:
            job.cancel_by_user()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        for job in jobs:
            if not job.future.done():
                job.future.cancel()

    # -- internals ------------------------------------------------------------

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            log.error("index job %s failed", getattr(fn, "__name__", fn), exc_info=True)
            raise
        finally:
            with self._lock:
                self._shorts -= 1

    def _preempt_locked(self, urgent: bool = False) -> None:
        job = self._running
        if job is None or job.cancel.is_set():
            return
        ran = time.monotonic() - (job.started_at or time.monotonic())
        wait = 0.0 if urgent else self.min_slice_s - ran
        if wait <= 0:
            job.cancel.set()
        elif self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(wait, job.cancel.set)
            self._timer.daemon = True
            self._timer.start()

    def _run_long(self, job: LongJob) -> None:
        with self._lock:
            if self._shorts and not self._closed and not job.user_cancelled:
                self._pool.submit(self._run_long, job)
                return
            if self._queued.get(job.key) is job:
                del self._queued[job.key]
            if job.user_cancelled or job.future.cancelled():
                if not job.future.done():
                    job.future.cancel()
                return
            job.cancel.clear()
            job.started_at = time.monotonic()
            job.runs += 1
            self._running = job
        self._changed()
        try:
            result = job.fn(job.cancel)
        except Exception as exc:
            log.error("index job %s failed", job.key, exc_info=True)
            self._finish(job)
            if not job.future.done():
                job.future.set_exception(exc)
            return
        self._finish(job)
        if was_cancelled(result) and not job.user_cancelled:
            # Interrupted for a short job: go to the back of the queue and resume.
            with self._lock:
                if not self._closed and job.key not in self._queued:
                    self._queued[job.key] = job
                    self._pool.submit(self._run_long, job)
                    return
                other = self._queued.get(job.key)
            if other is not None and other is not job:
                _chain(other.future, job.future)
                return
        if not job.future.done():
            job.future.set_result(result)

    def _finish(self, job: LongJob) -> None:
        with self._lock:
            if self._running is job:
                self._running = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._changed()

    def _changed(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(self.running(), self.queued())
        except Exception:
            log.error("the index worker's change callback failed", exc_info=True)


def _failed(exc: Exception) -> Future[Any]:
    f: Future[Any] = Future()
    f.set_exception(exc)
    return f


def _chain(source: Future[Any], target: Future[Any]) -> None:
    def copy(done: Future[Any]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
