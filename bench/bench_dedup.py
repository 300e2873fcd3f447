"""Benchmark near-duplicate detection; prints one JSON object on stdout.

    PYTHONPATH=server python3 bench/bench_dedup.py [--chunks 100000] [--queries 2000]

The corpus is synthetic but shaped like real code: a few hundred seed
functions, generated from a statement grammar in three syntaxes (Python,
C-like, Go-like), each copied a Zipf-distributed number of times with renamed
identifiers, new literals, reformatting and inserted, deleted or swapped
statements; the rest are unique functions from the same grammar, which share
the seeds' vocabulary and so make realistic false candidates. Embedding
vectors are simulated: a direction per family plus noise, random for unique
functions.

Targets: LSH near-duplicate query per chunk under 1 ms; clustering 100k
chunks (``kenning patterns``, signatures already stored) under 60 s.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections import Counter

import numpy as np

from kenning.engine.dedup import DuplicateIndex, code_tokens, find_clusters, minhash

NAMES = [
    "data",
    "items",
    "result",
    "value",
    "key",
    "name",
    "path",
    "config",
    "user",
    "request",
    "response",
    "count",
    "total",
    "index",
    "buffer",
    "node",
    "parent",
    "child",
    "entry",
    "record",
    "row",
    "column",
    "token",
    "line",
    "text",
    "payload",
    "options",
    "context",
    "state",
    "cache",
    "handler",
    "client",
    "session",
    "query",
    "limit",
    "offset",
    "size",
    "start",
    "stop",
    "width",
    "height",
    "score",
    "weight",
    "label",
    "target",
    "source",
    "output",
    "message",
    "error",
]
METHODS = [
    "get",
    "set",
    "append",
    "update",
    "pop",
    "read",
    "write",
    "close",
    "open",
    "send",
    "parse",
    "load",
    "dump",
    "split",
    "join",
    "strip",
    "lower",
    "encode",
    "decode",
    "find",
    "match",
    "render",
    "flush",
    "reset",
    "apply",
    "run",
    "wait",
]
FUNCS = [
    "len",
    "str",
    "int",
    "float",
    "sorted",
    "list",
    "dict",
    "max",
    "min",
    "sum",
    "any",
    "all",
    "isinstance",
    "print",
]


class Grammar:
    """Random function bodies as a nested statement list, rendered per syntax."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def name(self) -> str:
        return self.rng.choice(NAMES)

    def expr(self, depth: int = 0) -> str:
        r = self.rng.random()
        if depth > 1 or r < 0.25:
            return self.rng.choice([self.name(), str(self.rng.randint(0, 999)), '"lit"'])
        if r < 0.45:
            return f"{self.name()}.{self.rng.choice(METHODS)}({self.expr(depth + 1)})"
        if r < 0.6:
            op = self.rng.choice(["+", "-", "*", "/", "%"])
            return f"{self.expr(depth + 1)} {op} {self.expr(depth + 1)}"
        if r < 0.75:
            args = ", ".join(self.expr(depth + 1) for _ in range(self.rng.randint(1, 3)))
            return f"{self.rng.choice(FUNCS)}({args})"
        if r < 0.87:
            return f"{self.name()}[{self.expr(depth + 1)}]"
        return f"{self.name()}.{self.name()}"

    def cond(self) -> str:
        op = self.rng.choice(["==", "!=", "<", ">", "<=", ">="])
        return f"{self.expr(1)} {op} {self.expr(1)}"

    def stmt(self, depth: int = 0) -> tuple:
        r = self.rng.random()
        if depth < 2 and r < 0.14:
            return (
                "if",
                self.cond(),
                self.block(depth + 1),
                self.block(depth + 1) if r < 0.05 else None,
            )
        if depth < 2 and r < 0.24:
            return ("for", self.name(), self.expr(1), self.block(depth + 1))
        if depth < 2 and r < 0.28:
            return ("while", self.cond(), self.block(depth + 1))
        if depth < 2 and r < 0.32:
            return ("try", self.block(depth + 1), self.block(depth + 1))
        if r < 0.45:
            return ("call", f"{self.name()}.{self.rng.choice(METHODS)}({self.expr(1)})")
        if r < 0.5:
            return ("return", self.expr())
        return ("assign", self.name(), self.expr())

    def block(self, depth: int) -> list[tuple]:
        return [self.stmt(depth) for _ in range(self.rng.randint(1, 3))]

    def function(self) -> tuple[str, list[str], list[tuple]]:
        params = [self.name() for _ in range(self.rng.randint(1, 4))]
        body = [self.stmt() for _ in range(self.rng.randint(3, 10))]
        return self.name() + "_" + self.name(), params, body


