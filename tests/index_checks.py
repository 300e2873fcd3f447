"""What must hold of an index database whatever happened to the process that
wrote it, and a snapshot to compare two indexes by what they hold.

Shared by the crash, kill-soak, multi-process and property tests.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import sqlite_vec
import xxhash


def make_corpus(root: Path, files: int, functions: int = 12, tag: str = "") -> None:
    """``files`` Python modules of ``functions`` small functions each, every chunk distinct."""
    for i in range(files):
        d = root / f"pkg{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(
            f"def handler_{i}_{j}{tag}(request, retries={j}):\n"
            f"    '''Handle request {j} of module {i}.'''\n"
            f"    value = request.get('key_{j}') or {i * j}\n"
            f"    return value * retries\n"
            for j in range(functions)
        )
        (d / f"mod{i}.py").write_text(body + "\n")


def connect(db: Path) -> apsw.Connection:
    # Read-write: FTS5's integrity-check is an INSERT command. The writer is gone
    # (or these checks run between its transactions), so nothing is changed.
    conn = apsw.Connection(str(db))
    conn.set_busy_timeout(10_000)
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.enable_load_extension(False)
    return conn


def problems(db: Path) -> list[str]:
    """Every way the index at ``db`` is inconsistent; empty when it is sound."""
    conn = connect(db)
    try:
        return _problems(conn)
    finally:
        conn.close()


def _problems(conn: apsw.Connection) -> list[str]:
    found: list[str] = []

    def count(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    def expect_none(what: str, sql: str) -> None:
        n = count(sql)
        if n:
            found.append(f"{n} {what}")

    rows = conn.execute("PRAGMA integrity_check").fetchall()
    if rows != [("ok",)]:
        found.append(f"integrity_check: {rows[:5]}")
    try:
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    except apsw.Error as exc:
        found.append(f"FTS5 integrity-check: {exc}")
    fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    if fk:
        found.append(f"foreign_key_check: {fk[:5]}")
    expect_none(
        "chunks without a file",
        "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.id = c.file_id)",
    )
    expect_none(
        "chunks of skipped files",
        "SELECT count(*) FROM chunks c JOIN files f ON f.id = c.file_id"
        " WHERE f.skip_reason IS NOT NULL",
    )
    expect_none(
        "chunks whose has_vector disagrees with the vectors table",
        "SELECT count(*) FROM chunks c WHERE c.has_vector !="
        " EXISTS (SELECT 1 FROM vectors v WHERE v.chunk_id = c.id)",
    )
    expect_none(
        "vectors without a chunk",
        "SELECT count(*) FROM vectors v WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = v.chunk_id)",
    )
    expect_none(
        "chunks without an FTS row",
        "SELECT count(*) FROM chunks c WHERE NOT EXISTS"
        " (SELECT 1 FROM chunks_fts f WHERE f.rowid = c.id)",
    )
    expect_none(
        "FTS rows without a chunk",
        "SELECT count(*) FROM chunks_fts f WHERE NOT EXISTS"
        " (SELECT 1 FROM chunks c WHERE c.id = f.rowid)",
    )
    expect_none(
        "files whose chunks are not numbered 0..n-1",
        "SELECT count(*) FROM (SELECT file_id FROM chunks GROUP BY file_id"
        " HAVING min(ord) != 0 OR max(ord) != count(*) - 1 OR count(DISTINCT ord) != count(*))",
    )
    expect_none(
        "vectors of the wrong size",
        "SELECT count(*) FROM vectors WHERE length(vec) !="
        " 4 * coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'vector_dims'), 0)",
    )
    return found


def snapshot(db: Path, vectors: bool = True) -> dict[str, list[tuple[object, ...]]]:
    """What the index holds, in an order that does not depend on how it was built.

    Files (path, hash, language, skip reason), chunks (place, kind, symbol,
    digest, and with ``vectors`` whether it has a vector and that vector's
    hash). Ids, mtimes and timestamps are left out: they differ between runs.
    """
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        files = conn.execute(
            "SELECT path, hash, language, skip_reason FROM files ORDER BY path"
        ).fetchall()
        chunks = [
            (*r[:-2], *((r[-2], _h(r[-1])) if vectors else ()))
            for r in conn.execute(
                "SELECT f.path, c.ord, c.start_line, c.end_line, c.kind, c.symbol, c.language,"
                " c.digest, c.has_vector, v.vec FROM chunks c JOIN files f ON f.id = c.file_id"
                " LEFT JOIN vectors v ON v.chunk_id = c.id ORDER BY f.path, c.ord"
            )
        ]
        fts = conn.execute("SELECT count(*) FROM chunks_fts").fetchone()
    finally:
        conn.close()
    return {"files": files, "chunks": chunks, "fts": [fts]}


def _h(blob: bytes | None) -> str | None:
    return None if blob is None else xxhash.xxh3_64_hexdigest(blob)
