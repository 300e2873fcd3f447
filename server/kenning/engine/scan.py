"""Which files of a workspace belong in the index.

Rules, in the order they are applied to every path:

1. ``include`` globs from the settings re-include anything the rules below
   would leave out (except size and content checks), so a user can always get a
   vendored or ignored folder back.
2. ``exclude`` globs from the settings.
3. ``.gitignore`` files at every level, ``.git/info/exclude`` and
   ``.kenningignore`` files at every level, with git's semantics (the deepest
   matching pattern wins, negations included).
4. Built-in defaults: dependency and vendored folders, build output, lock
   files, minified and generated files, binaries by extension.

Content checks (binary, generated header, minified) need the bytes,
so they run when a file is read; see :func:`content_skip_reason`.

This is also the first stage of an index run (``STAGE``): :func:`scan_changes`
walks the root and holds what it finds against what the index holds, and its
:class:`ScanPlan` says which files the prepare stage must read and which are gone.
The indexing worker processes import this module: it imports nothing heavy.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pathspec

from kenning.errors import UsageError, WorkspaceError

STAGE = "scan"


class KnownFile(Protocol):
    """What the scan stage reads of a file's row in the index (a ``store.FileRow``):
    the walk knows nothing of the store."""

    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def hash(self) -> str | None: ...
    @property
    def skip_reason(self) -> str | None: ...


# Folders a user never wants searched. Matched by name at any depth.
VENDORED_DIRS = frozenset(
    {
        "node_modules",
        "bower_components",
        "jspm_packages",
        "vendor",
        "third_party",
        "third-party",
        "thirdparty",
        "site-packages",
        "dist-packages",
        ".venv",
        "venv",
        "Pods",
        "Carthage",
        "deps",
        "_deps",
        ".bundle",
        "elm-stuff",
    }
)
BUILD_DIRS = frozenset(
    {
        "build",
        "dist",
        "out",
        "target",
        "_build",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".output",
        "coverage",
        "htmlcov",
        ".gradle",
        "obj",
        "cmake-build-debug",
        "cmake-build-release",
        ".eggs",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".cache",
        ".parcel-cache",
        ".turbo",
        ".terraform",
        ".dart_tool",
        ".angular",
        "storybook-static",
    }
)
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".jj", ".idea", ".kenning"})

LOCK_FILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "Cargo.lock",
        "poetry.lock",
        "Pipfile.lock",
        "uv.lock",
        "pdm.lock",
        "composer.lock",
        "Gemfile.lock",
        "go.sum",
        "mix.lock",
        "Podfile.lock",
        "packages.lock.json",
        "flake.lock",
        "pubspec.lock",
        "gradle.lockfile",
    }
)
BINARY_EXTENSIONS = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".bmp",
        ".ico",
        ".icns",
        ".webp",
        ".tif",
        ".tiff",
        ".psd",
        ".svgz",
        ".mp3",
        ".mp4",
        ".m4a",
        ".wav",
        ".flac",
        ".ogg",
        ".avi",
        ".mov",
        ".mkv",
        ".webm",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".zst",
        ".7z",
        ".rar",
        ".tar",
        ".jar",
        ".war",
        ".ear",
        ".whl",
        ".egg",
        ".so",
        ".dylib",
        ".dll",
        ".exe",
        ".o",
        ".a",
        ".lib",
        ".obj",
        ".pyc",
        ".pyo",
        ".pyd",
        ".class",
        ".wasm",
        ".bin",
        ".dat",
        ".db",
        ".sqlite",
        ".sqlite3",
        ".pdf",
        ".doc",
        ".docx",
        ".xls",
        ".xlsx",
        ".ppt",
        ".pptx",
        ".ttf",
        ".otf",
        ".woff",
        ".woff2",
        ".eot",
        ".onnx",
        ".pt",
        ".pth",
        ".ckpt",
        ".safetensors",
        ".npy",
        ".npz",
        ".pkl",
        ".pickle",
        ".parquet",
        ".arrow",
        ".avro",
        ".orc",
        ".h5",
        ".hdf5",
        ".iso",
        ".dmg",
        ".deb",
        ".rpm",
        ".apk",
        ".ipa",
        ".lockb",
        ".DS_Store",
        ".avif",
        ".heic",
        ".ods",
        ".odt",
        ".pdb",
    }
)
MINIFIED_SUFFIXES = (
    ".min.js",
    ".min.css",
    ".min.mjs",
    ".bundle.js",
    ".chunk.js",
    ".js.map",
    ".css.map",
    ".map",
)
GENERATED_SUFFIXES = (
    "_pb2.py",
    "_pb2_grpc.py",
    "_pb2.pyi",
    ".pb.go",
    ".pb.cc",
    ".pb.h",
    ".pb.swift",
    "_generated.go",
    ".generated.ts",
    ".generated.js",
    ".generated.cs",
    ".g.dart",
    ".freezed.dart",
    ".designer.cs",
    ".g.cs",
)
GENERATED_MARKERS = (
    b"@generated",
    b"do not edit",
    b"autogenerated",
    b"auto-generated",
    b"automatically generated",
    b"generated by",
)

SKIP_REASONS = (
    "ignored",
    "excluded",
    "vendored",
    "build",
    "lockfile",
    "binary",
    "minified",
    "generated",
    "too_large",
    "not_utf8",
    "unreadable",
)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file that passed the path rules; content checks come when it is read."""

    rel: str
    path: Path
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    root: Path
    files: list[FileEntry] = field(default_factory=list)
    # Files and folders left out by the path rules, by reason. A skipped folder
    # counts once: its contents are never visited.
    skipped: Counter[str] = field(default_factory=Counter)
    # The same, one (path, reason) each; a folder's path ends in "/".
    skipped_paths: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, rel: str, reason: str) -> None:
        self.skipped[reason] += 1
        self.skipped_paths.append((rel, reason))