def render(fn: tuple[str, list[str], list[tuple]], syntax: str, rng: random.Random) -> str:
    name, params, body = fn
    ind = rng.choice(["    ", "  ", "\t"])
    out: list[str] = []

    def emit(level: int, line: str) -> None:
        out.append(ind * level + line)

    def blk(level: int, stmts: list[tuple]) -> None:
        for s in stmts:
            one(level, s)

    def one(level: int, s: tuple) -> None:
        kind = s[0]
        if syntax == "python":
            if kind == "if":
                emit(level, f"if {s[1]}:")
                blk(level + 1, s[2])
                if s[3]:
                    emit(level, "else:")
                    blk(level + 1, s[3])
            elif kind == "for":
                emit(level, f"for {s[1]} in {s[2]}:")
                blk(level + 1, s[3])
            elif kind == "while":
                emit(level, f"while {s[1]}:")
                blk(level + 1, s[2])
            elif kind == "try":
                emit(level, "try:")
                blk(level + 1, s[1])
                emit(level, "except Exception as exc:")
                blk(level + 1, s[2])
            elif kind == "call":
                emit(level, s[1])
            elif kind == "return":
                emit(level, f"return {s[1]}")
            else:
                emit(level, f"{s[1]} = {s[2]}")
            if rng.random() < 0.05:
                emit(level, "# " + rng.choice(NAMES) + " " + rng.choice(NAMES))
            return
        semi = ";" if syntax == "c" else ""
        brace = " {" if rng.random() < 0.85 else "\n" + ind * level + "{"
        if kind == "if":
            cond = f"({s[1]})" if syntax == "c" else s[1]
            emit(level, f"if {cond}{brace}")
            blk(level + 1, s[2])
            if s[3]:
                emit(level, "} else {")
                blk(level + 1, s[3])
            emit(level, "}")
        elif kind == "for":
            head = f"(const {s[1]} of {s[2]})" if syntax == "c" else f"_, {s[1]} := range {s[2]}"
            emit(level, f"for {head}{brace}")
            blk(level + 1, s[3])
            emit(level, "}")
        elif kind == "while":
            emit(level, f"while ({s[1]}){brace}" if syntax == "c" else f"for {s[1]}{brace}")
            blk(level + 1, s[2])
            emit(level, "}")
        elif kind == "try":
            emit(level, "try {" if syntax == "c" else "if err := func() error {")
            blk(level + 1, s[1])
            emit(level, "} catch (err) {" if syntax == "c" else "}(); err != nil {")
            blk(level + 1, s[2])
            emit(level, "}")
        elif kind == "call":
            emit(level, s[1] + semi)
        elif kind == "return":
            emit(level, f"return {s[1]}{semi}")
        else:
            emit(
                level,
                f"{'let ' if syntax == 'c' else ''}{s[1]} {'=' if syntax == 'c' else ':='} {s[2]}{semi}",
            )
        if rng.random() < 0.05:
            emit(level, "// " + rng.choice(NAMES) + " " + rng.choice(NAMES))

    if syntax == "python":
        emit(0, f"def {name}({', '.join(params)}):")
    elif syntax == "c":
        emit(0, f"function {name}({', '.join(params)}) {{")
    else:
        emit(0, f"func {name}({', '.join(p + ' any' for p in params)}) any {{")
    blk(1, body)
    if syntax != "python":
        emit(0, "}")
    return "\n".join(out) + "\n"


_WORD = re.compile(r"[A-Za-z_]\w*|\d+")


def rename(stmts: list[tuple], mapping: dict[str, str], rng: random.Random) -> list[tuple]:
    def sub(m: re.Match[str]) -> str:
        w = m.group(0)
        return str(rng.randint(0, 999)) if w.isdigit() else mapping.get(w, w)

    def fix(x: object) -> object:
        if isinstance(x, str):
            return _WORD.sub(sub, x)
        if isinstance(x, list):
            return [fix(y) for y in x]
        if isinstance(x, tuple):
            return tuple(fix(y) for y in x)
        return x

    return fix(stmts)  # type: ignore[return-value]


