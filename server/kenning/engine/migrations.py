"""Numbered schema migrations for a workspace index.

Each migration runs in its own transaction and bumps ``PRAGMA user_version``, so
an index written by an older kenning is brought forward in place and a process
killed mid-migration leaves the previous version intact. Never edit a released
migration: add a new one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE files(
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            language TEXT,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            hash TEXT,                 -- xxh3_64 of the bytes; NULL when skipped
            skip_reason TEXT,          -- why the content was left out, NULL if indexed
            indexed_at REAL NOT NULL
        );
        CREATE TABLE chunks(
            -- AUTOINCREMENT: ids are never reused, so a vector found by id in
            -- memory can never point at a different chunk.
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            ord INTEGER NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            kind TEXT NOT NULL,
            symbol TEXT,
            language TEXT NOT NULL,
            digest TEXT NOT NULL,
            text TEXT NOT NULL,
            has_vector INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX chunks_file ON chunks(file_id, ord);
        -- One vector per chunk for the index's current model (meta
        -- vector_model): float32 for exact rescoring with sqlite-vec, and a
        -- sign-bit copy for the fast coarse pass.
        CREATE TABLE vectors(
            -- seq grows with every write, so an in-memory index can pick up
            -- just the rows written since it last looked.
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            chunk_id INTEGER NOT NULL UNIQUE REFERENCES chunks(id) ON DELETE CASCADE,
            bits BLOB NOT NULL,
            vec BLOB NOT NULL
        );
        -- Chunks whose vector went away, for the same incremental pick-up.
        CREATE TABLE vector_tombstones(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            chunk_id INTEGER NOT NULL
        );
        CREATE TRIGGER vectors_gone AFTER DELETE ON vectors BEGIN
            INSERT INTO vector_tombstones(chunk_id) VALUES (old.chunk_id);
        END;
        CREATE INDEX chunks_pending ON chunks(id) WHERE has_vector = 0;
        -- Contentless: the text lives in chunks; the FTS index holds the
        -- identifier-split words only (see search.fts_text).
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            symbol, body, path,
            content='', contentless_delete=1,
            tokenize='porter unicode61 remove_diacritics 2'
        );
        """,
    ),
    (
        2,
        """
        -- MinHash signatures for near-duplicate detection, computed on demand
        -- (kenning patterns, duplicate hints). NULL sig: too small to compare.
        CREATE TABLE signatures(
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            sig BLOB
        );
        """,
    ),
    (
        3,
        """
        -- Chunks 3: no piece under three lines, a definition's size counted
        -- without its docstring, the parts of a split definition named by its
        -- whole range (unit_start, unit_end), and a header (path, kind,
        -- symbol) embedded with the code; the FTS index gains a column for the
        -- definition's own name. Every file is chunked and embedded again by
        -- the next refresh: its hash and mtime no longer match.
        DROP TRIGGER vectors_gone;
        DELETE FROM vectors;
        DELETE FROM vector_tombstones;
        CREATE TRIGGER vectors_gone AFTER DELETE ON vectors BEGIN
            INSERT INTO vector_tombstones(chunk_id) VALUES (old.chunk_id);
        END;
        DELETE FROM signatures;
        DELETE FROM chunks;
        DROP TABLE chunks_fts;
        ALTER TABLE chunks ADD COLUMN unit_start INTEGER;
        ALTER TABLE chunks ADD COLUMN unit_end INTEGER;
        UPDATE files SET hash = NULL, mtime_ns = -1 WHERE skip_reason IS NULL;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            symbol, body, path, name,
            content='', contentless_delete=1,
            tokenize='porter unicode61 remove_diacritics 2'
        );
        INSERT INTO meta(key, value) VALUES ('vector_epoch', '1') ON CONFLICT(key)
            DO UPDATE SET value = CAST(value AS INTEGER) + 1;
        """,
    ),
    (
        4,
        """
        -- Name vectors: beside the vector of its code, a chunk keeps one of its
        -- definition's name alone (int8, with its sign bits), which vector
        -- search reads too. Every chunk is embedded again by the next refresh:
        -- its code's vector comes back from the shared cache, its name's is new.
        DROP TRIGGER vectors_gone;
        DELETE FROM vectors;
        DELETE FROM vector_tombstones;
        CREATE TRIGGER vectors_gone AFTER DELETE ON vectors BEGIN
            INSERT INTO vector_tombstones(chunk_id) VALUES (old.chunk_id);
        END;
        ALTER TABLE vectors ADD COLUMN name_bits BLOB;
        ALTER TABLE vectors ADD COLUMN name_vec BLOB;
        UPDATE chunks SET has_vector = 0 WHERE has_vector = 1;
        INSERT INTO meta(key, value) VALUES ('vector_epoch', '1') ON CONFLICT(key)
            DO UPDATE SET value = CAST(value AS INTEGER) + 1;
        """,
    ),
    (
        5,
        """
        -- A chunk that holds small definitions joined to its own (none stands
        -- alone under three lines) keeps their names and lines: parts, a JSON
        -- list of [symbol, start_line, end_line, kind], NULL when none, so
        -- search can answer by the one a query names. Every file is chunked
        -- and embedded again by the next refresh (vectors come back from the
        -- shared cache).
        DROP TRIGGER vectors_gone;
        DELETE FROM vectors;
        DELETE FROM vector_tombstones;
        CREATE TRIGGER vectors_gone AFTER DELETE ON vectors BEGIN
            INSERT INTO vector_tombstones(chunk_id) VALUES (old.chunk_id);
        END;
        DELETE FROM signatures;
        DELETE FROM chunks;
        INSERT INTO chunks_fts(chunks_fts) VALUES ('delete-all');
        ALTER TABLE chunks ADD COLUMN parts TEXT;
        UPDATE files SET hash = NULL, mtime_ns = -1 WHERE skip_reason IS NULL;
        INSERT INTO meta(key, value) VALUES ('vector_epoch', '1') ON CONFLICT(key)
            DO UPDATE SET value = CAST(value AS INTEGER) + 1;
        """,
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