@dataclass(frozen=True, slots=True)
class FileJob:
    """A file the prepare stage must read: new, or changed since the index saw it."""

    entry: FileEntry
    # The content hash the index holds for the file: the same bytes are not
    # chunked again.
    known_hash: str | None = None

    @classmethod
    def of(cls, entry: FileEntry, row: KnownFile | None) -> FileJob:
        """The job for ``entry``, whose row in the index is ``row`` (None: not there)."""
        known = row.hash if row is not None and row.skip_reason is None else None
        return cls(entry, known)


@dataclass
class ScanPlan:
    """The scan stage's output: what one index run must do."""

    scan: ScanResult
    # To read, in path order.
    todo: list[FileJob] = field(default_factory=list)
    # Paths the index holds that are no longer there (or no longer belong).
    gone: list[str] = field(default_factory=list)


def scan_changes(
    scanner: Scanner,
    known: Mapping[str, KnownFile],
    held: Callable[[str, KnownFile | None], bool],
    recheck: bool,
) -> ScanPlan:
    """Walk the root and hold what is there against ``known`` (the index's rows).

    A file whose (size, mtime) match its row is not read again, unless its row
    records a content skip and ``recheck`` (the content rules changed since).
    ``held(rel, row)``: the path is an editor buffer's (this process's, or a live
    one of another process), so the disk is not what the index should hold.
    """
    scan = scanner.scan()
    plan = ScanPlan(scan)
    seen: set[str] = set()
    for entry in scan.files:
        seen.add(entry.rel)
        row = known.get(entry.rel)
        if (
            row is not None
            and row.size == entry.size
            and row.mtime_ns == entry.mtime_ns
            and (row.skip_reason is None or not recheck)
        ):
            continue
        if held(entry.rel, row):
            continue
        plan.todo.append(FileJob.of(entry, row))
    plan.gone = [p for p, row in known.items() if p not in seen and not held(p, row)]
    return plan


def compile_globs(globs: list[str], what: str) -> pathspec.PathSpec | None:
    """A gitignore-style matcher for user globs; a bad glob is a UsageError."""
    if not globs:
        return None
    for glob in globs:
        _compile_one(glob, what)
    return pathspec.GitIgnoreSpec.from_lines(globs)


