"""Two processes on one index; prints one JSON object.

Measures, with the CLI as separate processes (``tests/fake_cli.py``: the fake
embedder, slowed to ``--delay`` seconds a text, about the default model's
speed on the reference machine):

* ``search_during_index_s``: wall time of ``kenning search`` (process start
  included) while another process's ``kenning index`` is embedding the
  workspace, and how many texts the searches embedded themselves
  (``search_embedded``; each would also be embedded by the index run);
* ``search_alone_s``: the same search on the finished index, for comparison;
* ``small_write_ms``: how long an editor's small write (``Index.set_buffer``
  from this process, every 50 ms) takes while a cold ``kenning index`` of
  ``--files`` files runs: chunking, writing and embedding;
* ``embedded_twice``: texts embedded by more than one process in the whole run.

Run it against another checkout for a side-by-side figure:
``PYTHONPATH=/other/checkout/server python bench/bench_procs.py``.

    python bench/bench_procs.py [--files 1500] [--delay 0.02] [--searches 3] [--write-delay 0.0005]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAKE_CLI = [sys.executable, str(REPO / "tests" / "fake_cli.py")]
sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def vectors(db: Path) -> int:
    import apsw

    try:
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0])
        finally:
            conn.close()
    except apsw.Error:
        return 0


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))], 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1500)
    ap.add_argument("--search-files", type=int, default=150)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--searches", type=int, default=3)
    ap.add_argument("--write-delay", type=float, default=0.0005, help="embedding delay, part 2")
    args = ap.parse_args()

    from tests.index_checks import make_corpus

    import kenning
    from kenning.engine.workspace import Index, index_path
    from kenning.errors import KenningError

    tmp = Path(tempfile.mkdtemp(prefix="bench-procs-"))
    home = tmp / "home"
    embed_log = tmp / "embedded.log"
    env = dict(
        os.environ,
        KENNING_HOME=str(home),
        HF_HUB_OFFLINE="1",
        KENNING_FAKE_DELAY=str(args.delay),
        KENNING_FAKE_LOG=str(embed_log),
    )
    os.environ["KENNING_HOME"] = str(home)
    out: dict[str, object] = {"kenning": str(Path(kenning.__file__).parent), "delay": args.delay}

    # 1. Searches while another process indexes.
    ws = tmp / "ws"
    make_corpus(ws, args.search_files)
    db = index_path(ws.resolve(), home)
    indexer = subprocess.Popen(
        [*FAKE_CLI, "index", "--json", "--path", str(ws)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    while vectors(db) < 64:
        time.sleep(0.02)
    took: list[float] = []
    notes: list[str] = []
    for _ in range(args.searches):
        started = time.monotonic()
        p = subprocess.run(
            [*FAKE_CLI, "search", "handle request retries", "--json", "--path", str(ws)],
            env=env,
            capture_output=True,
            text=True,
        )
        took.append(time.monotonic() - started)
        if p.returncode == 0:
            notes += json.loads(p.stdout).get("notes", [])
        log(f"search during index: {took[-1]:.2f}s")
    overlapped = indexer.poll() is None
    indexer.wait()
    counts_by_pid = Counter(line.split()[0] for line in embed_log.read_text().splitlines())
    out["search_during_index_s"] = {
        "median": round(statistics.median(took), 2),
        "max": round(max(took), 2),
        "runs": [round(t, 2) for t in took],
        "index_still_running_after": overlapped,
    }
    out["search_embedded"] = sum(n for pid, n in counts_by_pid.items() if pid != str(indexer.pid))
    out["search_notes"] = sorted(set(notes))
    alone = []
    for _ in range(args.searches):
        started = time.monotonic()
        subprocess.run(
            [*FAKE_CLI, "search", "handle request retries", "--json", "--path", str(ws)],
            env=env,
            capture_output=True,
        )
        alone.append(time.monotonic() - started)
    out["search_alone_s"] = round(statistics.median(alone), 2)

    # 2. An editor's small writes during a cold index run.
    big = tmp / "big"
    make_corpus(big, args.files)
    target = big / "pkg0" / "mod0.py"
    base = target.read_text()
    editor = Index(big)
    db = index_path(big.resolve(), home)
    indexer = subprocess.Popen(
        [*FAKE_CLI, "index", "--json", "--path", str(big)],
        env=dict(env, KENNING_FAKE_DELAY=str(args.write_delay)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    waits: list[float] = []
    failed: list[str] = []
    n = 0
    while indexer.poll() is None:
        n += 1
        started = time.perf_counter()
        try:
            editor.set_buffer(target, base + f"\n\ndef typed_{n}(x):\n    return x + {n}\n")
        except KenningError as exc:  # the index stayed locked past the busy timeout
            failed.append(str(exc).rpartition(": ")[2])
        waits.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    editor.close()
    report = json.loads(indexer.stdout.read() or b"{}") if indexer.stdout else {}
    out["small_write_ms"] = {
        "writes": len(waits),
        "failed": len(failed),
        "failures": sorted(set(failed)),
        "p50": pct(waits, 50),
        "p95": pct(waits, 95),
        "max": round(max(waits), 1) if waits else None,
        "index_run_s": report.get("took_s"),
        "files": args.files,
    }
    counts = Counter(line.split()[1] for line in embed_log.read_text().splitlines())
    out["embedded_twice"] = sum(1 for c in counts.values() if c > 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
