"""Peak resident memory while indexing a 100k-chunk workspace.

Embedding 100k chunks with the real model takes about an hour on the 2-core
reference CPU, so the pipeline (scan, chunk, store, cache, vectors) runs with a
fast stand-in embedder of the default model's width, and the real model's own
footprint (session, arenas after its largest batch) is measured separately in
a fresh process. Their sum is the figure to hold under 500 MB.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from kenning.engine.embedder import EmbedStats
from kenning.engine.workspace import Index


class StandIn:
    model_id = "bench-standin-384"
    space = "bench-standin-384"
    dims = 384
    device = "cpu"
    max_tokens = 256

    def __init__(self) -> None:
        self.stats = EmbedStats()
        self.rng = np.random.default_rng(0)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), self.dims)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t) // 4 for t in texts]


def make_workspace(root: Path, files: int, functions: int) -> None:
    for f in range(files):
        d = root / f"pkg{f // 100}"
        d.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(
            textwrap.dedent(f'''
            def handle_{f}_{j}(request, retries={j}):
                """Handle request kind {j} for module {f}."""
                value = request.get("key_{j}") or {f * j}
                for attempt in range(retries):
                    value = transform_{j % 7}(value, attempt)
                return value
            ''').strip()
            for j in range(functions)
        )
        (d / f"mod{f}.py").write_text(body + "\n")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MODEL_PROBE = """
import json, re
from kenning.engine.embedder import load_embedder

def peak_mb():
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child started by a
    # big parent would report the parent's peak as its own.
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1)) / 1024

before = peak_mb()
e = load_embedder(threads=2)
e.embed_documents(["def f(x):\\n    return x * 2 " * 40] * 64)  # the largest batches
after = peak_mb()
print(json.dumps({"python_mb": round(before, 1), "with_model_mb": round(after, 1)}))
"""


def main() -> None:
    files, functions = 10_000, 10
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KENNING_HOME"] = str(Path(tmp) / "home")
        root = Path(tmp) / "ws"
        make_workspace(root, files, functions)
        start = rss_mb()
        index = Index(root, embedder=StandIn())
        report = index.refresh()
        index.search("handle request retries")
        pipeline_peak = rss_mb()
        index.close()
    probe = subprocess.run(
        [sys.executable, "-c", MODEL_PROBE], capture_output=True, text=True, check=True
    )
    model = json.loads(probe.stdout)
    model_mb = model["with_model_mb"] - model["python_mb"]
    print(
        json.dumps(
            {
                "files": report.files,
                "chunks": report.chunks,
                "rss_before_mb": round(start, 1),
                "pipeline_peak_rss_mb": round(pipeline_peak, 1),
                "model_footprint_mb": round(model_mb, 1),
                "estimated_peak_with_model_mb": round(pipeline_peak + model_mb, 1),
                "target_mb": 500,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