def _compile_one(glob: str, what: str) -> pathspec.PathSpec:
    try:
        return pathspec.GitIgnoreSpec.from_lines([glob])
    except Exception as exc:  # pathspec raises several types for bad patterns
        # re's messages end in a position within pathspec's regex, not the glob.
        why = re.sub(r" at position \d+$", "", str(exc))
        raise UsageError(f"{_bad(what)} {glob!r}: {why}") from None


def check_glob(glob: str, what: str) -> None:
    """A UsageError unless ``glob`` compiles and can match a path.

    pathspec takes a blank line, a ``#`` comment or an unclosed ``[`` without
    complaint and matches nothing with it, which a user would only see as a
    filter that finds nothing.
    """
    spec = _compile_one(glob, what)
    if any(p.regex is not None for p in spec.patterns):
        return
    if not glob.strip():
        why = "it is empty"
    elif glob.lstrip().startswith("#"):
        why = "a leading # makes it a comment; write \\# for a literal #"
    elif "[" in glob:
        why = "an unclosed [ (write \\[ for a literal [)"
    else:
        why = "it can match no path"
    raise UsageError(f"{_bad(what)} {glob!r}: {why}")


def _bad(what: str) -> str:
    return f"bad {what} glob" if what else "bad glob"


def expand_braces(glob: str) -> list[str]:
    """``src/*.{ts,tsx}`` -> ``src/*.ts``, ``src/*.tsx``, as ripgrep and editors read it.

    gitignore patterns have no braces: left alone, a glob that uses them
    would match only paths with a literal ``{``.
    """
    depth, start = 0, -1
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                inner = glob[start + 1 : i]
                parts = _split_top(inner)
                if len(parts) > 1:
                    head, tail = glob[:start], glob[i + 1 :]
                    return [x for part in parts for x in expand_braces(head + part + tail)]
        i += 1
    return [glob]


def _split_top(text: str) -> list[str]:
    parts, depth, last, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
        i += 1
    parts.append(text[last:])
    return parts


def filter_spec(globs: Sequence[str], what: str = "--glob") -> pathspec.PathSpec:
    """The matcher for a search's path filter: any glob matches, ``!glob`` takes away.

    Braces expand; a filter of negations only (``!tests/**``) means every
    path but those, as in ripgrep, rather than no path at all.
    """
    lines: list[str] = []
    for glob in globs:
        check_glob(glob, what)
        for one in expand_braces(glob):
            check_glob(one, what)
            lines.append(one)
    if lines and all(line.startswith("!") for line in lines):
        lines.insert(0, "**")
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _read_patterns(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


class _IgnoreStack:
    """The gitignore-style specs in force for one folder, root first."""

    __slots__ = ("specs",)

    def __init__(self, specs: list[tuple[str, pathspec.PathSpec]]):
        self.specs = specs

    def child(self, dir_rel: str, dir_path: Path) -> _IgnoreStack:
        lines = _read_patterns(dir_path / ".gitignore") + _read_patterns(
            dir_path / ".kenningignore"
        )
        if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
            return self
        try:
            spec = pathspec.GitIgnoreSpec.from_lines(lines)
        except Exception:
            # A broken line in someone's .gitignore must not stop indexing.
            return self
        return _IgnoreStack([*self.specs, (dir_rel, spec)])

    def ignored(self, rel: str, is_dir: bool) -> bool:
        # The deepest spec with a matching pattern decides, as git does.
        for base, spec in reversed(self.specs):
            sub = rel[len(base) + 1 :] if base else rel
            result = spec.check_file(sub + "/" if is_dir else sub)
            if result.include is not None:
                return bool(result.include)
        return False


def default_skip_reason(name: str, is_dir: bool) -> str | None:
    if is_dir:
        if name in VCS_DIRS:
            return "ignored"
        if name in VENDORED_DIRS or name.endswith(".egg-info"):
            return "vendored"
        if name in BUILD_DIRS:
            return "build"
        return None
    if name in LOCK_FILES:
        return "lockfile"
    lower = name.lower()
    dot = lower.rfind(".")
    if dot > 0 and lower[dot:] in BINARY_EXTENSIONS:
        return "binary"
    if lower.endswith(MINIFIED_SUFFIXES):
        return "minified"
    if lower.endswith(GENERATED_SUFFIXES):
        return "generated"
    return None


# Bytes that text does not hold: C0 controls but tab, newline, vertical tab,
# form feed, carriage return and escape (ANSI colours in logs).
_CONTROL = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f]")
# Text has next to no control characters; compiled code, images and compressed
# data have them everywhere (random bytes: 27 in 256, about 10%). One stray NUL
# in a source file is text, as it is to an editor (git and ripgrep call any NUL
# binary, and would hide a whole file for one byte).
BINARY_CONTROL_RATIO = 0.05
# Formats whose first bytes say what they are, for the few that may not show
# many control bytes in their head.
BINARY_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"\xff\xd8\xff",  # JPEG
    b"%PDF-",
    b"\x7fELF",
    b"\xcf\xfa\xed\xfe",  # Mach-O
    b"\xce\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",  # Java class, Mach-O universal
    b"\x00asm",  # WebAssembly
    b"PK\x03\x04",  # zip, jar, docx, whl
    b"\x1f\x8b",  # gzip
    b"BZh9",
    b"\xfd7zXZ\x00",
    b"7z\xbc\xaf\x27\x1c",
    b"\x28\xb5\x2f\xfd",  # zstd
    b"Rar!\x1a\x07",
    b"SQLite format 3\x00",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # OLE: .doc, .xls, .msi
    b"\x93NUMPY",
    b"OggS",
    b"fLaC",
    b"wOFF",
    b"wOF2",
)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Bump when content_skip_reason would decide differently about a file it has
# already seen, so an index re-reads the files it skipped by the old rules.
CONTENT_RULES = "2"


