"""Embedding throughput: kenning's batching against a plain one-by-one ONNX loop.

All embed the same real code chunks (functions cut crudely at ``def`` from the
Python files of the standard library and site-packages) and keep the first
``max_tokens`` tokens of each chunk. The plain loop is what one would write
first: the shipped ``model.onnx`` in an ONNX Runtime session with the same
thread cap, one text per run. ``kenning`` is the real pipeline (on the CPU:
int8 matrix products where the card allows, one text per run on each core);
``kenning_fp32`` is the same pipeline on the fp32 graph, to separate the two
gains. ``cosine`` compares kenning's vectors with the plain loop's, which are
the model's own. Runs alternate and the best of ``--repeats`` is kept, since
other processes on a small machine make single timings noisy.

    PYTHONPATH=server python3 bench/bench_embed.py [--chunks 400] [--threads N]

Prints one JSON object. Targets: at least 5,000 tokens/s with the default
model, and at least 1.5x the plain loop.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kenning.engine.embedder import OnnxEmbedder, resolve_threads
from kenning.engine.models import resolve

_DEF = re.compile(r"^(?=[ \t]*(?:async[ \t]+)?def[ \t])", re.MULTILINE)


def collect_chunks(limit: int) -> list[str]:
    """Function-sized pieces of real Python code, in a stable order."""
    roots = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]
    chunks: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "test" in path.parts or path.name.startswith("test_"):
                continue
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            for piece in _DEF.split(text)[1:]:
                if 3 <= piece.count("\n") <= 200:
                    chunks.append(piece)
                    if len(chunks) >= limit:
                        return chunks
    return chunks


class PlainLoop:
    """What one would write first: tokenise a text, run it, pool, normalise, next."""

    def __init__(self, emb: OnnxEmbedder) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = emb.threads  # the same cap as kenning
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(emb.model.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.tok = Tokenizer.from_file(str(emb.model.tokenizer_path))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=emb.max_tokens)
        self.names = {i.name for i in self.session.get_inputs()}
        self.prefix = emb.model.card.document_prefix

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            enc = self.tok.encode(self.prefix + text)
            ids = np.array([enc.ids], dtype=np.int64)
            mask = np.ones_like(ids)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.names})[0]
            # A graph that pools by itself returns [batch, dims].
            vec = hidden[0] if hidden.ndim == 2 else hidden[0].mean(axis=0)
            rows.append(vec / np.linalg.norm(vec))
        return np.stack(rows).astype(np.float32)


def timed(
    fn: Callable[[list[str]], np.ndarray], texts: list[str]
) -> tuple[float, float, np.ndarray]:
    """Wall seconds, CPU seconds (all threads of this process) and the result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(texts)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="card id or folder (default: the default)")
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None, help="batch under this many tokens")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    texts = collect_chunks(args.chunks)
    model = resolve(args.model)
    threads = resolve_threads(args.threads)
    emb = OnnxEmbedder(model, device="cpu", threads=threads, token_budget=args.budget).load()
    fp32 = OnnxEmbedder(
        model, device="cpu", threads=threads, token_budget=args.budget, precision="fp32"
    ).load()
    plain = PlainLoop(emb)
    tokens = sum(emb.count_tokens(texts))
    # Warm all up (first runs allocate the arenas), then alternate.
    for fn in (emb.embed_documents, fp32.embed_documents, plain.embed):
        fn(texts[:16])
    k_runs, f_runs, p_runs = [], [], []
    for _ in range(args.repeats):
        k_runs.append(timed(emb.embed_documents, texts))
        f_runs.append(timed(fp32.embed_documents, texts))
        p_runs.append(timed(plain.embed, texts))
    k_best, k_cpu, k_out = min(k_runs, key=lambda r: r[0])
    f_best, f_cpu, f_out = min(f_runs, key=lambda r: r[0])
    p_best, p_cpu, p_out = min(p_runs, key=lambda r: r[0])
    cosine = (k_out * p_out).sum(axis=1)

    def side(seconds: float, cpu: float) -> dict[str, float]:
        return {
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1),
            "chunks_per_s": round(len(texts) / seconds, 1),
            # CPU time is less disturbed by other processes than wall time.
            "cpu_seconds": round(cpu, 3),
            "tokens_per_cpu_s": round(tokens / cpu, 1),
        }

    report = {
        "model": emb.model_id,
        "device": emb.device,
        "threads": emb.threads,
        "precision": emb.precision,
        "token_budget": emb.token_budget if args.budget else None,
        "chunks": len(texts),
        "tokens": tokens,
        "mean_tokens_per_chunk": round(tokens / len(texts), 1),
        "kenning": side(k_best, k_cpu),
        "kenning_fp32": side(f_best, f_cpu),
        "plain": side(p_best, p_cpu),
        "ratio": round(p_best / k_best, 2),
        "ratio_fp32": round(p_best / f_best, 2),
        "cosine": {"min": round(float(cosine.min()), 4), "mean": round(float(cosine.mean()), 4)},
        "fp32_max_abs_diff": float(np.abs(f_out - p_out).max()),
        "targets": {
            "tokens_per_s_5000": tokens / k_best >= 5000,
            "ratio_1_5": p_best / k_best >= 1.5,
        },
        "all_runs_s": {
            "kenning": [round(r[0], 3) for r in k_runs],
            "kenning_fp32": [round(r[0], 3) for r in f_runs],
            "plain": [round(r[0], 3) for r in p_runs],
        },
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
