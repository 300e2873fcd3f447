"""How fast is chunking? Prints one JSON object on stdout.

Corpus (default): the installed site-packages' .py files, plus every other language
from the test samples, each sample multiplied into files of realistic size with
renamed symbols. `--dir DIR` chunks the text files under DIR instead.

    PYTHONPATH=server python3 bench/bench_chunking.py [--limit N] [--dir DIR]

Single-threaded on purpose: tree-sitter holds the GIL while it parses, so this is the
per-core rate; the indexing pipeline multiplies it by its worker processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import site
import statistics
import sys
import sysconfig
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from kenning.engine.chunking import chunk_text, detect_language  # noqa: E402


def site_packages_files(limit: int) -> list[tuple[str, str]]:
    roots = {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}
    paths: list[Path] = []
    for root in sorted(roots):
        if os.path.isdir(root):
            paths.extend(sorted(Path(root).rglob("*.py")))
    random.Random(0).shuffle(paths)
    out = []
    for p in paths:
        if len(out) >= limit:
            break
        try:
            if p.stat().st_size > 1_000_000:
                continue  # the scanner's default maxFileBytes
            out.append((p.as_posix(), p.read_text("utf-8", errors="replace")))
        except OSError:
            continue
    return out


def sample_files(per_language: int) -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location(
        "chunking_samples", ROOT / "tests" / "unit" / "test_chunking.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = random.Random(1)
    out = []
    for language, (path, text) in sorted(module.SAMPLES.items()):
        if language == "python":
            continue  # site-packages has plenty of real Python
        stem, dot, ext = path.rpartition(".")
        # Rename the defined symbols in each copy so the copies stay valid code.
        names = {
            part
            for c in chunk_text(path, text)
            if c.symbol
            for part in re.findall(r"[A-Za-z_]\w+", c.symbol)
        }
        pattern = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b")
        for i in range(per_language):
            # 1-8 copies: files of 0.5-10 KB, like real ones.
            copies = [pattern.sub(rf"\g<1>{i}_{k}", text) for k in range(rng.randint(1, 8))]
            out.append((f"{stem}_{i}{dot}{ext}", "\n".join(copies)))
    return out


def dir_files(root: Path, limit: int) -> list[tuple[str, str]]:
    out = []
    for p in sorted(root.rglob("*")):
        if len(out) >= limit:
            break
        if not p.is_file() or detect_language(p.name) is None or p.stat().st_size > 1_000_000:
            continue
        raw = p.read_bytes()
        if b"\0" in raw[:8192]:
            continue
        out.append((p.relative_to(root).as_posix(), raw.decode("utf-8", errors="replace")))
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=3000, help="site-packages files (default 3000)")
    ap.add_argument(
        "--per-language",
        type=int,
        default=100,
        help="generated files per non-Python sample language (default 100)",
    )
    ap.add_argument("--dir", type=Path, help="chunk the files under DIR instead")
    args = ap.parse_args()

    if args.dir:
        corpus = dir_files(args.dir, args.limit)
    else:
        corpus = site_packages_files(args.limit) + sample_files(args.per_language)
    for path, text in corpus[:50]:  # warm up: parser creation is once per thread
        chunk_text(path, text)

    # CPU time per file as well as wall time: on a shared machine the wall clock
    # also counts other processes' turns on the cores.
    times: list[float] = []
    cpu_times: list[float] = []
    per_lang: dict[str, list[float]] = defaultdict(list)
    n_chunks = 0
    n_bytes = 0
    kinds: dict[str, int] = defaultdict(int)
    start = time.perf_counter()
    cpu_start = time.thread_time()
    for path, text in corpus:
        c0 = time.thread_time()
        t0 = time.perf_counter()
        chunks = chunk_text(path, text)
        dt = time.perf_counter() - t0
        cpu_times.append(time.thread_time() - c0)
        times.append(dt)
        n_chunks += len(chunks)
        n_bytes += len(text.encode("utf-8", "surrogatepass"))
        per_lang[chunks[0].language if chunks else "empty"].append(dt)
        for c in chunks:
            kinds[c.kind] += 1
    total = time.perf_counter() - start
    cpu_total = time.thread_time() - cpu_start
    times.sort()
    cpu_times.sort()
    result = {
        "files": len(corpus),
        "bytes": n_bytes,
        "chunks": n_chunks,
        "seconds": round(total, 3),
        "files_per_s": round(len(corpus) / total, 1),
        "mb_per_s": round(n_bytes / total / 1e6, 2),
        "ms_per_file_p50": round(percentile(times, 0.50) * 1000, 3),
        "p95": round(percentile(times, 0.95) * 1000, 3),
        "p99": round(percentile(times, 0.99) * 1000, 3),
        "max_ms": round(times[-1] * 1000, 2),
        "cpu_seconds": round(cpu_total, 3),
        "files_per_cpu_s": round(len(corpus) / cpu_total, 1),
        "cpu_ms_per_file_p50": round(percentile(cpu_times, 0.50) * 1000, 3),
        "cpu_ms_p95": round(percentile(cpu_times, 0.95) * 1000, 3),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "kinds": dict(sorted(kinds.items())),
        "by_language": {
            lang: {"files": len(ts), "ms_p50": round(statistics.median(ts) * 1000, 3)}
            for lang, ts in sorted(per_lang.items())
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
