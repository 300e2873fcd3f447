"""Indexing speed: cold scan+chunk, a cold index, no-op re-index, one-file edit.

``scan_chunk`` is the scan and the chunking alone, in the index run's own worker
processes; ``cold`` adds writing the index (SQLite, FTS5), inline and with one
worker process per core. Corpus: real source files copied from this Python
installation's site-packages (``--files N``), or any folder given with
``--corpus``. Embedding is left out (``embed=False``): it has its own benchmark.

This machine's CPU speed drifts by up to 40% within minutes (the same work took
1.6 to 2.3 ms of CPU per file in one afternoon): compare ``cpu_ms_per_file`` and
``cpu_busy`` as well as files/s, and run it more than once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

SOURCE_SUFFIXES = {".py", ".js", ".ts", ".md", ".c", ".h", ".rs", ".go", ".pyi"}


def build_corpus(dest: Path, files: int) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    copied = 0
    for src in sorted(site.rglob("*")):
        if copied >= files:
            break
        if src.suffix not in SOURCE_SUFFIXES:
            continue
        try:
            if not src.is_file() or src.stat().st_size > 200_000 or src.stat().st_size == 0:
                continue
            target = dest / f"d{copied // 200}" / f"{copied}_{src.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        except OSError:
            continue
        copied += 1
    return dest


def cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the index workers):
    a busy machine disturbs this much less than wall time."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    # Imported here, not at the top: the spawned indexing workers re-run this script's
    # top level, and should pay only for what they use (kenning.engine.prepare).
    from kenning.engine.prepare import prepare_files
    from kenning.engine.scan import FileJob
    from kenning.engine.workspace import Index

    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--corpus", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KENNING_HOME"] = str(Path(tmp) / "home")
        if args.corpus:
            # A copy: the one-file edit below must not touch the given folder.
            corpus = Path(shutil.copytree(args.corpus, Path(tmp) / "corpus"))
        else:
            corpus = build_corpus(Path(tmp) / "corpus", args.files)
        print(f"corpus ready: {corpus}", file=sys.stderr)
        # Scan and chunk alone, as the index run does them (same worker processes),
        # without writing: what the "cold scan+chunk" target names. The cold runs
        # below add the index writes (SQLite, FTS5).
        os.environ["KENNING_HOME"] = str(Path(tmp) / "home-scan")
        index = Index(corpus, workers=os.cpu_count() or 1)
        t, c = time.perf_counter(), cpu_s()
        todo = [FileJob(e) for e in index.scanner.scan().files]
        chunked = sum(1 for p in prepare_files(todo, index.workers) if p.action == "write")
        scan_chunk = (time.perf_counter() - t, cpu_s() - c)
        index.close()
        cold = {}
        for workers in (1, os.cpu_count() or 1):
            os.environ["KENNING_HOME"] = str(Path(tmp) / f"home-{workers}")
            index = Index(corpus, workers=workers)
            t, c = time.perf_counter(), cpu_s()
            report = index.refresh(embed=False)
            cold[workers] = (time.perf_counter() - t, cpu_s() - c, report)
            if workers == 1:
                index.close()
        noops = []
        for _ in range(3):
            t = time.perf_counter()
            noop = index.refresh(embed=False)
            noops.append(time.perf_counter() - t)
            assert noop.changed == 0
        # A file the index holds (a Python one if any), given one more line.
        victim = min(
            (p for p in corpus.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()),
            key=lambda p: (p.suffix != ".py", str(p)),
        )
        victim.write_text(victim.read_text() + "\n\ndef added_by_benchmark():\n    return 1\n")
        t = time.perf_counter()
        edit = index.refresh(embed=False)
        edit_s = time.perf_counter() - t
        size = index.store.size_bytes()
        index.close()
    first = cold[1][2]
    print(
        json.dumps(
            {
                "files": first.files,
                "chunks": first.chunks,
                "skipped": first.skipped,
                "scan_chunk": {
                    "workers": os.cpu_count() or 1,
                    "s": round(scan_chunk[0], 3),
                    # Per indexed file, as the cold runs count them; files found
                    # unfit on reading (binary, not UTF-8) are read but not counted.
                    "files_per_s": round(chunked / scan_chunk[0], 1),
                    "cpu_ms_per_file": round(1000 * scan_chunk[1] / chunked, 3),
                    "files_read": len(todo),
                },
                "cold": {
                    f"workers_{w}": {
                        "s": round(s, 3),
                        "files_per_s": round(r.files / s, 1),
                        "chunks_per_s": round(r.chunks / s, 1),
                        # All processes together; 2 cores at 100% give 2000 / this files/s.
                        "cpu_ms_per_file": round(1000 * cpu / r.files, 3),
                        # Share of the machine's cores kept busy: CPU seconds / (wall x cores).
                        "cpu_busy": round(cpu / s / (os.cpu_count() or 1), 2),
                    }
                    for w, (s, cpu, r) in cold.items()
                },
                "noop_reindex_s": round(min(noops), 3),
                "noop_reindex_s_max": round(max(noops), 3),
                "one_file_edit_s": round(edit_s, 3),
                "one_file_edit_changed": edit.changed,
                "index_mb": round(size / 1e6, 1),
                "targets": {
                    "scan_chunk files_per_s": ">= 1000",
                    "noop_reindex_s (10k files)": "< 2",
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
