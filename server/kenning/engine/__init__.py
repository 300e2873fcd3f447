"""The engine: files, chunks, vectors and queries. Never imports pygls or lsprotocol."""
