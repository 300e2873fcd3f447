"""One typed settings tree, camelCase on the wire, with defaults.

The language server receives settings as JSON from ``initializationOptions`` and
``workspace/didChangeConfiguration``; the CLI builds the same tree from flags.
An invalid value never crashes anything: it is reported in ``problems`` and the
default is kept, so the caller can log it and show it once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_cache_dir

DEFAULT_EXCLUDE: list[str] = ["**/node_modules/**"]


@dataclass
class IndexSettings:
    on_change: bool = True
    debounce_ms: int = 300
    max_file_bytes: int = 1_000_000


@dataclass
class SearchSettings:
    k: int = 20
    mode: Literal["hybrid", "vector", "lexical"] = "hybrid"


@dataclass
class WorkspaceSymbolSettings:
    semantic: bool = True


@dataclass
class DuplicatesSettings:
    diagnostics: bool = False
    threshold: float = 0.85


@dataclass
class RemoteEndpoint:
    """A `kenning cluster serve` endpoint; its token is read from ``token_env``."""

    url: str = ""
    token_env: str | None = None
    # The repository the endpoint serves, when it cannot say (informational).
    repo: str | None = None


@dataclass
class RemoteSettings:
    endpoints: list[RemoteEndpoint] = field(default_factory=list)
    timeout_ms: int = 2000


@dataclass
class Settings:
    model: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    include: list[str] = field(default_factory=list)
    index: IndexSettings = field(default_factory=IndexSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    workspace_symbol: WorkspaceSymbolSettings = field(default_factory=WorkspaceSymbolSettings)
    duplicates: DuplicatesSettings = field(default_factory=DuplicatesSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)

    def to_wire(self) -> dict[str, Any]:
        return _to_wire(self)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _to_wire(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {camel(f.name): _to_wire(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [_to_wire(v) for v in obj]
    return obj


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise ValueError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ValueError(
                f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}"
            )
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(value, inner[0], where)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        return [_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and hasattr(tp, "url"):
            value = {"url": value}  # an endpoint given as its URL alone
        factory: Any = tp  # a dataclass type (is_dataclass narrows to an instance)
        obj = factory()
        problems: list[str] = []
        _merge(obj, value, where, problems)
        if problems:
            raise ValueError(problems[0])
        if hasattr(obj, "url") and not str(obj.url).startswith(("http://", "https://")):
            raise ValueError(f"{where}.url: expected an http:// or https:// URL")
        return obj
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{where}: expected a non-negative integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported settings type {tp!r}")


def _merge(target: Any, data: Any, where: str, problems: list[str]) -> None:
    if not isinstance(data, dict):
        problems.append(f"{where or 'kenning'}: expected an object, got {type(data).__name__}")
        return
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for key, value in data.items():
        name = snake(key) if isinstance(key, str) else ""
        path = f"{where}.{key}" if where else str(key)
        if name not in names:
            problems.append(f"{path}: unknown setting, ignored")
            continue
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            _merge(current, value, path, problems)
            continue
        try:
            setattr(target, name, _check(value, hints[name], path))
        except ValueError as exc:
            problems.append(f"{exc}; using the default {_to_wire(current)!r}")


def _validate(settings: Settings, problems: list[str]) -> None:
    if settings.search.k < 1:
        problems.append("search.k: must be at least 1; using 20")
        settings.search.k = 20
    if not 0.0 < settings.duplicates.threshold <= 1.0:
        problems.append("duplicates.threshold: must be in (0, 1]; using 0.85")
        settings.duplicates.threshold = 0.85


def parse_settings(data: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from wire JSON (``None`` means all defaults) and the problems found."""
    settings = dataclasses.replace(base) if base is not None else Settings()
    if base is not None:
        # dataclasses.replace is shallow: copy the nested trees too.
        settings = parse_settings(base.to_wire())[0]
    problems: list[str] = []
    if data is not None:
        if isinstance(data, dict) and isinstance(data.get("kenning"), dict):
            data = data["kenning"]
        _merge(settings, data, "", problems)
    _validate(settings, problems)
    return settings, problems


def kenning_home() -> Path:
    """Root of every index and cache kenning writes (``KENNING_HOME``)."""
    env = os.environ.get("KENNING_HOME")
    home = Path(env).expanduser() if env else Path(user_cache_dir("kenning", appauthor=False))
    return home.resolve()
