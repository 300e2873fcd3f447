"""What every source of search results offers, and one answer from several sources.

A source is a local workspace index or a remote shard endpoint (``kenning
cluster serve``); both answer :class:`Searchable`. A search asks every source
at once and merges their answers the way results of several workspace roots
merge (:func:`~kenning.engine.search.merge_results`: best fixed-scale scores
first), with two rules of its own:

- **local overlay over remote base**: a remote hit in a repository that a local
  source is a working copy of is dropped, so the code on the user's screen
  (unsaved buffers, uncommitted edits) answers for its own repository;
- a remote source that fails or does not answer within the timeout never fails
  the search: the answer carries a note saying which one was skipped and why.

This module knows no HTTP and no Ray: the remote client (``engine.remote``,
plain urllib, so every door can ask an endpoint with the base install) only
has to satisfy the protocol.
"""

from __future__ import annotations

import configparser
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kenning.engine.search import SearchResult, merge_results
from kenning.errors import KenningError, UsageError

if TYPE_CHECKING:
    from kenning.engine.workspace import Index

log = logging.getLogger(__name__)

# Bounds on what a similar-by-code request may send (the shard endpoint uses them too).
MAX_CODE_CHARS = 20_000


@runtime_checkable
class Searchable(Protocol):
    """A source of search results: a local index or a remote shard endpoint."""

    @property
    def name(self) -> str:
        """How notes and status name the source (a root path, an endpoint URL)."""
        ...

    @property
    def local(self) -> bool:
        """True for a working copy on this machine: it overlays remote sources."""
        ...

    @property
    def repos(self) -> frozenset[str]:
        """The repositories this source is a working copy of (empty for a remote base)."""
        ...

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        languages: Sequence[str] | None = None,
        globs: Sequence[str] | None = None,
    ) -> SearchResult: ...

    def similar(self, code: str, k: int = 10) -> SearchResult:
        """Code most like ``code`` (a snippet's text)."""
        ...

    def status(self) -> dict[str, Any]: ...


# -- repository ids -------------------------------------------------------------

_SCP_URL = re.compile(r"^(?:[^@/]+@)?([^:/]+):(.+)$")


def normalize_repo_url(url: str) -> str:
    """A git remote URL as a repository id: ``host/owner/name``, lower-case host,
    no scheme, user, port or ``.git``. ``git@github.com:Org/x.git`` and
    ``https://github.com/Org/x`` name the same repository."""
    url = url.strip()
    if "://" in url:
        rest = url.split("://", 1)[1]
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1].split(":", 1)[0]
    else:
        m = _SCP_URL.match(url)
        if m is None:
            return url.rstrip("/").removesuffix(".git")
        host, path = m.group(1), m.group(2)
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host.lower()}/{path}" if host else path


def _git_dir(root: Path) -> Path | None:
    dot = root / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():  # a worktree or submodule: "gitdir: PATH"
        try:
            line = dot.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        if line.startswith("gitdir:"):
            gd = Path(line[7:].strip())
            gd = gd if gd.is_absolute() else (root / gd)
            common = gd / "commondir"
            if common.is_file():
                try:
                    c = Path(common.read_text().strip())
                except OSError:
                    return gd
                return c if c.is_absolute() else (gd / c)
            return gd
    return None


def git_remote_url(root: Path) -> str | None:
    """The URL of ``origin`` (else the first remote) in the git config of ``root``."""
    gd = _git_dir(root)
    if gd is None:
        return None
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(gd / "config", encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    remotes = [s for s in parser.sections() if s.startswith("remote ")]
    remotes.sort(key=lambda s: s != 'remote "origin"')
    for section in remotes:
        url = parser.get(section, "url", fallback=None)
        if url:
            return url
    return None


def repo_id(root: Path) -> str:
    """The repository id of a folder: its git remote, normalized, else its name.

    ``kenning cluster build`` gives each source this id, and a workspace folder
    with the same id overlays that repository's remote results.
    """
    url = git_remote_url(root)
    if url:
        return normalize_repo_url(url)
    return Path(root).resolve().name or "root"


# -- the local index as a source -------------------------------------------------


class LocalSearchable:
    """A workspace :class:`~kenning.engine.workspace.Index` as a :class:`Searchable`."""

    def __init__(self, index: Index, repo: str | None = None) -> None:
        self.index = index
        self.repo = repo if repo is not None else repo_id(index.root)

    @property
    def name(self) -> str:
        return str(self.index.root)

    @property
    def local(self) -> bool:
        return True

    @property
    def repos(self) -> frozenset[str]:
        return frozenset({self.repo})

    def _tag(self, result: SearchResult) -> SearchResult:
        for hit in result.results:
            hit.repo = self.repo
        return result

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        languages: Sequence[str] | None = None,
        globs: Sequence[str] | None = None,
    ) -> SearchResult:
        return self._tag(self.index.search(query, k, mode, languages, globs))

    def similar(self, code: str, k: int = 10) -> SearchResult:
        check_code(code)
        return self._tag(self.index.similar_code(code, k))

    def status(self) -> dict[str, Any]:
        return {**self.index.status(), "repo": self.repo}


