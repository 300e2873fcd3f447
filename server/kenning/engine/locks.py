"""Locks between processes that share an index: one index run at a time, and
whose editor buffers are alive.

SQLite's own lock covers one transaction. A refresh is many transactions over
seconds or minutes, so without more two processes on one workspace (a
``kenning index`` and a language server, two editor windows on one folder)
would both scan, chunk and embed the same chunks, and a refreshing search
would wait behind the other's writes.

Both locks here are advisory OS locks (``flock`` on POSIX, ``msvcrt.locking``
on Windows) on small files under ``KENNING_HOME``. The OS drops them with
their process however it ends, kill -9 included, so a crashed run never
leaves an index locked; the text written into a lock file (who holds it) is
only ever read as a hint, and the lock itself decides.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A probe (status, a search asking whether a run is going on) holds a lock for
# microseconds; a try that lands on one is repeated for this long before it
# counts as "another process is indexing".
PROBE_GRACE_S = 0.1
_RETRY_S = 0.02

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int, shared: bool) -> None:
        # No shared mode: a probe takes the byte for an instant, as a runner would.
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    _BUSY = (errno.EACCES, errno.EDEADLK)
else:
    import fcntl

    def _try_lock(fd: int, shared: bool) -> None:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    _BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not inherited (os.open's default): a worker process must not keep the lock alive.
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try(fd: int, shared: bool) -> bool | None:
    """True: locked; False: someone else holds it; None: this file system has no locks."""
    try:
        _try_lock(fd, shared)
        return True
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        return None


class RunLock:
    """The lock an index run (a refresh, embedding what is pending) holds throughout.

    One per :class:`~kenning.engine.workspace.Index`; reentrant within it, so
    a caller may hold it across several runs (the language server does while
    a long job is interrupted by edits and resumed). Thread-safe.
    """

    def __init__(self, path: Path, owner: str = "kenning") -> None:
        self.path = path
        self.owner = owner
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._probe_fd: int | None = None
        self._depth = 0
        self._unsupported = False

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self, wait_s: float = 0.0, cancel: threading.Event | None = None) -> bool:
        """Take the lock, waiting up to ``wait_s`` seconds for another process's run.

        False when another process still holds it (see :meth:`holder`).
        """
        deadline = time.monotonic() + max(wait_s, PROBE_GRACE_S)
        while True:
            with self._mutex:
                if self._depth:
                    self._depth += 1
                    return True
                if self._fd is None:
                    self._fd = _open(self.path)
                got = True if self._unsupported else _try(self._fd, shared=False)
                if got is None:
                    # NFS without locks, say: run unguarded rather than never.
                    log.warning("%s: the file system has no locks; runs are not guarded", self.path)
                    self._unsupported = True
                    got = True
                if got:
                    self._depth = 1
                    self._write_holder()
                    return True
            if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                return False
            time.sleep(_RETRY_S)

    def release(self) -> None:
        with self._mutex:
            if not self._depth:
                return
            self._depth -= 1
            if self._depth or self._fd is None:
                return
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            if not self._unsupported:
                with contextlib.suppress(OSError):
                    _unlock(self._fd)

    def holder(self) -> dict[str, Any] | None:
        """Who runs on this index now, when it is another process (or another
        Index in this one); None when nobody does or this lock holds it."""
        with self._mutex:
            if self._depth or self._unsupported:
                return None
            if self._probe_fd is None:
                self._probe_fd = _open(self.path)
            got = _try(self._probe_fd, shared=True)
            if got:
                with contextlib.suppress(OSError):
                    _unlock(self._probe_fd)
                return None
            if got is None:
                return None
            return _read_holder(self._probe_fd)

    def wait_released(self) -> None:
        """Block until no other process runs on this index.

        The kernel wakes us when the lock is let go (no polling), on a file
        descriptor of its own so that this lock's state is not touched.
        Windows has no blocking shared lock: there it looks once a second.
        """
        fd = _open(self.path)
        try:
            if sys.platform == "win32":
                while _try(fd, shared=True) is False:
                    time.sleep(1.0)
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH)
                except OSError:
                    return  # no locks on this file system: nothing to wait for
            with contextlib.suppress(OSError):
                _unlock(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._mutex:
            for fd in (self._fd, self._probe_fd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)  # closing drops the lock too
            self._fd = self._probe_fd = None
            self._depth = 0

    def _write_holder(self) -> None:
        assert self._fd is not None
        info = {"pid": os.getpid(), "command": self.owner, "since": round(time.time(), 3)}
        data = json.dumps(info).encode()
        try:
            os.ftruncate(self._fd, 0)
            # Byte 0 is the one Windows locks, and a locked byte cannot be read there.
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, b"\n" + data)
        except OSError:
            log.debug("could not write the holder of %s", self.path, exc_info=True)


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder's own account of itself; pid None while it is being written."""
    unknown: dict[str, Any] = {"pid": None, "command": None, "since": None}
    try:
        os.lseek(fd, 1, os.SEEK_SET)
        data = os.read(fd, 4096)
        info = json.loads(data.decode()) if data else None
    except (OSError, ValueError):
        return unknown
    if not isinstance(info, dict):
        return unknown
    return {k: info.get(k) for k in unknown}


