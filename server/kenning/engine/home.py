"""KENNING_HOME: whether it can be used, and the repair of what kenning keeps there.

Everything kenning writes under its home can be made again: an index from its
workspace, the embedding cache and a derived model by embedding or deriving
again, the record of verified model files by hashing again, a log from
nothing. So a damaged file there is never an error. It is moved aside (kept
beside the original as ``NAME.corrupt-STAMP``, for a bug report), a new one is
started, and one warning line says so. Each file is checked when it is opened:
:func:`open_owned` for databases, :func:`read_owned_json` for small JSON
records, :func:`owned_dir` for the folders on the way to them.

What cannot be repaired is a home that cannot be used at all (a file in its
place, a folder kenning may not create or write): :func:`check_home` says so
in one :class:`~kenning.errors.HomeError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kenning.config import kenning_home
from kenning.errors import DamagedFileError, HomeError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Files SQLite keeps beside a database; they go wherever the database goes.
SQLITE_COMPANIONS = ("-wal", "-shm")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_FIX = "set KENNING_HOME to a folder kenning may write to"


def _label(home: Path) -> str:
    if os.environ.get("KENNING_HOME"):
        return f"KENNING_HOME ({home})"
    return f"kenning's cache folder {home}"


def check_home(home: Path | None = None) -> Path:
    """The home folder, created if need be; a HomeError when it cannot be used."""
    home = home or kenning_home()
    if home.exists() and not home.is_dir():
        raise HomeError(f"{_label(home)} is a file, not a folder; {_FIX}")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(f"cannot create {_label(home)}: {exc.strerror or exc}; {_FIX}") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise HomeError(f"{_label(home)} is not writable; {_FIX}")
    return home


def move_aside(path: Path, companions: tuple[str, ...] = ()) -> Path | None:
    """Rename ``path`` (and its ``companions`` suffixes) to ``NAME.corrupt-STAMP``.

    Returns the new name of ``path``, or None when there was nothing to move.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = f".corrupt-{stamp}"
    n = 1
    while any(
        Path(f"{path}{c}{suffix}").exists() or Path(f"{path}{c}{suffix}").is_symlink()
        for c in ("", *companions)
    ):
        n += 1
        suffix = f".corrupt-{stamp}-{n}"
    moved: Path | None = None
    for c in ("", *companions):
        src = Path(f"{path}{c}")
        if src.exists() or src.is_symlink():
            try:
                os.replace(src, f"{src}{suffix}")
            except OSError as exc:
                # Not ours to rename: delete instead, the file is kenning's own
                # and can be made again.
                if src.is_dir() and not src.is_symlink():
                    shutil.rmtree(src, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        src.unlink()
                if src.exists() or src.is_symlink():
                    raise HomeError(
                        f"cannot move the damaged {src} aside: {exc.strerror or exc}; {_FIX}"
                    ) from None
                continue
            if c == "":
                moved = Path(f"{src}{suffix}")
    return moved


def repair(path: Path, why: str, companions: tuple[str, ...] = ()) -> None:
    """Move a damaged file aside with the one warning line that says so."""
    aside = move_aside(path, companions)
    where = f"moved it aside to {aside.name}" if aside else "removed it"
    log.warning("%s; %s and started a new one", why, where)


def owned_dir(path: Path, home: Path | None = None) -> Path:
    """``mkdir -p path``, for a folder kenning owns under its home.

    A file standing where one of kenning's folders belongs is moved aside.
    The home itself is the user's choice, never moved: see :func:`check_home`.
    """
    home = home or kenning_home()
    try:
        inside = path.relative_to(home)
    except ValueError:
        inside = None
    if inside is not None:
        check_home(home)
        here = home
        for part in inside.parts:
            here = here / part
            if (here.exists() or here.is_symlink()) and not here.is_dir():
                repair(here, f"{here}: a file stands where kenning keeps a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(f"cannot create {path}: {exc.strerror or exc}; {_FIX}") from None
    return path


def slot_problem(path: Path, companions: tuple[str, ...] = ()) -> str | None:
    """Why ``path`` (or a companion) cannot hold a file: a folder in its place, say."""
    for c in ("", *companions):
        p = Path(f"{path}{c}")
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{p.name} cannot be read ({exc.strerror or exc})"
        if stat.S_ISDIR(mode):
            return f"a folder stands in place of {p.name}"
        if not stat.S_ISREG(mode):
            return f"{p.name} is not a regular file"
    return None


def sqlite_problem(path: Path) -> str | None:
    """Why the SQLite database at ``path`` cannot be whole, from its header and size.

    None when it may be whole (or does not exist yet). Cheap: a deep check
    reads every page, which a large cache cannot afford on every open. A
    database whose write-ahead log holds pages is not judged by its size: it
    may be mid-checkpoint, and the log completes it.
    """
    problem = slot_problem(path, SQLITE_COMPANIONS)
    if problem is not None:
        return problem
    try:
        size = path.stat().st_size
        if size == 0:
            return None  # a database nobody has written to yet
        with path.open("rb") as fh:
            head = fh.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        return "not a SQLite database"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    # The page count in the header is valid only when both change counters agree.
    counted = head[24:28] == head[92:96] and pages > 0
    wal = Path(f"{path}-wal")
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    if counted and wal_empty and size < pages * page_size:
        return f"truncated: {size} bytes of {pages * page_size}"
    return None


def open_owned(path: Path, opener: Callable[[Path], T]) -> tuple[T, bool]:
    """``opener(path)``, for a database kenning owns; True when it had to start anew.

    ``opener`` raises :class:`~kenning.errors.DamagedFileError` for a damaged
    file; the file (and its SQLite companions) is then moved aside with one
    warning, and a new one is opened in its place.
    """
    owned_dir(path.parent)
    try:
        return opener(path), False
    except DamagedFileError as exc:
        repair(path, str(exc), SQLITE_COMPANIONS)
    return opener(path), True


def read_owned_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object kenning keeps at ``path``; {} when missing or damaged (moved aside)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        why = "a folder stands in its place" if path.is_dir() else str(exc)
        problem: str | None = why
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            problem = f"not JSON: {exc}"
        else:
            if isinstance(data, dict):
                return data
            problem = f"a JSON {type(data).__name__}, not an object"
    repair(path, f"{path}: {what} is damaged ({problem})")
    return {}
