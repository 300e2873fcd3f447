"""Near-duplicate code: MinHash signatures, an incremental LSH index, and clusters.

How two chunks are compared
---------------------------
Each chunk is cut into tokens by one regex that works for any language
(:func:`code_tokens`). Comments are dropped, string literals become ``STR``,
numbers ``NUM``, booleans ``BOOL``, and every identifier that is not a keyword
of one of the languages we know becomes ``ID``. So a copy whose variables were renamed, whose
literals were changed or whose layout was reformatted has the *same* token
stream as the original. The chunk is then the set of its k-token shingles
(:data:`SHINGLE_SIZE` consecutive tokens) and two chunks are as similar as the
Jaccard index of their shingle sets, which a MinHash signature of
:data:`NUM_PERM` 32-bit values estimates.

Chunks with fewer than :data:`MIN_TOKENS` tokens get no signature: once
identifiers are abstracted, every tiny getter, setter and one-line wrapper looks
like every other one, and reporting them as duplicates is noise.

Signatures are computed with numpy rather than with ``datasketch.MinHash``:
token hashes are combined into shingle hashes and permuted with the
multiply-add-shift family ``((a * x + b) mod 2**64) >> 32`` for all permutations
at once, which is several times faster per chunk than updating a
``datasketch.MinHash`` shingle by shingle (``bench/bench_dedup.py`` measures
both). The constants come from xxhash of fixed strings, so a signature persisted
by one process is valid in every other one; :data:`SIGNATURE_VERSION` changes
whenever the tokeniser or the hashing does, so a store can drop stale ones.

The index and the decision
--------------------------
:class:`DuplicateIndex` is an LSH index over the signatures (the banding
datasketch's ``MinHashLSH`` picks for the Jaccard ``threshold``) and keeps every signature, so a query returns candidates
with their estimated Jaccard, and keys can be added, replaced and removed one by
one as chunks change. Whether a candidate is reported is decided by
:func:`similarity`: the estimated Jaccard alone, or, when embedding vectors are
available, a blend weighted to the Jaccard (see :func:`blend`), compared with the user's ``duplicates.threshold`` (0.85 by default).
The structural measure catches renamed copies; the embedding keeps two
functions that merely share a shape (say two different loops over a list)
apart.

Clusters
--------
:func:`find_clusters` builds candidate pairs from the LSH bands of all
signatures at once (never all pairs), confirms them with :func:`similarity`,
and joins confirmed pairs into connected components. A component larger than
:data:`LARGE_CLUSTER` is split again with a stricter threshold, halfway between
the threshold and 1, repeatedly, and the parts it falls into become the
cluster's ``children`` ("clusters of clusters"), so one huge blob of
boilerplate does not hide the families of closer copies inside it. Every
cluster's canonical example is its medoid: the member with the highest mean
similarity to the others (against a fixed-size sample of them for big
clusters, so the cost stays linear in the cluster size).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash
from datasketch import MinHashLSH

from kenning.errors import IndexCorruptError

__all__ = [
    "LARGE_CLUSTER",
    "MIN_TOKENS",
    "NUM_PERM",
    "SHINGLE_SIZE",
    "SIGNATURE_VERSION",
    "Cluster",
    "DuplicateIndex",
    "Member",
    "code_tokens",
    "find_clusters",
    "jaccard",
    "minhash",
    "signature_bytes",
    "signature_from_bytes",
    "signature_of_tokens",
    "similarity",
]

#: Bumped whenever tokens, shingles or hashing change: persisted signatures
#: made under another version must be recomputed.
SIGNATURE_VERSION = 1
#: Tokens per shingle. 5 keeps unrelated functions of the same shape apart
#: (abstracted code has a small vocabulary, so short shingles are shared by
#: everything) while one inserted statement still leaves most shingles intact.
SHINGLE_SIZE = 5
#: Chunks with fewer tokens than this are never compared (see module docs).
MIN_TOKENS = 30
NUM_PERM = 64
#: Components with more members than this are split into sub-clusters.
LARGE_CLUSTER = 50

# Identifiers that carry structure and therefore stay as they are. One set for
# every language we index, since the tokeniser does not need to know the
# language: a word that is a keyword somewhere and an identifier here costs
# little, because the same word appears in the same place in a copy.
_KEYWORD_WORDS = """
    abstract and as assert associatedtype async await bool boolean break byte case catch
    chan class const constexpr continue crate debugger decltype def defer defmacro
    defmodule defp defstruct del delete do double dyn elif else elseif elsif enum esac
    except explicit export extends extern fallthrough fi finally float fn for foreach
    friend func function fun go goto guard if impl implements import in inout instanceof
    int interface internal is lambda lateinit let local long mut namespace new nil
    noexcept none None nonlocal not null nullptr or pass private protected pub public
    raise readonly rescue return sealed self Self short sizeof static struct super
    suspend switch tailrec then this throw throws trait try typedef typename typeof
    unless unsafe unsigned until using var vararg virtual void volatile when where while
    with yield