def describe(holder: dict[str, Any]) -> str:
    """``another process (pid 123, kenning index)``, as far as it is known."""
    who = "another process"
    if holder.get("pid"):
        who += f" (pid {holder['pid']}"
        who += f", {holder['command']})" if holder.get("command") else ")"
    return who


def busy_note(holder: dict[str, Any]) -> str:
    """What a search says when another process is updating the index."""
    return (
        f"{describe(holder)} is updating the index: results are from what it has committed so far"
    )


class BufferOwners:
    """Which processes holding editor buffers in an index are still alive.

    An indexed editor buffer is marked in its file row by ``mtime_ns == -pid``
    of the process that holds it. Each such process keeps an exclusive lock on
    ``KENNING_HOME/locks/PID.lock`` for its lifetime, so another process's
    refresh leaves that row alone while the owner lives (it would otherwise put
    the file on disk back over the unsaved text) and reads the file again once
    the owner is gone.
    """

    def __init__(self, folder: Path) -> None:
        """Use :func:`buffer_owners`: one per folder and process."""
        self.folder = folder
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._alive: dict[int, tuple[float, bool]] = {}

    @property
    def mark(self) -> int:
        """This process's buffer mark, taking its liveness lock on first use."""
        with self._mutex:
            if self._fd is None:
                self._fd = self._lock_own()
        return -os.getpid()

    def _lock_own(self) -> int:
        path = self.folder / f"{os.getpid()}.lock"
        for _ in range(3):
            fd = _open(path)
            _try(fd, shared=False)
            # A prober may have found the file unlocked (left by a dead process
            # with this pid) and removed it between our open and our lock.
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            os.close(fd)
        return _open(path)

    def alive(self, mark: int) -> bool:
        """Whether the process behind buffer mark ``mark`` (a negative mtime) lives."""
        pid = -mark
        if pid == os.getpid():
            return self._fd is not None
        now = time.monotonic()
        with self._mutex:
            seen = self._alive.get(pid)
            # Asked once per marked row of a refresh: remembered for a moment.
            if seen is not None and now - seen[0] < 1.0:
                return seen[1]
        path = self.folder / f"{pid}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            alive = False
        else:
            try:
                got = _try(fd, shared=True)
                if got:
                    _unlock(fd)
                alive = got is False
            finally:
                os.close(fd)
            if not alive:
                with contextlib.suppress(OSError):
                    path.unlink()
        with self._mutex:
            self._alive[pid] = (now, alive)
        return alive


_owners: dict[Path, BufferOwners] = {}
_owners_lock = threading.Lock()


def buffer_owners(folder: Path) -> BufferOwners:
    """The process's :class:`BufferOwners` for ``folder``: its liveness lock is
    process-wide, held until the process ends."""
    with _owners_lock:
        owners = _owners.get(folder)
        if owners is None:
            owners = _owners[folder] = BufferOwners(folder)
        return owners
