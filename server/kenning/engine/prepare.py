"""The prepare stage: read, check, hash and chunk files, in worker processes on a big run.

Input: the scan stage's :class:`~kenning.engine.scan.FileJob` list (files new or
changed since the index saw them). Output: one :class:`Prepared` per file, in
the same order, for the persist stage to write. Nothing here touches the index.

A cold run of many files is spread over worker processes; a small run (or a
machine that will not start processes) prepares its files in this process. A
worker sends its answer back as a plain tuple (:meth:`Prepared.to_tuple`): tuples
pickle several times faster than dataclasses, and this is the one place where a
prepared file or chunk is anything but its typed record.

The workers are spawned, so each imports this module and what it imports
(chunking, scan, text, types): keep numpy, the store and the search code out of
them, which once tripled a worker's start-up time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import xxhash

from kenning.engine.chunking import chunk_text
from kenning.engine.languages import detect_language
from kenning.engine.scan import FileJob, content_skip_reason, decode_text
from kenning.engine.types import Chunk

log = logging.getLogger(__name__)

STAGE = "prepare"
# Worker processes pay for themselves (start-up, imports) only on big runs.
PARALLEL_MIN_FILES = 256


@dataclass
class Prepared:
    """One file read, checked and chunked, ready to write (or to skip)."""

    rel: str
    size: int
    mtime_ns: int
    action: str  # "write", "skip", "touch" or "error"
    reason: str | None = None
    digest: str | None = None
    language: str | None = None
    # Each with its lexical index columns filled in (Chunk.lexical).
    chunks: list[Chunk] = field(default_factory=list)

    def to_tuple(self) -> tuple[Any, ...]:
        """Plain data for the trip from a worker process (see :meth:`from_tuple`).

        A chunk's path is the file's, so it is not sent once per chunk.
        """
        return (
            self.rel,
            self.size,
            self.mtime_ns,
            self.action,
            self.reason,
            self.digest,
            self.language,
            [
                (
                    c.start_line,
                    c.end_line,
                    c.kind,
                    c.symbol,
                    c.language,
                    c.text,
                    c.digest,
                    c.unit_start,
                    c.unit_end,
                    c.also,
                    c.lexical,
                    c.parts,
                )
                for c in self.chunks
            ],
        )

    @classmethod
    def from_tuple(cls, data: Sequence[Any]) -> Prepared:
        rel, size, mtime_ns, action, reason, digest, language, chunks = data
        return cls(
            rel,
            size,
            mtime_ns,
            action,
            reason,
            digest,
            language,
            [Chunk(rel, *c) for c in chunks],
        )


def prepare_file(rel: str, path: str, size: int, mtime_ns: int, known_hash: str | None) -> Prepared:
    """Everything about a file that needs no index: runs in a worker process too.

    ``known_hash``: the content hash the index holds for the file; bytes that
    hash the same are not chunked again ("touch": only the stat is new).
    """
    try:
        # open(), not Path.read_bytes(): pathlib's object set-up was 2% of a file's cost.
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return Prepared(rel, size, mtime_ns, "error", reason=str(exc.strerror or exc))
    reason = content_skip_reason(rel, data)
    if reason is not None:
        return Prepared(rel, size, mtime_ns, "skip", reason=reason)
    digest = xxhash.xxh3_64_hexdigest(data)
    if known_hash == digest:
        return Prepared(rel, size, mtime_ns, "touch", digest=digest)
    return prepare_text(rel, decode_text(data), size, mtime_ns, digest)


def prepare_text(rel: str, text: str, size: int, mtime_ns: int, digest: str) -> Prepared:
    """:func:`prepare_file` for text in hand (an editor buffer)."""
    try:
        language = detect_language(rel, text[:200].partition("\n")[0]) or "text"
        chunks = chunk_text(rel, text, language, lexical=True)
    except Exception as exc:  # a chunker bug must cost one file, never the run
        log.warning("chunking %s failed: %s", rel, exc)
        log.debug("chunker traceback", exc_info=True)
        return Prepared(rel, size, mtime_ns, "error", reason=f"could not be chunked ({exc})")
    return Prepared(rel, size, mtime_ns, "write", None, digest, language, chunks)


def prepare_job(job: FileJob) -> Prepared:
    e = job.entry
    return prepare_file(e.rel, str(e.path), e.size, e.mtime_ns, job.known_hash)


def prepare_files(
    jobs: Sequence[FileJob], workers: int = 1, offload: bool = False
) -> Generator[Prepared]:
    """The files of ``jobs`` prepared in order: in worker processes for a big run.

    ``workers``: at most this many processes, and only when there are files
    enough for them; ``offload``: even one file set runs in a worker process, so
    that this one stays free for other work (a language server's requests wait
    on the GIL while tree-sitter parses). Close the generator when done with it:
    that shuts the processes down.
    """
    args = [
        (j.entry.rel, str(j.entry.path), j.entry.size, j.entry.mtime_ns, j.known_hash) for j in jobs
    ]
    workers = min(workers, len(jobs) // PARALLEL_MIN_FILES)
    if workers < 2 and not (offload and workers == 1):
        for a in args:
            yield prepare_file(*a)
        return
    taken = 0
    try:
        pool = _worker_pool(workers)
    except OSError as exc:  # no processes to be had (limits, a sandbox)
        log.warning("could not start indexing worker processes (%s); chunking here", exc)
    else:
        try:
            for data in pool.map(_in_worker, args, chunksize=16):
                yield Prepared.from_tuple(data)
                taken += 1
            return
        except (BrokenProcessPool, OSError) as exc:
            # A worker killed (out of memory, say) or a process that would not
            # start: the files not yet done are chunked here instead.
            log.warning("indexing worker processes failed (%s); chunking the rest here", exc)
        finally:
            pool.shutdown(cancel_futures=True)
    for a in args[taken:]:
        yield prepare_file(*a)


def _in_worker(args: tuple[str, str, int, int, str | None]) -> tuple[Any, ...]:
    return prepare_file(*args).to_tuple()


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes that prepare files for an index run."""
    # spawn: the language server has threads, which fork would copy mid-flight.
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=watch_parent,
        initargs=(os.getpid(),),
    )


def watch_parent(parent: int) -> None:
    """In a worker: exit when the process that started it is gone (killed, say).

    A pool's workers wait on their queue forever otherwise, and a killed
    `kenning index` would leave them behind.
    """

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="kenning-parent-watch", daemon=True).start()