"""
# Words that are keywords somewhere but everyday names elsewhere (type, match,
# data, value, end, done, loop, char, default, protocol, ...) are deliberately
# missing: keeping them would let a rename change the token stream.
KEYWORDS: frozenset[str] = frozenset(_KEYWORD_WORDS.split())
# Boolean literals are literals: a copy that flips a flag is still a copy.
_BOOLEANS = frozenset({"true", "false", "True", "False"})

_COMMON_OPERATORS = (
    r">>>=|<<=|>>=|\*\*=|//=|===|!==|<=>|\.\.\.|\.\.=|"
    r"::|->|//|=>|==|!=|<=|>=|&&|\|\||\+\+|--|\+=|-=|\*=|/=|%=|&=|\|=|\^=|"
    r"<<|>>|\*\*|\?\?|\?\.|:=|\|>|<-|\.\."
)

# Groups: 1 comment (skipped), 2 string, 3 number, 4 word, 5 operator.
_STRINGS = (
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\''
    r'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\[\s\S])*`'
)
_NUMBER = r"0[xXbBoO][0-9a-fA-F_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?[a-zA-Z]*|\.\d+"
# '@', '?' and '!' stay operators even when glued to a name (@Override, empty?,
# println!), so that spacing never changes the token stream.
_WORD = r"[A-Za-z_$][\w$]*"

# Which comment forms a language has. Without a language we take the forms that
# cannot be mistaken for code: '#' followed by a space (a shell/Python/Ruby
# comment, never '#include' or '#[derive]') and '--' between spaces (Lua,
# SQL; never C's 'x--' or '--x').
_HASH_LANGS = frozenset(
    {"python", "ruby", "bash", "shell", "sh", "zsh", "elixir", "perl", "r", "yaml", "toml"}
    | {"make", "cmake", "dockerfile", "nim", "crystal"}
)
_DASH_LANGS = frozenset({"lua", "sql", "haskell", "elm", "ada", "vhdl"})


@functools.lru_cache(maxsize=16)
def _pattern(family: str) -> re.Pattern[str]:
    comments = []
    if family not in ("hash", "dash"):
        comments.append(r"//[^\n]*|/\*[\s\S]*?\*/")
    if family == "hash":
        comments.append(r"\#[^\n]*")
    elif family == "dash":
        comments.append(r"--\[\[[\s\S]*?\]\]|--[^\n]*")
    else:
        comments.append(r"\#(?=[ \t])[^\n]*|(?<!\S)--(?=[ \t\n]|\Z)[^\n]*")
    comments.append(r"<!--[\s\S]*?-->")
    strings = _STRINGS
    if family == "rust":
        # A lifetime ('a) is a name, not the start of a char literal.
        strings = r"'(?:[^'\\\n]|\\.)'|" + strings
        word = r"'[A-Za-z_]\w*+(?!')|" + _WORD
    else:
        strings = strings + r"|'(?:[^'\\\n]|\\.)*'"
        word = _WORD
    ops = _COMMON_OPERATORS + r"|[^\s\w]"
    # Leading whitespace is consumed by the match itself: otherwise the scanner
    # tries the whole alternation at every indentation character.
    return re.compile(
        rf"\s*(?:({'|'.join(comments)})|({strings})|({_NUMBER})|({word})|({ops}))",
    )


def _family(language: str | None) -> str:
    if language is None:
        return "any"
    lang = language.lower()
    if lang in _HASH_LANGS:
        return "hash"
    if lang in _DASH_LANGS:
        return "dash"
    if lang == "rust":
        return "rust"
    return "c"


def code_tokens(text: str, language: str | None = None) -> list[str]:
    """The normalised tokens of ``text``: keywords and operators as they are,
    other identifiers ``ID``, string literals ``STR``, numbers ``NUM``, ``true`` and
    ``false`` ``BOOL``, no comments.

    ``language`` (a tree-sitter language name such as ``"python"``) only sharpens
    which comment syntax is recognised; without it a safe common subset is used.
    """
    out: list[str] = []
    append = out.append
    for _comment, string, number, word, op in _pattern(_family(language)).findall(text):
        if word:
            if word in KEYWORDS:
                append(word)
            else:
                append("BOOL" if word in _BOOLEANS else "ID")
        elif op:
            append(op)
        elif string:
            append("STR")
        elif number:
            append("NUM")
        # comments fall through: they are not code
    return out


# --------------------------------------------------------------------------- hashing

_MASK32 = np.uint64(0xFFFFFFFF)


def _const64(name: str, count: int) -> np.ndarray:
    """``count`` fixed pseudo-random uint64 values, identical in every process and
    numpy version (numpy's generators promise no stable stream across versions)."""
    return np.array(
        [xxhash.xxh64_intdigest(f"kenning-dedup-{name}-{i}".encode()) for i in range(count)],
        dtype=np.uint64,
    )


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    a = _const64("a", num_perm) | np.uint64(1)  # odd multipliers
    b = _const64("b", num_perm)
    return a, b


_SHINGLE_MUL = _const64("shingle", 1)[0] | np.uint64(1)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)


