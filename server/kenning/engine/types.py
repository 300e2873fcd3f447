"""Plain data shared by every stage of the engine.

One chunk record goes through the whole index pipeline: the chunker makes a
:class:`Chunk`, the prepare stage sends it across the worker-process boundary
(as a plain tuple, converted in one place: ``prepare.Prepared.to_tuple``), the
persist stage writes it, and the index gives it back as a :class:`ChunkRow`, the
same record with the id it was stored under, which is what the embed stage and
the queries read. :class:`SearchHit` is not a chunk but an answer: a scored place
in a file with a snippet, which may come from another machine (a shard) and is
turned into JSON only at the door.

Each stage of an index run (``scan``, ``prepare``, ``persist``, ``embed``) is a
module with a ``STAGE`` name; a :data:`Progress` callback hears that name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# progress(stage, done, total): ``stage`` is a stage module's STAGE ("scan",
# "prepare" or "embed"; "persist" keeps pace with "prepare" and has no count of
# its own); ``total`` is 0 while unknown.
Progress = Callable[[str, int, int], None]


class Cancelled(Exception):
    """Raised inside an index run's stages when its cancel event is set."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A semantic unit of a file: a function, a class, a section, a window of lines.

    ``path`` is relative to the workspace root with ``/`` separators; lines are
    1-based and ``end_line`` is inclusive. ``digest`` is a hash of the
    normalised text, so whitespace-only edits do not force a re-embed.
    """

    path: str
    start_line: int
    end_line: int
    kind: str
    symbol: str | None
    language: str
    text: str
    digest: str
    # A part of a definition split over several chunks (a long function, a class
    # around its methods) names the whole definition's lines; None otherwise.
    unit_start: int | None = None
    unit_end: int | None = None
    # Symbols of the other definitions the chunk holds: a one-line function too
    # small to stand alone shares its neighbour's chunk. Searchable by name; not stored.
    also: tuple[str, ...] = ()
    # The chunk's (symbol, body, name) columns of the lexical index
    # (``text.fts_columns``), when the prepare stage has computed them in a worker
    # process; None: the store computes them when it writes the chunk. Not read back.
    lexical: tuple[str, str, str] | None = None
    # The other definitions the chunk holds, each with its own place: (symbol,
    # start_line, end_line, kind), lines 1-based and inclusive as the chunk's, in
    # line order. Search answers by one of them when the query names it (see
    # search.to_hit). Stored.
    parts: tuple[tuple[str, int, int, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRow(Chunk):
    """A chunk as the index holds it: the same record, with the id it was stored
    under (``also`` and ``lexical`` are not read back; ``parts`` is)."""

    id: int


@dataclass(slots=True)
class SearchHit:
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    kind: str
    language: str
    score: float
    snippet: str
    chunk_id: int = 0
    root: str = ""
    # The repository the hit belongs to, where the answer mixes sources (a shard
    # endpoint's results, the local overlay over them); "" otherwise.
    repo: str = ""
    # Why this score: lexical rank, vector similarity, fusion contributions.
    explain: dict[str, float | int | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "symbol": self.symbol,
            "kind": self.kind,
            "language": self.language,
            "score": round(self.score, 4),
            "snippet": self.snippet,
        }
        if self.repo:
            out["repo"] = self.repo
        if self.explain:
            out["explain"] = self.explain
        return out