def decode_text(data: bytes) -> str:
    """A file's text: UTF-8 (or UTF-16 with a BOM), each bad byte a U+FFFD.

    One bad byte (a Latin-1 ``é`` in a comment) costs that character, not the
    file: the code around it is still found. A UTF-8 BOM is dropped, as
    editors do.
    """
    if data.startswith(_UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    text = data.decode("utf-8", errors="replace")
    return text[1:] if text.startswith("\ufeff") else text


def content_skip_reason(rel: str, data: bytes) -> str | None:
    """Why a file's bytes make it unfit to index, or None. ``data`` is the whole file."""
    head = data[:8192]
    if head.startswith(BINARY_MAGIC):
        return "binary"
    if head.startswith(_UTF16_BOMS):
        # Its NULs are half of every ASCII character: judge the decoded text.
        text = decode_text(head)
        controls = len(_CONTROL_CHARS.findall(text))
        size = len(text)
    else:
        controls = len(head) - len(head.translate(None, _CONTROL))
        size = len(head)
    if controls > 1 and controls > BINARY_CONTROL_RATIO * size:
        return "binary"
    # The markers are looked for in the first 600 characters only.
    first = decode_text(head[:2400])[:600].lower().encode()
    if any(m in first for m in GENERATED_MARKERS) and _looks_generated(first):
        return "generated"
    if rel.endswith((".js", ".mjs", ".cjs", ".css", ".json")) and len(data) > 2000:
        lines = data.count(b"\n") + 1
        if len(data) / lines > 300:
            return "minified"
    return None


def _looks_generated(head: bytes) -> bool:
    # "generated by" alone shows up in ordinary comments ("a token generated by
    # the server"); demand the conventions tools actually write.
    if b"@generated" in head or b"do not edit" in head:
        return True
    return any(
        m in head for m in (b"autogenerated", b"auto-generated", b"automatically generated")
    ) or (
        b"generated by" in head
        and (
            b"code generated" in head
            or b"file was generated" in head
            or b"this file is generated" in head
        )
    )


class Scanner:
    """Walks one workspace root applying the rules above."""

    def __init__(
        self,
        root: Path,
        exclude: list[str] | None = None,
        include: list[str] | None = None,
        max_file_bytes: int = 1_000_000,
    ) -> None:
        self.root = root
        self.exclude = compile_globs(exclude or [], "exclude")
        self.include = compile_globs(include or [], "include")
        self.max_file_bytes = max_file_bytes
        self._include_globs = include or []

    def _base_stack(self) -> _IgnoreStack:
        lines = _read_patterns(self.root / ".git" / "info" / "exclude")
        specs: list[tuple[str, pathspec.PathSpec]] = []
        if lines:
            # A broken line in someone's exclude file must not stop indexing.
            with contextlib.suppress(Exception):
                specs.append(("", pathspec.GitIgnoreSpec.from_lines(lines)))
        return _IgnoreStack(specs).child("", self.root)

    def path_skip_reason(
        self, rel: str, is_dir: bool, stack: _IgnoreStack | None = None
    ) -> str | None:
        """Why the path rules leave ``rel`` out, or None if it belongs."""
        probe = rel + "/" if is_dir else rel
        if self.include is not None and self.include.match_file(probe):
            return None
        if self.exclude is not None and self.exclude.match_file(probe):
            return "excluded"
        if stack is None:
            stack = self._stack_for(rel)
        if stack.ignored(rel, is_dir):
            return "ignored"
        for part in rel.split("/")[:-1]:
            reason = default_skip_reason(part, True)
            if reason:
                return reason
        return default_skip_reason(rel.rsplit("/", 1)[-1], is_dir)

    def _stack_for(self, rel: str) -> _IgnoreStack:
        stack = self._base_stack()
        parts = rel.split("/")[:-1]
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            stack = stack.child(sub, self.root / sub)
        return stack

    def _may_reinclude_below(self, dir_rel: str) -> bool:
        # Descend into a left-out folder only if an include glob could match inside it.
        for glob in self._include_globs:
            g = glob.lstrip("/")
            if (
                g.startswith("**")
                or g.startswith(dir_rel + "/")
                or dir_rel.startswith(g.rstrip("/*"))
            ):
                return True
        return False

    def accepts(self, rel: str, size: int) -> str | None:
        """Why a single file (e.g. an open editor buffer) is left out, or None."""
        reason = self.path_skip_reason(rel, False)
        if reason is None and size > self.max_file_bytes:
            return "too_large"
        return reason

    def scan(self) -> ScanResult:
        if not self.root.is_dir():
            raise WorkspaceError(f"{self.root}: not a folder")
        result = ScanResult(self.root)
        self._walk(self.root, "", self._base_stack(), result, forced=False)
        result.files.sort(key=lambda f: f.rel)
        return result

    def _walk(
        self, dir_path: Path, dir_rel: str, stack: _IgnoreStack, result: ScanResult, forced: bool
    ) -> None:
        try:
            entries = list(os.scandir(dir_path))
        except OSError:
            result.skip(f"{dir_rel}/" if dir_rel else "./", "unreadable")
            return
        for entry in entries:
            rel = f"{dir_rel}/{entry.name}" if dir_rel else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                is_link = entry.is_symlink()
            except OSError:
                result.skip(rel, "unreadable")
                continue
            if is_link:
                # Links are skipped: they loop, and point outside the workspace.
                continue
            reason = self.path_skip_reason(rel, is_dir, stack)
            if is_dir:
                if reason is None:
                    self._walk(
                        Path(entry.path), rel, stack.child(rel, Path(entry.path)), result, forced
                    )
                elif self.include is not None and self._may_reinclude_below(rel):
                    self._walk(Path(entry.path), rel, stack, result, forced=True)
                else:
                    result.skip(f"{rel}/", reason)
                continue
            if forced and (self.include is None or not self.include.match_file(rel)):
                continue
            if reason is not None:
                result.skip(rel, reason)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                result.skip(rel, "unreadable")
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size > self.max_file_bytes:
                result.skip(rel, "too_large")
                continue
            if st.st_size == 0:
                continue
            result.files.append(FileEntry(rel, Path(entry.path), st.st_size, st.st_mtime_ns))
