"""Recall of the coarse vector pass on real embeddings; prints one JSON object.

``bench_search.py`` measures the sign-bit coarse pass on synthetic clustered
vectors. This measures it on what users have: real chunks (kenning's own
chunker over the Python files of this installation) embedded with the default
model, queried two ways: natural-language questions (the first line of a
docstring, embedded as a query) and code (a chunk's own vector, itself
excluded, as ``kenning similar`` does). Recall@10 is the share of the exact
top 10 (brute force over every vector) that ``VectorIndex.nearest`` returns,
at several index sizes, with the shipped candidate count and with others
(``pct1``: 1% of the index, the share the default keeps at 100k chunks).

    PYTHONPATH=server python3 bench/bench_recall.py [--chunks 12000] [--home DIR]

Embedding takes minutes on a 2-core CPU; ``--home`` keeps the embedding cache,
so a second run embeds nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from kenning.engine.chunking import chunk_text
from kenning.engine.embedder import load_embedder
from kenning.engine.store import Store
from kenning.engine.types import Chunk
from kenning.engine.vectors import EmbeddingCache, VectorIndex

_DOC = re.compile(r'^\s*(?:"""|\'\'\')\s*([A-Z][^\n"]{15,100})', re.MULTILINE)


def collect(limit: int) -> list[Chunk]:
    roots = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "test" in path.parts or "tests" in path.parts:
                continue
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if len(text) > 200_000:
                continue
            for ch in chunk_text(str(path), text, "python"):
                if ch.kind in ("function", "method", "class") and ch.digest not in seen:
                    seen.add(ch.digest)
                    chunks.append(ch)
                    if len(chunks) >= limit:
                        return chunks
    return chunks


def embed_all(chunks: list[Chunk], home: Path) -> tuple[np.ndarray, str, float]:
    emb = load_embedder(device="cpu", threads=os.cpu_count())
    cache = EmbeddingCache(home / "cache" / "embeddings.db")
    found = cache.get_many(emb.space, [c.digest for c in chunks])
    missing = [c for c in chunks if c.digest not in found]
    t = time.perf_counter()
    for start in range(0, len(missing), 256):
        part = missing[start : start + 256]
        vecs = emb.embed_documents([c.text for c in part])
        fresh = [(c.digest, vecs[i].astype(np.float32).tobytes()) for i, c in enumerate(part)]
        cache.put_many(emb.space, fresh)
        found.update(fresh)
        print(f"embedded {start + len(part)}/{len(missing)}", file=sys.stderr)
    took = time.perf_counter() - t
    matrix = np.stack([np.frombuffer(found[c.digest], dtype=np.float32) for c in chunks])
    return matrix, emb.space, took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=12000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--home", type=Path, default=None)
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp())
    os.environ["KENNING_HOME"] = str(home)
    chunks = collect(args.chunks)
    matrix, space, embed_s = embed_all(chunks, home)
    emb = load_embedder(device="cpu")
    rng = np.random.default_rng(0)
    questions = []
    for i in rng.permutation(len(chunks)):
        m = _DOC.search(chunks[i].text)
        if m:
            questions.append(m.group(1).strip())
        if len(questions) >= args.queries:
            break
    qvecs = np.stack([emb.embed_query(q) for q in questions])
    code_rows = rng.choice(len(chunks), args.queries, replace=False)

    sizes = sorted({s for s in (len(chunks) // 4, len(chunks) // 2, len(chunks)) if s >= 1000})
    report: dict[str, object] = {
        "model": space,
        "chunks": len(chunks),
        "embed_s_this_run": round(embed_s, 1),
        "questions": len(questions),
        "sizes": [],
    }
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "index.db")
            vectors = VectorIndex(store)
            vectors.ensure_model(space, matrix.shape[1])
            by_file: dict[str, list[Chunk]] = {}
            for i, ch in enumerate(chunks[:n]):
                by_file.setdefault(f"f{i // 50}.py", []).append(ch)
            for rel, group in by_file.items():
                store.write_file(rel, 1, 1, rel, "python", group)
            ids = np.array(
                [r[0] for r in store.reader().execute("SELECT id FROM chunks ORDER BY id")]
            )
            vectors.write(ids.tolist(), matrix[:n])
            sub = matrix[:n]
            default = max(256, 80, n // 100)
            row: dict[str, object] = {"chunks": n, "candidates_default": default}
            # At 100k chunks and more the default is 1% of the index; "pct1"
            # rescores 1% here too, to see that regime on the real vectors.
            variants = (
                ("default", None),
                ("pct1", max(10, n // 100)),
                ("x2", 2 * default),
                ("x4", 4 * default),
            )
            for name, cands in variants:
                rq, rc = [], []
                for q in qvecs:
                    exact = set(ids[np.argsort(-(sub @ q))[:10]].tolist())
                    got = {cid for cid, _ in vectors.nearest(q, 10, candidates=cands)}
                    rq.append(len(exact & got) / 10)
                for r in code_rows[code_rows < n]:
                    q = sub[r]
                    order = [i for i in np.argsort(-(sub @ q))[:11] if i != r][:10]
                    exact = set(ids[order].tolist())
                    got = {
                        cid
                        for cid, _ in vectors.nearest(
                            q, 10, exclude=[int(ids[r])], candidates=cands
                        )
                    }
                    rc.append(len(exact & got) / 10)
                row[f"recall_at_10_questions_{name}"] = round(float(np.mean(rq)), 4)
                row[f"recall_at_10_code_{name}"] = round(float(np.mean(rc)), 4)
            report["sizes"].append(row)  # type: ignore[attr-defined]
            store.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