def check_code(code: str) -> None:
    if not code.strip():
        raise UsageError("the code is empty")
    if len(code) > MAX_CODE_CHARS:
        raise UsageError(f"the code is longer than {MAX_CODE_CHARS} characters")


def first_line(code: str) -> str:
    line = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")
    return line[:80]


# -- several sources, one answer ---------------------------------------------------


def overlay(answers: Sequence[tuple[Searchable, SearchResult]], k: int, query: str) -> SearchResult:
    """Merge answers; remote hits in a repository a local source holds are dropped."""
    mine = frozenset().union(*(s.repos for s, _ in answers if s.local))
    kept: list[SearchResult] = []
    for source, result in answers:
        if not source.local and mine:
            result.results = [h for h in result.results if h.repo not in mine]
        kept.append(result)
    merged = merge_results(kept, k, query)
    # merge_results sums the sources' times; they ran at once.
    merged.took_ms = max((r.took_ms for r in kept), default=0.0)
    return merged


def fan_out(
    sources: Sequence[Searchable],
    ask: Callable[[Searchable], SearchResult],
    timeout_s: float,
) -> tuple[list[tuple[Searchable, SearchResult]], list[str]]:
    """Ask every source at once. Local sources are waited for (their errors are
    the user's to see); a remote one that fails or takes more than ``timeout_s``
    is left out with a note."""
    if len(sources) == 1 and sources[0].local:
        return [(sources[0], ask(sources[0]))], []
    pool = ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="kenning-fanout")
    try:
        futures: list[tuple[Searchable, Future[SearchResult]]] = [
            (s, pool.submit(ask, s)) for s in sources
        ]
        deadline = time.monotonic() + timeout_s
        answers: list[tuple[Searchable, SearchResult]] = []
        notes: list[str] = []
        for source, fut in futures:
            if source.local:
                answers.append((source, fut.result()))
                continue
            try:
                answers.append((source, fut.result(timeout=max(0.0, deadline - time.monotonic()))))
            except TimeoutError:
                notes.append(f"{source.name} skipped: no answer within {timeout_s:g} s")
            except KenningError as exc:
                why = str(exc).removeprefix(f"{source.name}: ")
                notes.append(f"{source.name} skipped: {why}")
            except Exception as exc:  # a remote's failure is never the search's
                log.warning("remote %s failed", source.name, exc_info=True)
                notes.append(f"{source.name} skipped: {type(exc).__name__}: {exc}")
        return answers, notes
    finally:
        # A slow endpoint's thread ends by its own socket timeout; nobody waits for it.
        pool.shutdown(wait=False, cancel_futures=True)


def search_all(
    sources: Sequence[Searchable],
    query: str,
    k: int = 10,
    mode: str = "hybrid",
    languages: Sequence[str] | None = None,
    globs: Sequence[str] | None = None,
    timeout_s: float = 2.0,
) -> SearchResult:
    """One search over every source: local overlay over remote base."""
    started = time.perf_counter()
    answers, notes = fan_out(
        sources, lambda s: s.search(query, k, mode, languages, globs), timeout_s
    )
    merged = overlay(answers, k, query)
    merged.notes = sorted(set(merged.notes) | set(notes))
    merged.took_ms = (time.perf_counter() - started) * 1000
    return merged


def similar_all(
    sources: Sequence[Searchable], code: str, k: int = 10, timeout_s: float = 2.0
) -> SearchResult:
    """Code most like ``code`` across every source, as :func:`search_all` merges."""
    started = time.perf_counter()
    answers, notes = fan_out(sources, lambda s: s.similar(code, k), timeout_s)
    merged = overlay(answers, k, first_line(code))
    merged.mode = "vector"
    merged.notes = sorted(set(merged.notes) | set(notes))
    merged.took_ms = (time.perf_counter() - started) * 1000
    return merged


class EndpointState:
    """What a client last saw of an endpoint, for status: ok, error or slow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "unknown"
        self.detail: str | None = None
        self.at: float | None = None
        self.last_ms: float | None = None

    def record(self, state: str, detail: str | None = None, took_ms: float | None = None) -> None:
        with self._lock:
            self.state, self.detail, self.at = state, detail, time.time()
            if took_ms is not None:
                self.last_ms = round(took_ms, 2)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self.state,
                "detail": self.detail,
                "at": self.at,
                "last_ms": self.last_ms,
            }
