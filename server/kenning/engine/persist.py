"""The persist stage: prepared files into the index, whole files per transaction.

Input: the prepare stage's :class:`~kenning.engine.prepare.Prepared` files (and
editor buffers, whose text stands in for their file). Output: :class:`Persisted`,
what was written. A file is all or nothing: a process killed at any moment
leaves each file as it was or fully replaced, and the next run carries on.

Chunks are written without vectors (``has_vector = 0``, unless an unchanged
chunk keeps its own): that flag is the queue the embed stage reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import xxhash

from kenning.engine import prepare
from kenning.engine.prepare import Prepared, prepare_text
from kenning.engine.scan import decode_text
from kenning.engine.store import FileRow, Store
from kenning.engine.types import Cancelled, Progress

STAGE = "persist"
# A batch of files is read and chunked first, then written in one transaction:
# another process's small writes (an editor buffer) wait only for the writing.
COMMIT_MAX_FILES = 200
COMMIT_EVERY_S = 0.5
# Files removed per transaction: a branch switch may remove thousands.
DELETE_BATCH = 200


@dataclass
class Persisted:
    """What the persist stage wrote: filled in as it goes, so a cancelled run
    still says what it did."""

    # Files whose chunks were replaced.
    changed: int = 0
    # (path, why) of files that could not be read or chunked (nothing written).
    failed: list[tuple[str, str]] = field(default_factory=list)


class Persister:
    """The persist stage of one index: every write of files and chunks to its store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Paths written since the index's listeners were last told (see take_touched).
        self.touched: set[str] = set()

    def take_touched(self) -> set[str]:
        touched, self.touched = self.touched, set()
        return touched

    def write(self, prep: Prepared, out: Persisted | None = None) -> None:
        """One prepared file into the store (in the caller's transaction, if any)."""
        if prep.action == "error":
            if out is not None:
                out.failed.append((prep.rel, prep.reason or "error"))
        elif prep.action == "skip":
            self.store.skip_file(prep.rel, prep.size, prep.mtime_ns, prep.reason or "unfit")
            self.touched.add(prep.rel)
        elif prep.action == "touch":
            self.store.touch_file(prep.rel, prep.size, prep.mtime_ns)
        else:
            assert prep.digest is not None and prep.language is not None
            self.store.write_file(
                prep.rel, prep.size, prep.mtime_ns, prep.digest, prep.language, prep.chunks
            )
            self.touched.add(prep.rel)
            if out is not None:
                out.changed += 1

    def write_all(
        self,
        prepared: Iterator[Prepared],
        total: int,
        out: Persisted,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Write the ``total`` files ``prepared`` yields, several whole files per
        transaction; raises :class:`Cancelled` between transactions."""
        done = 0
        while done < total:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            # Several whole files per transaction: each file is still all or
            # nothing, and FTS5 pays its per-commit segment flush once. They are
            # read and chunked before the transaction opens, so it lasts only as
            # long as the writing.
            deadline = time.perf_counter() + COMMIT_EVERY_S
            batch: list[Prepared] = []
            for prep in prepared:
                batch.append(prep)
                if len(batch) >= COMMIT_MAX_FILES or time.perf_counter() > deadline:
                    break
            if not batch:
                break
            with self.store.write():
                for prep in batch:
                    self.write(prep, out)
            done += len(batch)
            if progress:
                # Files read, chunked and written: this stage keeps pace with
                # the prepare stage, so the count is that stage's.
                progress(prepare.STAGE, done, total)

    def delete(self, paths: Sequence[str]) -> int:
        """Remove files from the index; returns how many it held."""
        self.touched.update(paths)
        return sum(
            self.store.delete_files(paths[i : i + DELETE_BATCH])
            for i in range(0, len(paths), DELETE_BATCH)
        )

    # -- editor buffers -----------------------------------------------------
    # A buffer's row carries its owner's mark as mtime (minus the pid of the
    # process that holds it; see locks.BufferOwners): the next run after the
    # buffer closes, or after that process is gone, reads the file again.

    def write_buffer(self, rel: str, text: str, mark: int, row: FileRow | None) -> bool:
        """Index an editor buffer's text in place of its file; ``row`` is the
        file's row now. Returns whether chunks were written or removed."""
        data = text.encode("utf-8", errors="replace")
        if not data:
            # Like an empty file on disk, which a scan leaves out: no row at all.
            return self.delete([rel]) > 0
        digest = xxhash.xxh3_64_hexdigest(data)
        if row is None or row.hash != digest or row.skip_reason is not None:
            # Read as the saved file's bytes would be (a UTF-8 BOM dropped), so
            # a buffer and the same text on disk index alike.
            self.write(prepare_text(rel, decode_text(data), len(data), mark, digest))
            return True
        if row.mtime_ns != mark:
            self.store.touch_file(rel, len(data), mark)
        return False

    def restore_buffers(
        self, buffers: Mapping[str, str], known: Mapping[str, FileRow], mark: int
    ) -> None:
        """Write back buffers that another process's run replaced (it read the
        file on disk while this process's mark was not yet on the row)."""
        for rel, text in buffers.items():
            row = known.get(rel)
            if (row is None and not text) or (row is not None and row.mtime_ns == mark):
                continue
            if self.write_buffer(rel, text, mark, row):
                self.touched.add(rel)