def mutate(fn: tuple, grammar: Grammar, rng: random.Random) -> tuple:
    """A copy as people make them: renamed, sometimes edited a little."""
    _name, params, body = fn
    renamed = set(params) | set(rng.sample(NAMES, len(NAMES) // 3))
    mapping = {n: rng.choice(NAMES) + rng.choice(["", "s", "_2", "Val"]) for n in renamed}
    body = rename(list(body), mapping, rng)
    params = [mapping[p] for p in params]
    edits = rng.choice([0, 0, 1, 1, 2])
    for _ in range(edits):
        op = rng.random()
        if op < 0.45:
            body.insert(rng.randint(0, len(body)), grammar.stmt(1))
        elif op < 0.7 and len(body) > 3:
            body.pop(rng.randrange(len(body)))
        elif len(body) > 2:
            i = rng.randrange(len(body) - 1)
            body[i], body[i + 1] = body[i + 1], body[i]
    return grammar.name() + "_" + grammar.name(), params, body


def corpus(n: int, seeds: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """Texts and their family (-1 for unique functions)."""
    grammar = Grammar(rng)
    syntaxes = ["python", "c", "go"]
    texts: list[str] = []
    family: list[int] = []
    budget = int(n * 0.3)  # 30% of chunks are copies of something
    weights = [1 / (i + 1) ** 1.1 for i in range(seeds)]
    scale = budget / sum(weights)
    for f in range(seeds):
        base = grammar.function()
        syntax = syntaxes[f % 3]
        # Capped: a workspace with thousands of copies of one function exists
        # (generated stubs) but is not the common case this measures.
        for _ in range(min(1000, max(2, int(weights[f] * scale)))):
            texts.append(render(mutate(base, grammar, rng), syntax, rng))
            family.append(f)
    while len(texts) < n:
        texts.append(render(grammar.function(), rng.choice(syntaxes), rng))
        family.append(-1)
    return texts[:n], family[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(42)

    t = time.perf_counter()
    texts, family = corpus(args.chunks, args.seeds, rng)
    print(f"corpus: {len(texts)} chunks in {time.perf_counter() - t:.1f}s", file=sys.stderr)

    t, c = time.perf_counter(), time.process_time()
    sigs = [minhash(text) for text in texts]
    sig_s, sig_cpu = time.perf_counter() - t, time.process_time() - c
    keys = [k for k, s in enumerate(sigs) if s is not None]
    present = [sigs[k] for k in keys]
    print(f"signatures: {sig_s:.1f}s, {len(keys)} with a signature", file=sys.stderr)

    # Simulated embeddings: one direction per family, close copies; unique
    # functions random. 384 dimensions like the default model.
    vrng = np.random.default_rng(7)
    dims = 384
    centres = vrng.standard_normal((args.seeds, dims)).astype(np.float32)
    vectors = vrng.standard_normal((len(texts), dims)).astype(np.float32)
    fam = np.asarray(family)
    copies = fam >= 0
    vectors[copies] = centres[fam[copies]] + 0.25 * vectors[copies]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors[keys]

    t = time.perf_counter()
    index = DuplicateIndex()
    for k, s in zip(keys, present, strict=True):
        index.add(k, s)
    add_s = time.perf_counter() - t

    qrng = random.Random(1)
    times = []
    # CPU time of the querying thread: on a shared 2-core machine wall-clock
    # percentiles include time spent descheduled.
    cpu: list[float] = []
    few = []  # queries with at most 100 results: the cost without a huge result list
    hits = 0
    for k in qrng.sample(keys, min(args.queries, len(keys))):
        s = sigs[k]
        t, c = time.perf_counter(), time.thread_time()
        found = index.query(s, exclude=k)  # type: ignore[arg-type]
        took = (time.perf_counter() - t) * 1e3
        cpu.append((time.thread_time() - c) * 1e3)
        times.append(took)
        if len(found) <= 100:
            few.append(took)
        hits += bool(found)
    times.sort()
    few.sort()
    cpu.sort()

    t, c = time.perf_counter(), time.process_time()
    clusters = find_clusters(keys, present, vectors=vectors)
    patterns_s, patterns_cpu = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    clusters_sig_only = find_clusters(keys, present)
    patterns_sig_only_s = time.perf_counter() - t

    def quality(found: list) -> dict[str, float]:
        # Purity: members that share the cluster's majority family. Recall:
        # copies that landed in a cluster holding others of their family.
        pure = total = recalled = 0
        for c in found:
            members = [c.canonical, *(m.key for m in c.members)]
            fams = Counter(family[m] for m in members)
            top, count = fams.most_common(1)[0]
            pure += count if top >= 0 else 0
            total += len(members)
            recalled += sum(n for f, n in fams.items() if f >= 0 and n >= 2)
        return {
            "purity": round(pure / max(1, total), 4),
            "recall": round(recalled / max(1, int(copies.sum())), 4),
        }

    result = {
        "chunks": len(texts),
        "with_signature": len(keys),
        "tokens_per_chunk_mean": round(
            statistics.fmean(len(code_tokens(t)) for t in texts[::50]), 1
        ),
        "signature_per_chunk_ms": round(sig_s / len(texts) * 1e3, 4),
        "signature_per_chunk_cpu_ms": round(sig_cpu / len(texts) * 1e3, 4),
        "lsh_add_per_chunk_ms": round(add_s / len(keys) * 1e3, 4),
        "lsh_query_ms_p50": round(statistics.median(times), 4),
        "p95": round(times[int(0.95 * (len(times) - 1))], 4),
        "lsh_query_cpu_ms_p50": round(statistics.median(cpu), 4),
        "lsh_query_cpu_ms_p95": round(cpu[int(0.95 * (len(cpu) - 1))], 4),
        "p95_under_100_results": round(few[int(0.95 * (len(few) - 1))], 4) if few else None,
        "queries_with_hits": hits,
        "patterns_100k_s": round(patterns_s, 2),
        "patterns_100k_cpu_s": round(patterns_cpu, 2),
        "clusters": len(clusters),
        "largest_cluster": clusters[0].size if clusters else 0,
        "split_clusters": sum(1 for c in clusters if c.children),
        "quality": quality(clusters),
        "patterns_100k_signatures_only_s": round(patterns_sig_only_s, 2),
        "clusters_signatures_only": len(clusters_sig_only),
        "quality_signatures_only": quality(clusters_sig_only),
        "families": args.seeds,
        "copies": int(copies.sum()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
