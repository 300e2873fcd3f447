"""The client of a ``kenning cluster serve`` endpoint: a remote :class:`Searchable`.

Plain ``urllib`` (no Ray, no extra package): a developer's machine searches the
shared index with the base install. Every request has a timeout; a failure is
a :class:`~kenning.errors.KenningError` whose one line says what went wrong,
and the fan-out (``engine.searchable``) turns it into a note, never a failed
search. The token is sent only in the ``Authorization`` header and never logged.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from kenning.engine.search import SearchResult
from kenning.engine.searchable import EndpointState
from kenning.engine.types import SearchHit
from kenning.errors import KenningError, UsageError

ENV_URL = "KENNING_REMOTE"
ENV_TOKEN = "KENNING_REMOTE_TOKEN"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class RemoteError(KenningError):
    """An endpoint that failed, refused or could not be reached."""


def check_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"{url}: a remote endpoint is an http:// or https:// URL")
    return url.rstrip("/")


class RemoteSearchable:
    """A shard endpoint as a source of search results (the base under local overlays)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_s: float = 2.0,
        repo: str | None = None,
    ) -> None:
        self.url = check_url(url)
        self.token = token
        self.timeout_s = timeout_s
        # A repository this endpoint is known to serve (the remote.endpoints setting).
        self.repo = repo
        self.state = EndpointState()

    @property
    def name(self) -> str:
        return self.url

    @property
    def local(self) -> bool:
        return False

    @property
    def repos(self) -> frozenset[str]:
        return frozenset()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            why = _error_line(exc)
            if exc.code == 401:
                why = f"401 unauthorized ({'a wrong token' if self.token else 'no token'}: set {ENV_TOKEN})"
            self.state.record("error", why)
            raise RemoteError(f"{self.url}: {why}") from None
        except TimeoutError:
            self.state.record("slow", f"no answer within {self.timeout_s:g} s")
            raise RemoteError(f"{self.url}: no answer within {self.timeout_s:g} s") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                self.state.record("slow", f"no answer within {self.timeout_s:g} s")
                raise RemoteError(f"{self.url}: no answer within {self.timeout_s:g} s") from None
            why = f"unreachable ({reason})"
            self.state.record("error", why)
            raise RemoteError(f"{self.url}: {why}") from None
        took = (time.perf_counter() - started) * 1000
        if len(raw) > MAX_RESPONSE_BYTES:
            self.state.record("error", "answer too large")
            raise RemoteError(f"{self.url}: the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            out = json.loads(raw)
        except ValueError:
            self.state.record("error", "not JSON")
            raise RemoteError(f"{self.url}: the answer is not JSON") from None
        self.state.record("ok", None, took)
        return out

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        languages: Sequence[str] | None = None,
        globs: Sequence[str] | None = None,
    ) -> SearchResult:
        body: dict[str, Any] = {"query": query, "k": k, "mode": mode}
        if languages:
            body["lang"] = list(languages)
        if globs:
            body["glob"] = list(globs)
        return _result(self._request("POST", "/v1/search", body), query, mode, self.url)

    def similar(self, code: str, k: int = 10) -> SearchResult:
        out = self._request("POST", "/v1/similar", {"code": code, "k": k})
        return _result(out, code, "vector", self.url)

    def status(self) -> dict[str, Any]:
        """The endpoint's own status, or what went wrong, with this client's view."""
        try:
            remote = self._request("GET", "/v1/status")
        except RemoteError as exc:
            return {"url": self.url, **self.state.to_json(), "error": str(exc)}
        return {"url": self.url, **self.state.to_json(), "remote": remote}


def _error_line(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read(4096) or b"{}")
        message = body.get("error") if isinstance(body, dict) else None
    except (ValueError, OSError):
        message = None
    return f"{exc.code} {message or exc.reason}"


def _result(out: Any, query: str, mode: str, url: str) -> SearchResult:
    if not isinstance(out, dict) or not isinstance(out.get("results"), list):
        raise RemoteError(f"{url}: the answer is not a search result")
    hits = []
    for item in out["results"]:
        try:
            hits.append(
                SearchHit(
                    path=str(item["path"]),
                    start_line=int(item["start_line"]),
                    end_line=int(item["end_line"]),
                    symbol=item.get("symbol"),
                    kind=str(item.get("kind", "")),
                    language=str(item.get("language", "")),
                    score=float(item["score"]),
                    snippet=str(item.get("snippet", "")),
                    root=url,
                    repo=str(item.get("repo") or ""),
                    explain=item.get("explain") or {},
                )
            )
        except (KeyError, TypeError, ValueError):
            raise RemoteError(f"{url}: a result in the answer is malformed") from None
    notes = [f"{url}: {n}" for n in out.get("notes") or [] if isinstance(n, str)]
    return SearchResult(
        query=str(out.get("query") or query),
        mode=str(out.get("mode") or mode),
        results=hits,
        took_ms=float(out.get("took_ms") or 0.0),
        complete=float(out.get("complete", 1.0)),
        notes=notes,
    )


def from_env(
    urls: Sequence[str] | None, timeout_s: float, token: str | None = None
) -> list[RemoteSearchable]:
    """Endpoints from ``--remote`` (else ``KENNING_REMOTE``), with ``KENNING_REMOTE_TOKEN``."""
    wanted = list(urls or [])
    if not wanted and os.environ.get(ENV_URL):
        wanted = [u for u in os.environ[ENV_URL].replace(",", " ").split() if u]
    token = token if token is not None else os.environ.get(ENV_TOKEN) or None
    return [RemoteSearchable(u, token, timeout_s) for u in dict.fromkeys(wanted)]


def from_settings(remote: Any) -> list[RemoteSearchable]:
    """Endpoints of the ``remote`` settings (``remote.endpoints``, ``remote.timeoutMs``);
    each token is read from the environment variable its ``tokenEnv`` names."""
    timeout_s = max(0.05, remote.timeout_ms / 1000)
    out = []
    for ep in remote.endpoints:
        token = os.environ.get(ep.token_env) if ep.token_env else None
        out.append(RemoteSearchable(ep.url, token or None, timeout_s, ep.repo))
    return out