class _TokenHashes(dict[str, int]):
    """xxh64 of a normalised token, computed once per distinct token. The vocabulary
    is keywords, operators and four placeholders, so the cache stays small."""

    def __missing__(self, token: str) -> int:
        h = xxhash.xxh64_intdigest(token.encode())
        if len(self) < 100_000:
            self[token] = h
        return h


_token_hashes = _TokenHashes()


def _shingle_hashes(tokens: Sequence[str], k: int) -> np.ndarray:
    """32-bit hashes (as uint64) of every run of ``k`` consecutive tokens."""
    th = np.fromiter(map(_token_hashes.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
    n = len(tokens) - k + 1
    h = th[:n].copy()
    for j in range(1, k):
        h *= _SHINGLE_MUL
        h ^= th[j : j + n]
    # murmur3's finaliser, so that the high 32 bits depend on every token.
    h ^= h >> np.uint64(33)
    h *= _MIX1
    h ^= h >> np.uint64(33)
    h *= _MIX2
    h ^= h >> np.uint64(33)
    return h >> np.uint64(32)


def signature_of_tokens(
    tokens: Sequence[str], num_perm: int = NUM_PERM, shingle_size: int = SHINGLE_SIZE
) -> np.ndarray | None:
    """The MinHash signature (``uint32[num_perm]``) of a normalised token list,
    or ``None`` when it has fewer than :data:`MIN_TOKENS` tokens."""
    if len(tokens) < max(MIN_TOKENS, shingle_size):
        return None
    x = np.unique(_shingle_hashes(tokens, shingle_size))
    a, b = _permutations(num_perm)
    # Multiply-add-shift hashing: for 32-bit x and 64-bit a, b the top 32 bits of
    # a*x+b (mod 2**64) form a strongly universal family (Dietzfelbinger 1996).
    perm = x[:, None] * a[None, :]
    perm += b[None, :]
    perm >>= np.uint64(32)
    return perm.min(axis=0).astype(np.uint32)


def minhash(text: str, language: str | None = None) -> np.ndarray | None:
    """The MinHash signature of a chunk's text (``uint32[NUM_PERM]``), or ``None``
    when the chunk has too few tokens to be compared."""
    return signature_of_tokens(code_tokens(text, language))


def signature_bytes(sig: np.ndarray) -> bytes:
    """A signature as bytes (little-endian uint32s) for the store."""
    return np.ascontiguousarray(sig, dtype="<u4").tobytes()


def signature_from_bytes(data: bytes, num_perm: int = NUM_PERM) -> np.ndarray:
    """The signature that :func:`signature_bytes` wrote.

    Raises :class:`IndexCorruptError` when ``data`` is not one signature of
    ``num_perm`` values; the caller can drop it and recompute from the text.
    """
    if len(data) != 4 * num_perm:
        raise IndexCorruptError(
            f"stored MinHash signature has {len(data)} bytes, expected {4 * num_perm}"
        )
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures."""
    return float(np.count_nonzero(a == b)) / len(a)


JACCARD_WEIGHT = 0.75


def blend(jaccard: Any, cosine: Any) -> Any:
    """Structure and meaning in one score; works on floats and numpy arrays alike.

    Weighted to structure: a renamed copy has Jaccard 1.0 but a text model sees
    different words (the default model scored one such pair at 0.69), so an
    even mean would miss it; the cosine share still sinks same-shaped code that
    means something else. Negative cosines count as unrelated (0).
    """
    return JACCARD_WEIGHT * jaccard + (1 - JACCARD_WEIGHT) * np.clip(cosine, 0.0, 1.0)


def similarity(jaccard: float, cosine: float | None = None) -> float:
    """How alike two chunks are, in [0, 1], for comparing with ``duplicates.threshold``:
    the estimated Jaccard of their abstracted shingles alone, or :func:`blend` of
    it and the cosine similarity when both have embedding vectors."""
    if cosine is None:
        return jaccard
    return float(blend(jaccard, cosine))


def _check_signature(signature: np.ndarray, num_perm: int) -> np.ndarray:
    sig = np.asarray(signature)
    if sig.shape != (num_perm,):
        raise ValueError(f"expected a signature of {num_perm} values, got shape {sig.shape}")
    return sig.astype(np.uint32, copy=False)


@functools.lru_cache(maxsize=32)
def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising datasketch's weighted error at ``threshold``."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


# --------------------------------------------------------------------------- the index


class DuplicateIndex:
    """Signatures of chunks by key, searchable for near-duplicates; updated one key
    at a time as chunks change.

    ``threshold`` is the estimated Jaccard a candidate needs: the LSH banding is
    tuned for it, and candidates below it are not returned.
    """

    def __init__(self, threshold: float = 0.5, num_perm: int = NUM_PERM) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        # LSH band tables: a key lands in one bucket per band, by the bytes of
        # its signature's slice; keys sharing any bucket are candidates.
        # datasketch picks the banding; the tables are kept here because its
        # query adds a big bucket's keys one by one in Python, which made
        # chunks with hundreds of copies cost milliseconds per query.
        bands, rows = _bands(threshold, num_perm)
        self._slices = [slice(b * rows, (b + 1) * rows) for b in range(bands)]
        self._tables: list[dict[bytes, set[int]]] = [{} for _ in range(bands)]
        # Signatures live in one growing matrix so a query scores all its
        # candidates with a single vectorised comparison.
        self._matrix = np.zeros((64, num_perm), dtype=np.uint32)
        self._row: dict[int, int] = {}
        self._free: list[int] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    def signature(self, key: int) -> np.ndarray | None:
        """The signature stored under ``key``, if any."""
        row = self._row.get(key)
        return None if row is None else self._matrix[row].copy()

    def add(self, key: int, signature: np.ndarray) -> None:
        """Index ``signature`` under ``key``, replacing what the key had."""
        sig = _check_signature(signature, self.num_perm)
        if key in self._row:
            self.remove(key)
        if self._free:
            row = self._free.pop()
        else:
            row = self._next
            self._next += 1
            if row >= len(self._matrix):
                grown = np.zeros((2 * len(self._matrix), self.num_perm), dtype=np.uint32)
                grown[: len(self._matrix)] = self._matrix
                self._matrix = grown
        self._matrix[row] = sig
        self._row[key] = row
        for band, table in zip(self._slices, self._tables, strict=True):
            table.setdefault(sig[band].tobytes(), set()).add(key)

    def remove(self, key: int) -> None:
        """Forget ``key``; a key that is not there is ignored."""
        row = self._row.pop(key, None)
        if row is None:
            return
        sig = self._matrix[row]
        for band, table in zip(self._slices, self._tables, strict=True):
            h = sig[band].tobytes()
            bucket = table.get(h)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del table[h]
        self._free.append(row)

    def query(
        self, signature: np.ndarray, exclude: int | None = None, limit: int | None = None
    ) -> list[tuple[int, float]]:
        """Keys whose chunks are near-duplicates of ``signature``, as
        ``(key, estimated jaccard)``, best first (ties by key); at most ``limit``."""
        sig = _check_signature(signature, self.num_perm)
        if not self._row:
            return []
        found: set[int] = set()
        for band, table in zip(self._slices, self._tables, strict=True):
            bucket = table.get(sig[band].tobytes())
            if bucket:
                found.update(bucket)
        if not found:
            return []
        keys = np.fromiter(found, dtype=np.int64, count=len(found))
        if exclude is not None:
            keys = keys[keys != exclude]
        rows = np.fromiter(
            map(self._row.__getitem__, keys.tolist()), dtype=np.intp, count=len(keys)
        )
        scores = np.count_nonzero(self._matrix[rows] == sig, axis=1) / self.num_perm
        keep = scores >= self.threshold
        keys, scores = keys[keep], scores[keep]
        order = np.lexsort((keys, -scores))
        if limit is not None:
            order = order[: max(0, limit)]
        return list(zip(keys[order].tolist(), scores[order].tolist(), strict=True))


# --------------------------------------------------------------------------- clusters


@dataclass
class Member:
    key: int
    similarity: float


@dataclass
class Cluster:
    """Near-duplicate chunks. ``canonical`` is the medoid's key; ``members`` are the
    others with their similarity to it, best first; ``size`` counts both.
    ``children`` are the tighter sub-clusters of a large cluster, largest first."""

    canonical: int
    members: list[Member]
    size: int
    children: list[Cluster] = field(default_factory=list)


# Pairs taken from one LSH bucket: each member against the next few in a random
# order, never all pairs, so a bucket of 10,000 identical boilerplate chunks
# costs 10,000 * _WINDOW comparisons, and the chain still connects them all.
_WINDOW = 8
_MEDOID_SAMPLE = 128
_MAX_SPLIT_DEPTH = 4


class _Scorer:
    """Similarities between rows of the signature matrix (and vectors, if any).

    A zero vector row means "not embedded yet": pairs involving it are judged
    on the Jaccard alone rather than vetoed by a cosine of 0.
    """

    def __init__(self, sigs: np.ndarray, vectors: np.ndarray | None) -> None:
        self.sigs = sigs
        self.vectors = vectors
        self.perm = sigs.shape[1]
        self.embedded = None if vectors is None else np.linalg.norm(vectors, axis=1) > 0.5

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        out = np.empty(len(i), dtype=np.float32)
        step = 1 << 16
        for s in range(0, len(i), step):
            a, b = i[s : s + step], j[s : s + step]
            jac = np.count_nonzero(self.sigs[a] == self.sigs[b], axis=1) / self.perm
            if self.vectors is None or self.embedded is None:
                out[s : s + step] = jac
            else:
                cos = np.einsum("ij,ij->i", self.vectors[a], self.vectors[b])
                both = self.embedded[a] & self.embedded[b]
                out[s : s + step] = np.where(both, blend(jac, cos), jac)
        return out

    def matrix(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Similarity of every row against every col, shape (len(rows), len(cols))."""
        out = np.empty((len(rows), len(cols)), dtype=np.float32)
        cs = self.sigs[cols]
        # Bound the (block, cols, perm) boolean temporary to about 8 MB.
        step = max(1, (8 << 20) // max(1, len(cols) * self.perm))
        for s in range(0, len(rows), step):
            r = rows[s : s + step]
            jac = np.count_nonzero(self.sigs[r][:, None, :] == cs[None, :, :], axis=2)
            out[s : s + step] = jac / self.perm
        if self.vectors is not None and self.embedded is not None:
            cos = self.vectors[rows] @ self.vectors[cols].T
            both = self.embedded[rows][:, None] & self.embedded[cols][None, :]
            out = np.where(both, blend(out, cos), out)
        return out


def _candidate_pairs(sigs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) that share at least one LSH band."""
    n, num_perm = sigs.shape
    bands, rows = _bands(threshold, num_perm)
    mul = _const64("band", rows) | np.uint64(1)
    rng = np.random.default_rng(0)
    found: list[np.ndarray] = []
    wide = sigs.astype(np.uint64)
    for band in range(bands):
        block = wide[:, band * rows : (band + 1) * rows]
        # Only equal bands need equal keys; the odd rare collision of different
        # bands is a false candidate that confirmation throws out.
        h = (block * mul[None, :]).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(29)
        # A fresh random order inside each bucket per band, so the windowed
        # pairs differ from band to band instead of repeating.
        shuffle = rng.permutation(n)
        order = shuffle[np.argsort(h[shuffle], kind="stable")]
        hs = h[order]
        for d in range(1, min(_WINDOW, n - 1) + 1):
            same = np.flatnonzero(hs[:-d] == hs[d:])
            if not len(same):
                break
            a, b = order[same], order[same + d]
            found.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    codes = np.unique(np.concatenate(found))
    return codes // n, codes % n


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """A component label per node (the smallest node index in it)."""
    parent = np.arange(n)
    if not len(i):
        return parent
    while True:
        pi, pj = parent[i], parent[j]
        low = np.minimum(pi, pj)
        before = parent.copy()
        np.minimum.at(parent, pi, low)
        np.minimum.at(parent, pj, low)
        while True:  # pointer jumping: every node straight to its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        if np.array_equal(parent, before):
            return parent


def _medoid(scorer: _Scorer, nodes: np.ndarray) -> int:
    """The node with the highest mean similarity to the others (to a sample of them
    when there are many)."""
    if len(nodes) <= 2:
        return int(nodes.min()) if len(nodes) == 2 else int(nodes[0])
    if len(nodes) <= 2 * _MEDOID_SAMPLE:
        sims = scorer.matrix(nodes, nodes)
        np.fill_diagonal(sims, 0.0)
        mean = sims.sum(axis=1) / (len(nodes) - 1)
    else:
        rng = np.random.default_rng(len(nodes))
        sample = rng.choice(nodes, size=_MEDOID_SAMPLE, replace=False)
        sims = scorer.matrix(nodes, sample)
        mean = sims.mean(axis=1)
    best = np.flatnonzero(mean >= mean.max() - 1e-6)
    return int(nodes[best].min())  # ties go to the earliest chunk: stable output


def _build(
    scorer: _Scorer,
    keys: np.ndarray,
    nodes: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    min_size: int,
    depth: int,
) -> Cluster:
    medoid = _medoid(scorer, nodes)
    others = nodes[nodes != medoid]
    sims = scorer.pairs(np.full(len(others), medoid), others)
    order = np.lexsort((keys[others], -sims))
    members = [Member(int(keys[others[o]]), round(float(sims[o]), 4)) for o in order]
    cluster = Cluster(canonical=int(keys[medoid]), members=members, size=len(nodes))
    if len(nodes) > LARGE_CLUSTER and depth < _MAX_SPLIT_DEPTH:
        cluster.children = _split(scorer, keys, nodes, edges, threshold, min_size, depth)
    return cluster


def _split(
    scorer: _Scorer,
    keys: np.ndarray,
    nodes: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    min_size: int,
    depth: int,
) -> list[Cluster]:
    """Sub-clusters of a large component under ever stricter thresholds, until
    it falls apart; [] when even near-identity keeps it whole."""
    i, j, s = edges
    strict = threshold
    while strict < 0.995:
        strict = strict + (1.0 - strict) / 2
        keep = s >= strict
        parts = _group(nodes, i[keep], j[keep], min_size, s[keep])
        if len(parts) == 1 and len(parts[0][0]) == len(nodes):
            continue  # still one blob: tighten further
        return [
            _build(scorer, keys, part, sub_edges, strict, min_size, depth + 1)
            for part, sub_edges in parts
        ]
    return []


def _group(
    nodes: np.ndarray, i: np.ndarray, j: np.ndarray, min_size: int, s: np.ndarray | None = None
) -> list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Connected components (of at least ``min_size`` nodes) among ``nodes`` under
    the edges (i, j), each with its own edges, largest first."""
    if s is None:
        s = np.ones(len(i), dtype=np.float32)
    # Relabel to 0..len(nodes)-1 so the component labelling stays small.
    local = np.searchsorted(nodes, i), np.searchsorted(nodes, j)
    labels = _components(len(nodes), *local)
    roots, sizes = np.unique(labels, return_counts=True)
    big = roots[sizes >= min_size]
    if not len(big):
        return []
    edge_label = labels[local[0]]
    by_edge = np.argsort(edge_label, kind="stable")
    sorted_labels = edge_label[by_edge]
    by_node = np.argsort(labels, kind="stable")
    sorted_nodes = labels[by_node]
    out = []
    for root in big:
        lo, hi = np.searchsorted(sorted_nodes, [root, root + 1])
        members = nodes[np.sort(by_node[lo:hi])]
        elo, ehi = np.searchsorted(sorted_labels, [root, root + 1])
        sel = by_edge[elo:ehi]
        out.append((members, (i[sel], j[sel], s[sel])))
    out.sort(key=lambda part: (-len(part[0]), int(part[0][0])))
    return out


def find_clusters(
    keys: Sequence[int],
    signatures: Sequence[np.ndarray | None],
    vectors: np.ndarray | None = None,
    min_size: int = 2,
    threshold: float = 0.85,
) -> list[Cluster]:
    """Clusters of near-duplicate chunks, largest first.

    ``signatures[n]`` (from :func:`minhash`; ``None`` for chunks too small to
    compare, which are left out) and ``vectors[n]`` (L2-normalised embedding
    rows, optional; an all-zero row for a chunk not embedded yet) belong to
    ``keys[n]``. Two chunks are linked when
    :func:`similarity` of the pair reaches ``threshold``; clusters are the
    connected groups of at least ``min_size`` chunks.
    """
    if len(keys) != len(signatures):
        raise ValueError(f"{len(keys)} keys but {len(signatures)} signatures")
    if vectors is not None and len(vectors) != len(keys):
        raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    present = [n for n, sig in enumerate(signatures) if sig is not None]
    if len(present) < max(2, min_size):
        return []
    num_perm = len(signatures[present[0]])  # type: ignore[arg-type]
    sigs = np.stack([_check_signature(signatures[n], num_perm) for n in present])  # type: ignore[arg-type]
    key_arr = np.asarray(keys, dtype=np.int64)[present]
    vecs = None
    if vectors is not None:
        vecs = np.asarray(vectors, dtype=np.float32)[present]
    scorer = _Scorer(sigs, vecs)

    # Candidates come from a looser Jaccard band than the final threshold: with
    # vectors a pair can qualify at a Jaccard well below the threshold.
    lsh_threshold = 0.5 if vecs is not None else min(0.5, threshold)
    i, j = _candidate_pairs(sigs, lsh_threshold)
    s = scorer.pairs(i, j)
    keep = s >= threshold
    i, j, s = i[keep], j[keep], s[keep]
    nodes = np.arange(len(present))
    parts = _group(nodes, i, j, min_size, s)
    clusters = [
        _build(scorer, key_arr, part, edges, threshold, min_size, 0) for part, edges in parts
    ]
    clusters.sort(key=lambda c: (-c.size, c.canonical))
    return clusters
