"""Shared fixtures. The fake embedder is for tests that are not about meaning."""

from __future__ import annotations

import os
import re
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import xxhash

from kenning.engine.embedder import EmbedStats


class FakeEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are close.

    Fast and offline; never used where a test is about search quality.
    """

    model_id = "fake-bow-64"

    space = "fake-bow-64"
    dims = 64
    device = "cpu"
    max_tokens = 512

    def __init__(
        self, dims: int | None = None, delay_s: float = 0.0, log: str | None = None
    ) -> None:
        """``dims`` other than 64 names another model (the real one has 384)."""
        if dims is not None and dims != self.dims:
            self.dims = dims
            self.model_id = self.space = f"fake-bow-{dims}"
        self.calls = 0
        self.texts_embedded = 0
        self.stats = EmbedStats()
        # For tests with several processes: seconds each text takes (so that a
        # run lasts long enough to overlap or kill), and a file where every
        # process appends "PID DIGEST" for each text it embeds.
        self.delay_s = delay_s
        self.log = log

    @classmethod
    def from_env(cls) -> FakeEmbedder:
        """Configured by KENNING_FAKE_DIMS, KENNING_FAKE_DELAY and KENNING_FAKE_LOG
        (subprocess tests)."""
        return cls(
            dims=int(os.environ.get("KENNING_FAKE_DIMS") or 0) or None,
            delay_s=float(os.environ.get("KENNING_FAKE_DELAY") or 0.0),
            log=os.environ.get("KENNING_FAKE_LOG") or None,
        )

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dims, dtype=np.float32)
        for word in re.findall(r"[a-z]+", text.lower()):
            h = xxhash.xxh32_intdigest(word.encode())
            v[h % self.dims] += 1.0 if (h >> 8) & 1 else -1.0
        n = float(np.linalg.norm(v))
        if n == 0:
            v[0] = 1.0
            n = 1.0
        return v / n

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        if self.delay_s:
            time.sleep(self.delay_s * len(texts))
        if self.log and texts:
            pid = os.getpid()
            lines = "".join(f"{pid} {xxhash.xxh3_64_hexdigest(t.encode())}\n" for t in texts)
            # One O_APPEND write per batch: lines of several processes never mix.
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        self.stats.add(len(texts), sum(self.count_tokens(texts)), 0, 1, 1e-6 * len(texts))
        return (
            np.stack([self._vec(t) for t in texts])
            if texts
            else np.zeros((0, self.dims), np.float32)
        )

    def embed_query(self, text: str) -> np.ndarray:
        return self._vec(text)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="session")
def derived_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of derived (int8) model files for the whole run.

    Deriving takes seconds and gives the same bytes every time, so tests
    share the result rather than each paying for it in its own home.
    """
    return tmp_path_factory.mktemp("derived-models")


@pytest.fixture(autouse=True)
def kenning_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, derived_models: Path
) -> Path:
    """Every test gets its own KENNING_HOME: no test touches the user's cache."""
    home = tmp_path_factory.mktemp("kenning-home")
    (home / "models").mkdir()
    (home / "models" / "derived").symlink_to(derived_models, target_is_directory=True)
    monkeypatch.setenv("KENNING_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create files under ``root``; str values are dedented text."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


# -- a workspace for first-contact tests ------------------------------------------

_NOUNS = [
    "invoice",
    "customer",
    "order",
    "shipment",
    "ticket",
    "payment",
    "account",
    "report",
    "session",
    "upload",
    "profile",
    "message",
    "coupon",
    "refund",
    "vendor",
]
_VERBS = [
    "load",
    "save",
    "check",
    "render",
    "merge",
    "sort",
    "filter",
    "count",
    "archive",
    "notify",
]

FIRST_CONTACT_TARGET = "billing/tax.py"
FIRST_CONTACT_QUERY = "add sales tax to a price"
_TAX = '''
def add_sales_tax(price, rate):
    """Return the price with sales tax added, rounded to cents."""
    return round(price * (1 + rate), 2)
'''


def first_contact_corpus(files: int, per_file: int) -> dict[str, str]:
    """A workspace of ``files * per_file`` distinct small functions plus one that
    adds sales tax: big enough, at a known size, that its first index takes a
    while to embed."""
    out: dict[str, str] = {FIRST_CONTACT_TARGET: _TAX}
    for f in range(files):
        noun = _NOUNS[f % len(_NOUNS)]
        funcs = []
        for j in range(per_file):
            verb = _VERBS[(f * per_file + j) % len(_VERBS)]
            other = _NOUNS[(f + j + 1) % len(_NOUNS)]
            funcs.append(
                f"def {verb}_{noun}_{f}_{j}(items, limit={j + 1}):\n"
                f'    """{verb.title()} each {noun} against its {other} records (batch {f}.{j})."""\n'
                "    kept = []\n"
                "    for item in items:\n"
                f'        if item.get("{other}_id") and len(kept) < limit:\n'
                f'            kept.append({verb}_one(item, "{noun}"))\n'
                "    return kept\n"
            )
        out[f"src/{noun}s/{_VERBS[f % len(_VERBS)]}_{f}.py"] = "\n\n".join(funcs)
    return out
