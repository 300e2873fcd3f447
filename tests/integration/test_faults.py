"""Damaged files under KENNING_HOME and a KENNING_HOME that cannot be used.

Every case ends one of two ways: a silent repair that says so in exactly one
warning line (the damaged file moved aside, a new one made), or one clear
error line and exit 1. Never a traceback; and then a search works.

Every kind of damage to every kind of file is checked in this process, where
it costs little; the CLI then runs as a subprocess, with the real model, for
what a user sees: one case per file (the kinds of damage in turn), and each
way a home can be unusable.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import FakeEmbedder, write_tree

from kenning.engine import models
from kenning.engine.templates import TemplateLibrary
from kenning.engine.workspace import Index

QUERY = "read a json config file"
FILES = {
    "src/config.py": '''
        import json


        def load_config(path):
            """Read a JSON config file and return it as a dict."""
            with open(path) as fh:
                return json.load(fh)
        ''',
    "src/users.py": """
        def sort_users_by_age(users):
            return sorted(users, key=lambda u: u.age)
        """,
    "src/mail.py": """
        def send_welcome_email(user, smtp):
            smtp.send(user.email, "Welcome aboard", body=f"Hello {user.name}")
        """,
}


def kenning(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KENNING_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "kenning", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def search(ws: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # By default stderr holds warnings only, so a repair's warning is all there is to see.
    return kenning("search", QUERY, "--json", "--path", str(ws), home=home)


def search_a_clone(ws: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Search a new copy of the workspace: its chunks come from the embedding cache."""
    n = len(list(home.parent.glob("clone-*")))
    clone = shutil.copytree(ws, home.parent / f"clone-{n}" / ws.name)
    return search(clone, home)


