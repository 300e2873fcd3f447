"""kill -9 at random moments of index runs: the CLI's ``kenning index`` and a
language server taking edits while it indexes.

After every kill the index opens as it is (not moved aside and rebuilt), is
consistent (see ``tests/index_checks.py``), and one more run makes it the same
as an index built in one go from the same files: the same file rows, chunks,
digests and vectors. Between kills the files on disk change (edits, new files,
deletions, renames) or the index is wiped, so that the runs have work to be
killed in. The fake embedder, slowed down, stands in for the model.

The short version runs with the suite; ``pytest -m slow`` runs the 20-kill
soak. KENNING_SOAK_SEED replays a run (each failure message names its seed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FakeEmbedder
from tests.index_checks import make_corpus, problems, snapshot

from kenning.engine.workspace import Index, index_path

TESTS = Path(__file__).resolve().parent.parent
FAKE_CLI = [sys.executable, str(TESTS / "fake_cli.py")]
FAKE_SERVER = [sys.executable, str(TESTS / "e2e" / "fake_server.py")]


def frame(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class EditingServer:
    """A language server on ``root`` and an editor that keeps changing buffers.

    Only writes to the server (its answers go nowhere): the soak needs the
    server busy indexing and taking edits, not its replies.
    """

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            FAKE_SERVER,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.version = 0
        self.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "processId": os.getpid(),
                    "rootUri": root.as_uri(),
                    "capabilities": {},
                    "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                },
            }
        )
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, msg: dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(frame(msg))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # killed: the soak goes on

    def edit(self, rng: random.Random) -> None:
        """Open a file (or a new one) and replace its buffer with changed text."""
        files = sorted(self.root.rglob("*.py"))
        path = rng.choice(files) if files and rng.random() < 0.8 else self.root / "scratch.py"
        uri = path.as_uri()
        text = path.read_text() if path.exists() else ""
        self.version += 1
        if self.version % 3 == 1:
            self.send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {
                        "textDocument": {
                            "uri": uri,
                            "languageId": "python",
                            "version": self.version,
                            "text": text,
                        }
                    },
                }
            )
        n = rng.randrange(1000)
        new = text + f"\n\ndef edited_{n}(x):\n    return x * {n}\n"
        self.send(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didChange",
                "params": {
                    "textDocument": {"uri": uri, "version": self.version},
                    "contentChanges": [{"text": new}],
                },
            }
        )


def children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True)
    return out.stdout.split()


def change_files(root: Path, rng: random.Random, round_: int) -> None:
    """Edit, add, delete and rename a few files on disk."""
    files = sorted(root.rglob("*.py"))
    for path in rng.sample(files, min(len(files), 6)):
        if not path.exists():
            continue
        action = rng.choice(["edit", "edit", "delete", "rename"])
        if action == "edit":
            path.write_text(
                path.read_text() + f"\n\ndef changed_{round_}(y):\n    return y - {round_}\n"
            )
        elif action == "delete":
            path.unlink()
        else:
            path.rename(path.with_name(f"renamed_{round_}_{path.name}"))
    make_corpus(root / f"new{round_}", 2, tag=f"_r{round_}")


def wipe(home: Path) -> None:
    """No index and no embedding cache: the next run is a first index."""
    shutil.rmtree(home / "indexes", ignore_errors=True)
    shutil.rmtree(home / "cache", ignore_errors=True)


def reference(work: Path, tmp: Path) -> dict[str, list[tuple[object, ...]]]:
    """The index an uninterrupted run builds from the same files."""
    copy = tmp / "reference"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(work, copy)
    index = Index(copy, embedder=FakeEmbedder())
    index.refresh()
    index.close()
    return snapshot(index_path(copy.resolve()))


def soak(tmp_path: Path, home: Path, kills: int, files: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    work = tmp_path / "ws"
    make_corpus(work, files)
    env = dict(os.environ, KENNING_FAKE_DELAY="0.003", PYTHONUNBUFFERED="1")
    db = index_path(work.resolve())
    rounds: list[dict[str, Any]] = []
    for round_ in range(kills):
        if round_ and rng.random() < 0.4:
            wipe(home)
        else:
            change_files(work, rng, round_)
        kind = "cli" if round_ % 2 == 0 else "lsp"
        delay = rng.uniform(0.2, 4.0)
        started = time.monotonic()
        server: EditingServer | None = None
        if kind == "cli":
            proc = subprocess.Popen(
                [*FAKE_CLI, "index", "--path", str(work)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            pid = proc.pid
            time.sleep(delay)
        else:
            server = EditingServer(work, env)
            proc, pid = server.proc, server.pid
            while time.monotonic() - started < delay:
                server.edit(rng)
                time.sleep(rng.uniform(0.02, 0.3))
        left = children(pid)
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        record = {"round": round_, "kind": kind, "at_s": round(delay, 2), "finished": finished}
        rounds.append(record)
        where = f"seed {seed}, {record}"

        # Its worker processes go with it.
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{c}").exists() for c in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(Path(f"/proc/{c}").exists() for c in left), f"workers outlived: {where}"

        if db.exists():
            assert problems(db) == [], where
        index = Index(work, embedder=FakeEmbedder())
        assert not index.rebuilt, f"the index was damaged: {where}"
        index.refresh()
        index.close()
        assert problems(db) == [], where
        got, want = snapshot(db), reference(work, tmp_path)
        assert got["files"] == want["files"], where
        assert got["chunks"] == want["chunks"], where
        assert got == want, where
    return rounds


def _seed() -> int:
    return int(os.environ.get("KENNING_SOAK_SEED") or random.randrange(1 << 30))


def test_kill_soak_short(tmp_path: Path, kenning_home: Path) -> None:
    soak(tmp_path, kenning_home, kills=4, files=60, seed=_seed())


@pytest.mark.slow
def test_kill_soak(tmp_path: Path, kenning_home: Path) -> None:
    rounds = soak(tmp_path, kenning_home, kills=20, files=150, seed=_seed())
    # Most kills must land mid-run for the soak to mean anything.
    assert sum(not r["finished"] for r in rounds) >= 15, rounds
