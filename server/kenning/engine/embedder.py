"""Text to vectors: the Embedder protocol and its ONNX Runtime implementation.

The index pipeline calls an embedder from its own executor, never from the
editor's thread. :class:`OnnxEmbedder` is safe to call from any thread; document
batches are serialised by a lock, since two concurrent ones would only fight
over the same capped set of cores. A query (one short text) does not wait
behind a batch: it runs beside it.

On the CPU, speed comes from running one text per model run on each of the
capped cores at once (a small transformer keeps one core busy far better than
it splits over two, and no run pays for padding), with the longest texts
first so no core is left with a long one at the end; and, where the card
allows, from int8 matrix products (see :func:`kenning.engine.models.cpu_int8_model`).
On CUDA, texts are sorted by token length and grouped into batches under a
token budget, so a batch pads only to its own longest member. Text past the
card's ``max_tokens`` is cut (or windowed) before the model sees it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from kenning.engine import models
from kenning.engine.models import ResolvedModel
from kenning.errors import ModelError

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

log = logging.getLogger(__name__)

#: Tokens (batch size x padded length) per ONNX run on CUDA. On the CPU texts
#: run one at a time, a core each: measured with bench/bench_embed.py on the
#: 2-core reference CPU, batches under a 512-token budget on 2 threads gave
#: 1.02x the plain one-by-one loop, one text per run on each core 1.24x.
GPU_TOKEN_BUDGET = 32768
PRECISIONS = ("auto", "fp32", "int8")
#: Suffix of the vector space of a model run with int8 matrix products.
INT8_SPACE = "+int8-matmul"


def model_of_space(space: str | None) -> str | None:
    """The model id of a vector space (see :attr:`Embedder.space`)."""
    return space.removesuffix(INT8_SPACE) if space else space


def precision_of(embedder: object | None, space: str | None = None) -> str | None:
    """``int8`` or ``fp32``: what an embedder computes in, else what ``space`` was made in."""
    if embedder is not None:
        return str(getattr(embedder, "precision", "fp32"))
    if space:
        return "int8" if space.endswith(INT8_SPACE) else "fp32"
    return None


MAX_BATCH = 64
# A text longer than this many characters per kept token is cut before
# tokenising (only its head is used), so a huge chunk costs no more than a
# normal one. The cut is checked and undone when it could change the tokens.
_CHARS_PER_TOKEN = 16
_CUT_MARGIN = 256


@dataclass
class EmbedStats:
    """Running totals for ``status``: how much was embedded and how fast. Thread-safe."""

    texts: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, texts: int, tokens: int, padded: int, batches: int, seconds: float) -> None:
        with self._lock:
            self.texts += texts
            self.tokens += tokens
            self.padded_tokens += padded
            self.batches += batches
            self.seconds += seconds

    def snapshot(self) -> dict[str, float | int]:
        with self._lock:
            secs = self.seconds
            return {
                "texts": self.texts,
                "tokens": self.tokens,
                "batches": self.batches,
                "seconds": round(secs, 3),
                "tokens_per_s": round(self.tokens / secs, 1) if secs else 0.0,
                "chunks_per_s": round(self.texts / secs, 2) if secs else 0.0,
                # Share of the model's work spent on padding.
                "padding": round(1 - self.tokens / self.padded_tokens, 4)
                if self.padded_tokens
                else 0.0,
            }


@runtime_checkable
class Embedder(Protocol):
    model_id: str  # card id, or "local:<folder name>@<fingerprint>" for a folder
    max_tokens: int
    stats: EmbedStats

    @property
    def space(self) -> str:
        """Names the vector space: vectors of the same space are comparable.

        The model id, plus INT8_SPACE where int8 arithmetic changes the vectors.
        """
        ...

    @property
    def dims(self) -> int: ...

    @property
    def device(self) -> str:  # "cpu" or "cuda": what is really used
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (n, dims), one L2-normalised row per text, in order."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dims,), normalised, with the model's query prefix."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads for each text as a document (after the cut)."""
        ...