def match(ws: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return kenning("templates", "match", "src/config.py:5", "--json", "--path", str(ws), home=home)


def no_traceback(out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr


def found(out: subprocess.CompletedProcess[str]) -> list[str]:
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    if "matches" in data:
        return [m["id"] for m in data["matches"]]
    return [r["path"] for r in data["results"]]


# What the healthy home answers, by command.
EXPECTED: dict[Callable[..., subprocess.CompletedProcess[str]], list[str]] = {}


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory, derived_models: Path) -> tuple[Path, Path]:
    """A workspace and a home holding every kind of file kenning keeps there."""
    ws = write_tree(tmp_path_factory.mktemp("faults") / "ws", FILES)
    home = tmp_path_factory.mktemp("golden-home")
    (home / "models").mkdir()
    (home / "models" / "derived").symlink_to(derived_models, target_is_directory=True)
    EXPECTED[search] = found(search(ws, home))
    assert EXPECTED[search][0] == "src/config.py"
    EXPECTED[match] = found(match(ws, home))
    assert EXPECTED[match]
    for owned in ("indexes/*/index.db", "cache/embeddings.db", "models/verified.json"):
        assert list(home.glob(owned)), owned
    assert list(home.glob("templates-cache/*.npz"))
    return ws, home


def copy_home(golden_home: Path, dest: Path, private_derived: bool = False) -> Path:
    shutil.copytree(golden_home, dest, symlinks=True)
    if private_derived:
        # The derived folder is shared by the whole run; damage a copy of it.
        link = dest / "models" / "derived"
        shared = link.resolve()
        link.unlink()
        link.mkdir()
        for f in shared.iterdir():
            if f.name.endswith((".onnx", ".sha256")):
                shutil.copy(f, link / f.name)
    return dest


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif how == "garbage":
        path.write_bytes(os.urandom(max(len(data), 4096)))
    else:
        path.unlink()
        (path / "inside").mkdir(parents=True)


OWNED: dict[str, tuple[str, Callable[..., subprocess.CompletedProcess[str]]]] = {
    "index": ("indexes/*/index.db", search),
    # Only a run with something to embed opens the cache: a clone of the workspace.
    "embedding cache": ("cache/embeddings.db", search_a_clone),
    "verified model files": ("models/verified.json", search),
    # The default model's (other tests of the run may derive others into the shared folder).
    "derived int8 model": ("models/derived/all-minilm-l6-v2-int8-*-int8.onnx", search),
    "template vector cache": ("templates-cache/*.npz", match),
}


DAMAGES = ["truncated", "zeroed", "garbage", "folder"]


@pytest.mark.model
@pytest.mark.parametrize(
    ("what", "how"), [(w, DAMAGES[n % len(DAMAGES)]) for n, w in enumerate(OWNED)]
)
def test_the_cli_repairs_a_damaged_file_with_one_warning_line(
    golden: tuple[Path, Path], tmp_path: Path, what: str, how: str
) -> None:
    ws, golden_home = golden
    pattern, command = OWNED[what]
    expected = EXPECTED[match if command is match else search]
    home = copy_home(golden_home, tmp_path / "home", private_derived="derived" in what)
    (path,) = home.glob(pattern)
    damage(path, how)

    out = command(ws, home)
    no_traceback(out)
    assert found(out) == expected
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert "damaged" in lines[0] and "moved it aside" in lines[0] and path.name in lines[0]
    assert list(path.parent.glob(f"{path.name}.corrupt-*"))

    # Repaired for good: the next run finds nothing to say.
    again = command(ws, home)
    assert found(again) == expected and again.stderr == "", again.stderr
    if "derived" in what:
        # Derived again in the same run: the index stays in the int8 vector space.
        status = kenning("status", "--json", "--path", str(ws), home=home)
        assert json.loads(status.stdout)["precision"] == "int8"


@pytest.mark.model
def test_a_file_where_a_folder_belongs_is_moved_aside(
    golden: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, golden_home = golden
    home = copy_home(golden_home, tmp_path / "home")
    shutil.rmtree(home / "indexes")
    (home / "indexes").write_text("not a folder")
    out = search(ws, home)
    no_traceback(out)
    assert found(out)[0] == "src/config.py"
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "indexes" in lines[0] and "moved it aside" in lines[0], out.stderr
    assert search(ws, home).stderr == ""


def _home_is_a_file(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.write_text("")
    return home


def _home_under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "home"


def _home_under_a_read_only_folder(tmp_path: Path) -> Path:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return parent / "home"


def _home_read_only(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return home


UNUSABLE = {
    "a file": (_home_is_a_file, "is a file, not a folder"),
    "under a file": (_home_under_a_file, "cannot create"),
    "under a read-only folder": (_home_under_a_read_only_folder, "cannot create"),
    "read-only": (_home_read_only, "is not writable"),
}
_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.model
@pytest.mark.parametrize("case", list(UNUSABLE))
def test_an_unusable_home_is_one_line_and_exit_1(
    golden: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    make, message = UNUSABLE[case]
    if "read-only" in case and _ROOT:
        pytest.skip("root writes through read-only modes")
    ws, golden_home = golden
    home = make(tmp_path)
    try:
        for args in (["search", QUERY], ["status"]):
            out = kenning(*args, "--path", str(ws), home=home)
            no_traceback(out)
            assert out.returncode == 1 and out.stdout == "", (args, out.stderr)
            lines = out.stderr.splitlines()
            assert len(lines) == 1, (args, out.stderr)
            assert lines[0].startswith("kenning: error: ") and message in lines[0], lines[0]
            assert "KENNING_HOME" in lines[0] and str(home) in lines[0]
    finally:
        for p in (tmp_path / "ro", tmp_path / "home"):
            if p.is_dir():
                p.chmod(stat.S_IRWXU)
    # With the home fixed, the same search works.
    good = copy_home(golden_home, tmp_path / "fixed")
    assert found(search(ws, good))[0] == "src/config.py"


# -- every damage to every file, in this process ---------------------------------


def _index_case(root: Path, home: Path) -> Callable[[], list[str]]:
    Index(root, embedder=FakeEmbedder()).refresh()

    def again() -> list[str]:
        index = Index(root, embedder=FakeEmbedder())
        assert index.rebuilt
        index.refresh()
        return [h.path for h in index.search(QUERY).results]

    return again


def _cache_case(root: Path, home: Path) -> Callable[[], list[str]]:
    Index(root, embedder=FakeEmbedder()).refresh()

    def again() -> list[str]:
        clone = shutil.copytree(root, root.parent / "clone")
        index = Index(clone, embedder=FakeEmbedder())
        report = index.refresh()
        assert report.embedded == report.chunks  # the damaged cache gave nothing back
        assert index.cache.rebuilt
        hits = index.search(QUERY).results
        assert hits[0].explain["similarity"] is not None
        return [h.path for h in hits]

    return again


def _verified_case(root: Path, home: Path) -> Callable[[], list[str]]:
    models.resolve()
    assert (home / "models" / "verified.json").is_file()

    def again() -> list[str]:
        resolved = models.resolve()
        record = json.loads((home / "models" / "verified.json").read_text())
        assert str(resolved.model_path.resolve()) in record
        return [resolved.model_id]

    return again


def _templates_case(root: Path, home: Path) -> Callable[[], list[str]]:
    TemplateLibrary(root, embedder=FakeEmbedder()).warm()

    def again() -> list[str]:
        library = TemplateLibrary(root, embedder=FakeEmbedder())
        library.warm()
        assert list((home / "templates-cache").glob("*.npz"))
        return [m.template.id for m in library.match(FILES["src/config.py"], "python")]

    return again


IN_PROCESS = {
    "index": ("indexes/*/index.db", _index_case),
    "embedding cache": ("cache/embeddings.db", _cache_case),
    "verified model files": ("models/verified.json", _verified_case),
    "template vector cache": ("templates-cache/*.npz", _templates_case),
}


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("what", list(IN_PROCESS))
def test_every_damage_to_every_file_is_repaired_with_one_warning(
    tmp_path: Path, kenning_home: Path, caplog: pytest.LogCaptureFixture, what: str, how: str
) -> None:
    pattern, case = IN_PROCESS[what]
    root = write_tree(tmp_path / "ws", FILES)
    again = case(root, kenning_home)
    healthy = again() if what in ("verified model files", "template vector cache") else None
    (path,) = kenning_home.glob(pattern)
    damage(path, how)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kenning"):
        answer = again()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "damaged" in warnings[0] and "moved it aside" in warnings[0]
    assert answer and (healthy is None or answer == healthy)
    if what in ("index", "embedding cache"):
        assert answer[0] == "src/config.py"
    assert list(path.parent.glob(f"{path.name}.corrupt-*"))
