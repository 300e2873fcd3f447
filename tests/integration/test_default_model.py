"""The embedded default model works offline in a fresh process right after install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from kenning.engine.embedder import load_embedder
emb = load_embedder()
docs = emb.embed_documents([
    "def load_settings(path):\n    with open(path) as f:\n        return json.load(f)\n",
    "def bubble_sort(xs):\n    for i in range(len(xs)):\n        for j in range(len(xs) - i - 1):\n"
    "            if xs[j] > xs[j + 1]:\n                xs[j], xs[j + 1] = xs[j + 1], xs[j]\n",
])
scores = (docs @ emb.embed_query("parse a json configuration file")).tolist()
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
print(json.dumps({"model": emb.model_id, "device": emb.device, "dims": emb.dims,
                  "precision": emb.precision,
                  "scores": scores, "heavy": heavy, "took_s": time.perf_counter() - t0}))
"""


def run(home: Path, **env: str) -> dict[str, object]:
    server = Path(__file__).resolve().parents[2] / "server"
    full_env = {
        **os.environ,
        "KENNING_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        # Any network attempt would fail fast instead of passing by luck.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "PYTHONPATH": os.pathsep.join([str(server), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    full_env.pop("KENNING_MODEL", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=full_env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_default_model_offline_in_a_fresh_home(tmp_path: Path) -> None:
    first = run(tmp_path / "home")
    assert first["model"] == "all-minilm-l6-v2-int8" and first["dims"] == 384
    json_score, sort_score = first["scores"]  # type: ignore[misc]
    assert json_score > sort_score + 0.1
    # Locating the packaged files must not import torch through their packages.
    assert first["heavy"] == []
    # The verification is remembered: a second start does not re-hash 23 MB.
    assert (tmp_path / "home" / "models" / "verified.json").is_file()
    if first["device"] == "cpu":
        # Offline too, the int8 model is derived once into the home.
        assert first["precision"] == "int8"
        assert list((tmp_path / "home" / "models" / "derived").glob("*-int8.onnx"))
    second = run(tmp_path / "home")
    assert second["scores"] == pytest.approx(first["scores"], abs=1e-6)


def test_kenning_device_cpu_is_honoured(tmp_path: Path) -> None:
    assert run(tmp_path / "home", KENNING_DEVICE="cpu")["device"] == "cpu"
