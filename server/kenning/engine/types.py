"""Plain data shared by every stage of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field


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
