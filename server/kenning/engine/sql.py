"""SQL helpers shared by the store and the indexes beside it (vectors, lexical)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import apsw

from kenning.errors import IndexCorruptError


def one_row(cursor: apsw.Cursor) -> Any:
    """The row of a query that always has one (an aggregate, a PRAGMA)."""
    row = cursor.fetchone()
    if row is None:
        raise IndexCorruptError("the index answered an aggregate query with no row")
    return row


def phrase(term: str) -> str:
    """``term`` as one FTS5 phrase (quoted, so that no word is read as an operator)."""
    return '"' + term.replace('"', '""') + '"'


def chunk_filters(
    languages: Sequence[str] | None, file_ids: Sequence[int] | None, params: list[object]
) -> list[str]:
    """WHERE clauses on ``chunks c`` for the search filters; appends their parameters."""
    where = []
    if languages:
        where.append("c.language IN (SELECT value FROM json_each(?))")
        params.append(json_strs(languages))
    if file_ids is not None:
        where.append("c.file_id IN (SELECT value FROM json_each(?))")
        params.append(json_ids(file_ids))
    return where


@contextlib.contextmanager
def transaction(conn: apsw.Connection) -> Iterator[apsw.Connection]:
    """One transaction on ``conn``: committed on success, rolled back on any error.

    Not apsw's ``with conn:``: its commit holds the GIL, and a commit that runs
    a WAL checkpoint waits on fsync for tens of milliseconds. Every other thread
    stopped meanwhile: the language server's request handlers, and the threads
    that carry results from the indexing workers (which then stalled on a full
    pipe). Statements run through ``execute`` release the GIL.

    IMMEDIATE: the write lock is taken at the start, where SQLite's busy
    timeout waits for another process's transaction to end. A deferred
    transaction that reads first gets SQLITE_BUSY at once, with no wait, when
    another process commits between its read and its first write: an editor's
    small writes failed that way while a ``kenning index`` ran.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        raise


def json_ids(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def json_strs(values: Sequence[str]) -> str:
    return json.dumps(list(values))
