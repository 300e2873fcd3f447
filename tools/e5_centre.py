"""The centre of multilingual-e5-small's passage vectors, from code that is not in any benchmark.

e5's vectors all lie in a narrow cone (two unrelated code chunks score cosine
0.7-0.9), so the sign bits of the coarse vector pass carry almost nothing and
kenning's fixed cosine calibration reads every hit as a strong one. Taking the
mean direction out (``normalize(v - centre)``) spreads them around the origin.
The centre is the mean of L2-normalised passage vectors of code chunks (20-line
windows) cut from the Python standard library, npm's own JavaScript and the Go
files on this machine, with a fixed seed.

    PYTHONPATH=server python tools/e5_centre.py MODEL_DIR OUT.npy [--texts 900]
"""

from __future__ import annotations

import argparse
import random
import sys
import sysconfig
from pathlib import Path

import numpy as np


def reference_texts(n: int, seed: int = 7) -> list[str]:
    roots = {
        "py": [Path(sysconfig.get_paths()["stdlib"])],
        "js": [Path("/usr/lib/node_modules")],
        "go": [Path("/usr/share"), Path("/usr/lib")],
    }
    rng = random.Random(seed)
    texts: list[str] = []
    per = n // len(roots)
    for ext, dirs in roots.items():
        files = sorted(p for d in dirs if d.is_dir() for p in d.rglob(f"*.{ext}") if p.is_file())
        rng.shuffle(files)
        got = 0
        for path in files:
            try:
                lines = path.read_text("utf-8").splitlines(keepends=True)
            except (OSError, UnicodeDecodeError):
                continue
            for start in range(0, max(1, len(lines) - 5), 20):
                piece = "".join(lines[start : start + 20])
                if len(piece.strip()) > 40 and len(piece) < 2000:
                    texts.append(piece)
                    got += 1
                if got >= per or (got > 0 and start > 200):
                    break
            if got >= per:
                break
    return texts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--texts", type=int, default=900)
    args = ap.parse_args()
    from kenning.engine.embedder import OnnxEmbedder
    from kenning.engine.models import resolve

    texts = reference_texts(args.texts)
    emb = OnnxEmbedder(resolve(str(args.model_dir)), device="cpu", precision="fp32")
    vecs = emb.embed_documents(texts)
    centre = vecs.mean(axis=0).astype(np.float32)
    np.save(args.out, centre)
    sims = vecs @ vecs.T
    off = sims[~np.eye(len(vecs), dtype=bool)]
    c = vecs - centre
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    coff = (c @ c.T)[~np.eye(len(vecs), dtype=bool)]
    print(
        f"{len(texts)} texts; |centre| {np.linalg.norm(centre):.3f}; pairwise cosine mean {off.mean():.3f} "
        f"(centred {coff.mean():.3f}), p5-p95 {np.percentile(off, 5):.3f}-{np.percentile(off, 95):.3f} "
        f"(centred {np.percentile(coff, 5):.3f}-{np.percentile(coff, 95):.3f})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