def default_threads() -> int:
    """All cores this process may use but one, so the editor keeps a core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def resolve_threads(threads: int | None) -> int:
    if threads is not None:
        if threads < 1:
            raise ModelError(f"threads must be at least 1, got {threads}")
        return threads
    env = os.environ.get("KENNING_THREADS", "").strip()
    if env:
        if env.isdigit() and int(env) >= 1:
            return int(env)
        log.warning("KENNING_THREADS=%r is not a positive integer; ignored", env)
    return default_threads()


def resolve_precision(precision: str | None) -> str:
    """``auto``, ``fp32`` or ``int8`` for an argument or ``KENNING_PRECISION``."""
    if precision is not None:
        wanted = precision.strip().lower()
        if wanted not in PRECISIONS:
            raise ModelError(f"precision must be auto, fp32 or int8, got {precision!r}")
        return wanted
    env = os.environ.get("KENNING_PRECISION", "").strip().lower()
    if env and env not in PRECISIONS:
        log.warning("KENNING_PRECISION=%r is not auto, fp32 or int8; ignored", env)
        return "auto"
    return env or "auto"


def plan_device(device: str | None) -> str:
    """``cpu`` or ``cuda`` for a requested ``auto``/``cpu``/``cuda`` (``KENNING_DEVICE`` fills auto)."""
    import onnxruntime as ort

    wanted = (device or "auto").strip().lower()
    if wanted == "auto":
        wanted = os.environ.get("KENNING_DEVICE", "auto").strip().lower() or "auto"
    if wanted not in ("auto", "cpu", "cuda"):
        raise ModelError(f"device must be auto, cpu or cuda, got {device!r}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if wanted == "cuda" and not has_cuda:
        raise ModelError(
            "device cuda was asked for but onnxruntime offers no CUDA provider; "
            "install kenning[gpu] (onnxruntime-gpu) or use device cpu"
        )
    if wanted == "auto":
        if has_cuda:
            return "cuda"
        log.info("onnxruntime offers no CUDA provider; embedding on the CPU")
        return "cpu"
    return wanted


def plan_precision(cpu_int8: bool, device: str, wanted: str) -> str:
    """``int8`` or ``fp32``: what a model runs in on ``device`` for a resolved precision.

    ``cpu_int8`` is the card's say on int8 by default; on CUDA it is always fp32.
    """
    if device == "cuda":
        return "fp32"
    return "int8" if wanted == "int8" or (wanted == "auto" and cpu_int8) else "fp32"


class OnnxEmbedder:
    """An :class:`Embedder` running a verified ONNX model with HF ``tokenizers``.

    Cheap to construct: the tokenizer is read at once (and checked), the ONNX
    session is created on first use, or when ``device`` or :meth:`load` is
    asked for. Long text keeps its first ``max_tokens`` tokens, or with a
    card's ``long_text: "window"`` is embedded as overlapping windows whose
    vectors are averaged.
    """

    def __init__(
        self,
        model: ResolvedModel,
        device: str | None = "auto",
        threads: int | None = None,
        token_budget: int | None = None,
        precision: str | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        card = model.card
        self.model = model
        self.model_id = card.id
        self.max_tokens = card.max_tokens
        self.stats = EmbedStats()
        self.threads = resolve_threads(threads)
        self._planned = plan_device(device)
        # Batches on CUDA, or on the CPU when a budget is asked for (tests,
        # benchmarks); otherwise one text per run, ``threads`` runs at once.
        self._batched = token_budget is not None or self._planned == "cuda"
        self.token_budget = token_budget or GPU_TOKEN_BUDGET
        wanted = resolve_precision(precision)
        if self._planned == "cuda" and wanted == "int8":
            log.info("int8 arithmetic is for the CPU; model %s runs in fp32 on CUDA", card.id)
        self.precision = plan_precision(card.cpu_int8, self._planned, wanted)
        self._lock = threading.RLock()
        self._session: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._device: str | None = None
        self._dims = card.dims
        self._window = card.long_text == "window"
        try:
            tok = Tokenizer.from_file(str(model.tokenizer_path))
        except Exception as exc:  # tokenizers raises bare Exceptions for bad JSON
            raise ModelError(
                f"model {card.id}: {model.tokenizer_path} is not a tokenizers JSON file ({exc})"
            ) from None
        self._pad_id = _pad_id(tok)
        tok.no_padding()
        stride = max(1, self.max_tokens // 8) if self._window else 0
        tok.enable_truncation(max_length=self.max_tokens, stride=stride)
        self._tok: Tokenizer = tok

    # ------------------------------------------------------------------ session

    def load(self) -> OnnxEmbedder:
        """Create the ONNX session now (otherwise the first embedding does)."""
        self._ensure_session()
        return self

    def _ensure_session(self) -> Any:
        session = self._session
        if session is not None:
            return session  # without the lock, which a document batch may hold
        with self._lock:
            if self._session is None:
                self._session = self._create_session()
            return self._session

    def _create_session(self) -> Any:
        import onnxruntime as ort

        path = self.model.model_path
        if self.precision == "int8":
            try:
                path = models.cpu_int8_model(self.model)
            except ModelError as exc:
                log.warning("%s; running it in fp32", exc)
                self.precision = "fp32"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One text per run, a core each: ONNX Runtime's own threads would only
        # split each small matrix product, which scales far worse.
        opts.intra_op_num_threads = self.threads if self._batched else 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # Idle worker threads would otherwise spin between batches and burn
        # the core the editor was promised.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if self._planned == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if path == self.model.model_path:
                raise ModelError(
                    f"model {self.model_id}: onnxruntime cannot load {path}: {first}"
                ) from None
            # The derived file was checked against its sha256 just now, so it
            # is whole: this CPU or build lacks the int8 kernels. Only fp32 can run.
            log.warning(
                "model %s: cannot load %s (%s); running it in fp32", self.model_id, path, first
            )
            self.precision = "fp32"
            return self._create_session()
        used = session.get_providers()
        self._device = "cuda" if used and used[0] == "CUDAExecutionProvider" else "cpu"
        if self._planned == "cuda" and self._device != "cuda":
            log.info("the CUDA provider failed to start; embedding on the CPU")
        if not self._batched and self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="kenning-embed")
        names = {i.name for i in session.get_inputs()}
        unknown = names - {"input_ids", "attention_mask", "token_type_ids", "position_ids"}
        if "input_ids" not in names or unknown:
            raise ModelError(
                f"model {self.model_id}: unsupported ONNX inputs {sorted(names)}; "
                "expected input_ids, attention_mask and optionally token_type_ids"
            )
        self._inputs = names
        out = session.get_outputs()
        pick = next((o for o in out if o.name in ("last_hidden_state", "token_embeddings")), out[0])
        self._output = pick.name
        if self._dims is None and isinstance(pick.shape[-1], int):
            self._dims = pick.shape[-1]
        log.info(
            "model %s (%s) on %s with %d thread(s), %s",
            self.model_id,
            self.precision,
            self._device,
            self.threads,
            f"token budget {self.token_budget}" if self._batched else "one text per run",
        )
        return session

    @property
    def device(self) -> str:
        self._ensure_session()
        assert self._device is not None
        return self._device

    @property
    def space(self) -> str:
        self._ensure_session()  # settles the precision: int8 falls back to fp32 on failure
        return self.model_id if self.precision == "fp32" else self.model_id + INT8_SPACE

    @property
    def dims(self) -> int:
        if self._dims is None:
            self._ensure_session()
        if self._dims is None:  # an export without a static hidden size
            self._dims = int(self._embed([""], "")[0].shape[0])
        return self._dims

    # ------------------------------------------------------------------ tokens

    def _encode(self, texts: Sequence[str]) -> list[list[Encoding]]:
        """Encodings per text: one, or with windowing one per window."""
        if self._window:
            return [[e, *e.overflowing] for e in self._tok.encode_batch(list(texts))]
        cut = self.max_tokens * _CHARS_PER_TOKEN
        heads = [t if len(t) <= cut else t[:cut] for t in texts]
        encs = self._tok.encode_batch(heads)
        redo = []
        for i, (text, enc) in enumerate(zip(texts, encs, strict=True)):
            if len(text) > cut and not _head_is_safe(enc, cut):
                redo.append(i)
        if redo:
            for i, enc in zip(redo, self._tok.encode_batch([texts[i] for i in redo]), strict=True):
                encs[i] = enc
        return [[e] for e in encs]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        prefix = self.model.card.document_prefix
        groups = self._encode([prefix + t for t in texts] if prefix else texts)
        return [sum(len(e.ids) for e in g) for g in groups]

    # ------------------------------------------------------------------ embedding

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self.model.card.document_prefix)

    def embed_query(self, text: str) -> np.ndarray:
        # Not behind the lock that serialises document batches: a search made
        # while an index embeds would wait for the whole batch in flight (up to
        # seconds on a first index). ONNX Runtime sessions run concurrently.
        session = self._ensure_session()
        return self._embed_with(session, [text], self.model.card.query_prefix, count=False)[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed_query` of several queries in one batch (a shard endpoint
        answering concurrent searches); not counted in :attr:`stats`."""
        session = self._ensure_session()
        return self._embed_with(session, texts, self.model.card.query_prefix, count=False)

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a sequence of texts, not one string")
        with self._lock:
            return self._embed_with(self._ensure_session(), texts, prefix, count=True)

    def _embed_with(
        self, session: Any, texts: Sequence[str], prefix: str, count: bool
    ) -> np.ndarray:
        """Vectors of ``texts``; ``count`` adds them to :attr:`stats` (documents only,
        so a search made meanwhile does not blur the indexing rate)."""
        start = time.perf_counter()
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        groups = self._encode([prefix + t for t in texts] if prefix else list(texts))
        flat = [(i, e) for i, g in enumerate(groups) for e in g]
        order = sorted(range(len(flat)), key=lambda k: len(flat[k][1].ids))
        if self._batched:
            batches = self._batches(order, [len(e.ids) for _, e in flat])
        else:
            # Longest first, so no core is left with a long text at the end.
            batches = [[k] for k in reversed(order)]
        groups_of = [[flat[k][1] for k in batch] for batch in batches]
        if self._pool is not None and len(batches) > 1:
            outs = list(self._pool.map(lambda encs: self._run(session, encs), groups_of))
        else:
            outs = [self._run(session, encs) for encs in groups_of]
        vectors = np.empty((len(flat), outs[0].shape[1]), dtype=np.float32)
        tokens = padded = 0
        for batch, encs, out in zip(batches, groups_of, outs, strict=True):
            vectors[batch] = out
            tokens += sum(len(e.ids) for e in encs)
            padded += len(encs) * max(len(e.ids) for e in encs)
        if len(flat) != len(texts):
            vectors = self._merge_windows(vectors, flat, len(texts))
        if count:
            self.stats.add(len(texts), tokens, padded, len(batches), time.perf_counter() - start)
        return vectors

    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Consecutive runs of ``order`` (ascending length) whose padded size fits the budget."""
        batches: list[list[int]] = []
        current: list[int] = []
        for k in order:
            width = max(lengths[k], 1)
            if current and (
                (len(current) + 1) * width > self.token_budget or len(current) >= MAX_BATCH
            ):
                batches.append(current)
                current = []
            current.append(k)
        if current:
            batches.append(current)
        return batches

    def _run(self, session: Any, encs: list[Encoding]) -> np.ndarray:
        n = len(encs)
        width = max(1, max(len(e.ids) for e in encs))
        ids = np.full((n, width), self._pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for row, enc in enumerate(encs):
            m = len(enc.ids)
            ids[row, :m] = enc.ids
            mask[row, :m] = 1
            types[row, :m] = enc.type_ids
        feed = {"input_ids": ids}
        if "attention_mask" in self._inputs:
            feed["attention_mask"] = mask
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = types
        if "position_ids" in self._inputs:
            feed["position_ids"] = np.broadcast_to(np.arange(width, dtype=np.int64), (n, width))
        hidden = session.run([self._output], feed)[0]
        return _pool(hidden, mask, self.model.card.pooling, self.model.card.normalize)

    @staticmethod
    def _merge_windows(vectors: np.ndarray, flat: list[tuple[int, Encoding]], n: int) -> np.ndarray:
        # Each window counts by its length, so a short tail window does not
        # outweigh a full one.
        merged = np.zeros((n, vectors.shape[1]), dtype=np.float32)
        for row, (i, enc) in enumerate(flat):
            merged[i] += vectors[row] * len(enc.ids)
        norms = np.linalg.norm(merged, axis=1, keepdims=True)
        return (merged / np.maximum(norms, 1e-12)).astype(np.float32)


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    if hidden.ndim == 2:  # the export pools by itself
        vecs = hidden.astype(np.float32, copy=False)
    elif pooling == "cls":
        vecs = hidden[:, 0, :].astype(np.float32, copy=False)
    else:
        weights = mask.astype(np.float32)[:, :, None]
        summed = (hidden.astype(np.float32, copy=False) * weights).sum(axis=1)
        vecs = summed / np.maximum(weights.sum(axis=1), 1.0)
    if normalize:
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return vecs.astype(np.float32, copy=False)


def _head_is_safe(enc: Encoding, cut: int) -> bool:
    """Whether tokens kept from a cut text are those the whole text would give.

    They are when the cut text already overflows max_tokens and the last kept
    token ends well before the cut: tokenisation is local to a word, and the
    margin is longer than any vocabulary piece.
    """
    if not enc.overflowing:
        return False
    ends = [
        end
        for (_, end), special in zip(enc.offsets, enc.special_tokens_mask, strict=True)
        if not special
    ]
    return bool(ends) and ends[-1] <= cut - _CUT_MARGIN


def _pad_id(tok: Tokenizer) -> int:
    padding = tok.padding
    if padding and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>", "<|endoftext|>"):
        found = tok.token_to_id(token)
        if found is not None:
            return int(found)
    return 0


# --------------------------------------------------------------------------- loading


def load_embedder(
    model: str | None = None, device: str = "auto", threads: int | None = None
) -> Embedder:
    """An embedder for ``model`` (see :func:`kenning.engine.models.resolve`) on ``device``.

    ``device`` is ``auto`` (``KENNING_DEVICE`` if set, else CUDA when
    onnxruntime offers it, else CPU with an INFO log line), ``cpu`` or
    ``cuda`` (a ModelError when no CUDA provider is installed). ``threads``
    caps ONNX Runtime's threads (default ``KENNING_THREADS``, else all cores
    but one).
    """
    return OnnxEmbedder(models.resolve(model), device=device, threads=threads)


def plan_embedding(model: str | None = None, device: str | None = "auto") -> dict[str, str | None]:
    """``{model, device, precision}`` that :func:`load_embedder` would give, without loading.

    Reads the model card and asks onnxruntime for its providers; opens no model
    and verifies no file, so ``kenning status`` can say it at once. A part that
    cannot be known (an unknown model, CUDA asked for but missing) is None.
    """
    name = model or os.environ.get("KENNING_MODEL") or None
    card: models.ModelCard | None
    try:
        card = models.find_card(name)
    except ModelError:
        card = None
    try:
        planned: str | None = plan_device(device)
    except ModelError:
        planned = None
    precision = None
    if card is not None and planned is not None:
        try:
            precision = plan_precision(card.cpu_int8, planned, resolve_precision(None))
        except ModelError:
            precision = None
    return {"model": card.id if card else name, "device": planned, "precision": precision}
