"""The ONNX embedder on the real default model (all-MiniLM-L6-v2, int8 weights)."""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from kenning.engine import models
from kenning.engine.embedder import Embedder, OnnxEmbedder, load_embedder, resolve_threads
from kenning.errors import ModelError

pytestmark = pytest.mark.model

JSON_CODE = '''def load_config(path):
    """Read the settings file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
'''
SORT_CODE = """def sort_people(people):
    return sorted(people, key=lambda p: (p.last_name, p.first_name))
"""
HTTP_CODE = """def fetch(url, retries=3):
    for attempt in range(retries):
        response = requests.get(url, timeout=10)
        if response.ok:
            return response.text
    raise ConnectionError(url)
"""


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KENNING_MODEL", raising=False)
    monkeypatch.delenv("KENNING_PRECISION", raising=False)
    monkeypatch.delenv("KENNING_DEVICE", raising=False)
    monkeypatch.delenv("KENNING_THREADS", raising=False)


@pytest.fixture(scope="module")
def resolved() -> models.ResolvedModel:
    return models.resolve_card(models.default_card())


@pytest.fixture(scope="module")
def embedder(resolved: models.ResolvedModel) -> OnnxEmbedder:
    return OnnxEmbedder(resolved, device="cpu")


def test_load_embedder_gives_the_default_on_cpu(caplog: pytest.LogCaptureFixture) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with caplog.at_level(logging.INFO, logger="kenning.engine.embedder"):
        emb = load_embedder()
    assert isinstance(emb, Embedder)
    assert (emb.model_id, emb.dims, emb.max_tokens, emb.device) == (
        "all-minilm-l6-v2-int8",
        384,
        256,
        "cpu",
    )
    assert "no CUDA provider" in caplog.text


def test_cuda_without_a_provider_is_a_clear_error() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match=r"kenning\[gpu\]"):
        load_embedder(device="cuda")
    with pytest.raises(ModelError, match="auto, cpu or cuda"):
        load_embedder(device="tpu")


def test_vectors_are_normalised_float32_rows(embedder: OnnxEmbedder) -> None:
    vecs = embedder.embed_documents([JSON_CODE, SORT_CODE, "", "x"])
    assert vecs.dtype == np.float32 and vecs.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_documents([]).shape == (0, 384)
    query = embedder.embed_query("read a json config file")
    assert query.dtype == np.float32 and query.shape == (384,)


def test_the_query_finds_the_code_that_does_it(embedder: OnnxEmbedder) -> None:
    docs = embedder.embed_documents([JSON_CODE, SORT_CODE, HTTP_CODE])
    scores = docs @ embedder.embed_query("read a json config file")
    assert scores.argmax() == 0 and scores[0] > scores[1] + 0.1
    scores = docs @ embedder.embed_query("download a web page, retrying on failure")
    assert scores.argmax() == 2


def test_queries_in_one_batch_are_the_queries_one_by_one(embedder: OnnxEmbedder) -> None:
    # A shard endpoint batches concurrent searches; each must read as if alone.
    queries = ["parse a json config file", "retry with backoff", "x"]
    before = embedder.stats.texts
    batched = embedder.embed_queries(queries)
    alone = np.stack([embedder.embed_query(q) for q in queries])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert embedder.stats.texts == before  # queries do not count as indexing work


def test_batches_give_the_same_vectors_as_one_by_one(resolved: models.ResolvedModel) -> None:
    # Two runs at once: a text's vector must not depend on what runs beside it.
    embedder = OnnxEmbedder(resolved, device="cpu", threads=2)
    texts = [
        "a",
        JSON_CODE,
        SORT_CODE * 12,  # past max_tokens
        "short query",
        HTTP_CODE * 3,
        "def f():\n    pass\n",
        " ".join(f"word{i}" for i in range(90)),
    ]
    together = embedder.embed_documents(texts)
    alone = np.stack([embedder.embed_documents([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    # Order is kept whatever the length sort did.
    np.testing.assert_allclose(embedder.embed_documents(texts[::-1]), together[::-1], atol=1e-4)


def test_small_token_budget_still_covers_every_text(resolved: models.ResolvedModel) -> None:
    # Batches are how CUDA runs; fp32, since int8 scales are shared by a batch.
    emb = OnnxEmbedder(resolved, device="cpu", token_budget=64, precision="fp32")
    texts = [JSON_CODE, SORT_CODE, HTTP_CODE * 5, "x"]
    np.testing.assert_allclose(
        emb.embed_documents(texts),
        OnnxEmbedder(resolved, device="cpu", precision="fp32").embed_documents(texts),
        atol=1e-4,
    )
    assert emb.stats.batches >= 3


def test_the_cpu_runs_int8_products_derived_once(
    resolved: models.ResolvedModel, monkeypatch: pytest.MonkeyPatch, kenning_home: Path
) -> None:
    emb = OnnxEmbedder(resolved, device="cpu")
    assert emb.precision == "int8"
    assert emb.space == "all-minilm-l6-v2-int8+int8-matmul"
    derived = list((kenning_home / "models" / "derived").glob("all-minilm-l6-v2-int8-*.onnx"))
    assert len(derived) == 1

    # A second embedder reuses the file rather than deriving it again.
    def no_deriving(*args: object, **kwargs: object) -> None:
        raise AssertionError("derived again")

    monkeypatch.setattr(models.subprocess, "run", no_deriving)
    again = OnnxEmbedder(resolved, device="cpu")
    np.testing.assert_array_equal(
        again.embed_documents([SORT_CODE]), emb.embed_documents([SORT_CODE])
    )


def test_int8_vectors_stay_close_to_fp32(resolved: models.ResolvedModel) -> None:
    int8 = OnnxEmbedder(resolved, device="cpu")
    fp32 = OnnxEmbedder(resolved, device="cpu", precision="fp32")
    assert fp32.space == fp32.model_id == "all-minilm-l6-v2-int8"
    texts = [JSON_CODE, SORT_CODE, HTTP_CODE, "read a json config file", "x"]
    cos = (int8.embed_documents(texts) * fp32.embed_documents(texts)).sum(axis=1)
    assert cos.min() > 0.97, cos
    # And they answer the same: fp32 ranks the three snippets as int8 does.
    docs = fp32.embed_documents([JSON_CODE, SORT_CODE, HTTP_CODE])
    assert (docs @ fp32.embed_query("read a json config file")).argmax() == 0


def test_a_failed_derivation_falls_back_to_fp32(
    resolved: models.ResolvedModel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(model: models.ResolvedModel) -> Path:
        raise ModelError("model x: cannot derive int8 weights (disk full)")

    monkeypatch.setattr(models, "cpu_int8_model", broken)
    with caplog.at_level(logging.WARNING, logger="kenning.engine.embedder"):
        emb = OnnxEmbedder(resolved, device="cpu")
        vec = emb.embed_documents([JSON_CODE])
    assert emb.precision == "fp32" and emb.space == emb.model_id
    assert "disk full" in caplog.text and "fp32" in caplog.text
    np.testing.assert_allclose(
        vec,
        OnnxEmbedder(resolved, device="cpu", precision="fp32").embed_documents([JSON_CODE]),
        atol=1e-6,
    )


# Each case derives the model again (seconds); the CLI's fault tests cover the other damages.
@pytest.mark.parametrize("damage", ["flipped", "folder"])
def test_a_damaged_derived_model_is_derived_again_at_once_and_int8_kept(
    resolved: models.ResolvedModel,
    kenning_home: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    shared = models.cpu_int8_model(resolved).resolve()
    int8 = OnnxEmbedder(resolved, device="cpu").embed_documents([JSON_CODE])
    # A private copy of the derived folder: the shared one serves the whole run.
    derived_dir = kenning_home / "models" / "derived"
    derived_dir.unlink()
    derived_dir.mkdir()
    derived = derived_dir / shared.name
    shutil.copy(shared, derived)
    shutil.copy(shared.with_name(shared.name + ".sha256"), derived_dir)
    good = derived.read_bytes()
    if damage == "flipped":  # still loads, but its weights are not the ones derived
        derived.write_bytes(good[:-1000] + bytes(b ^ 0xFF for b in good[-1000:]))
    else:
        derived.unlink()
        derived.mkdir()
    with caplog.at_level(logging.WARNING, logger="kenning"):
        emb = OnnxEmbedder(resolved, device="cpu")
        vec = emb.embed_documents([JSON_CODE])
    # The same run derives it again and stays in the int8 vector space.
    assert emb.precision == "int8" and emb.space.endswith("+int8-matmul")
    np.testing.assert_array_equal(vec, int8)
    assert derived.read_bytes() == good
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "derived int8 model is damaged" in warnings[0].getMessage()
    assert list(derived_dir.glob(f"{derived.name}.corrupt-*"))
    # And the next start finds it whole: nothing is derived again.
    caplog.clear()
    again = OnnxEmbedder(resolved, device="cpu")
    np.testing.assert_array_equal(again.embed_documents([JSON_CODE]), int8)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_model_that_cannot_be_derived_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    (folder / "tokenizer.json").write_text("{}")
    card = models.card_from_json({"id": "local:broken"})
    broken = models.ResolvedModel(card, folder / "model.onnx", folder / "tokenizer.json")
    with pytest.raises(ModelError, match="local:broken: cannot derive int8 weights"):
        models.cpu_int8_model(broken)


def test_precision_is_checked(
    resolved: models.ResolvedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelError, match="auto, fp32 or int8"):
        OnnxEmbedder(resolved, device="cpu", precision="fp8")
    monkeypatch.setenv("KENNING_PRECISION", "fp32")
    assert OnnxEmbedder(resolved, device="cpu").precision == "fp32"
    monkeypatch.setenv("KENNING_PRECISION", "bogus")  # a warning, like KENNING_THREADS
    assert OnnxEmbedder(resolved, device="cpu").precision == "int8"
    # A card without cpu_int8 runs fp32 unless int8 is asked for.
    plain = replace(resolved, card=replace(resolved.card, cpu_int8=False))
    monkeypatch.delenv("KENNING_PRECISION")
    assert OnnxEmbedder(plain, device="cpu").precision == "fp32"
    assert OnnxEmbedder(plain, device="cpu", precision="int8").precision == "int8"


def test_a_huge_text_keeps_its_first_max_tokens(embedder: OnnxEmbedder) -> None:
    head = HTTP_CODE * 10  # well past 256 tokens
    huge_a = head + "alpha beta gamma\n" * 60_000  # about 1 MB
    huge_b = head + "completely different text {}\n" * 40_000
    assert embedder.count_tokens([huge_a, huge_b, head]) == [256, 256, 256]
    vecs = embedder.embed_documents([huge_a, huge_b, head])
    np.testing.assert_allclose(vecs[0], vecs[2], atol=1e-5)
    np.testing.assert_allclose(vecs[1], vecs[2], atol=1e-5)


def test_cutting_a_long_text_before_tokenising_changes_no_token(embedder: OnnxEmbedder) -> None:
    from tokenizers import Tokenizer

    full = Tokenizer.from_file(str(embedder.model.tokenizer_path))
    full.no_padding()
    full.enable_truncation(max_length=256)
    texts = [
        "x" * 5000 + " tail",  # one word longer than the cut
        "é" * 9000,
        "word " * 3000,
        JSON_CODE * 40,
        "a" * 4095 + " " + "b" * 300,  # a word straddling the cut
    ]
    for text, encs in zip(texts, embedder._encode(texts), strict=True):
        assert encs[0].ids == full.encode(text).ids, text[:20]


def test_window_mode_averages_over_the_whole_text(resolved: models.ResolvedModel) -> None:
    card = replace(resolved.card, long_text="window", max_tokens=64)
    win = OnnxEmbedder(replace(resolved, card=card), device="cpu")
    cut = OnnxEmbedder(replace(resolved, card=replace(card, long_text="truncate")), device="cpu")
    long_text = JSON_CODE * 2 + SORT_CODE * 6
    assert win.count_tokens([long_text])[0] > 64
    assert cut.count_tokens([long_text])[0] == 64
    a, b = win.embed_documents([long_text])[0], cut.embed_documents([long_text])[0]
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-5 and float(a @ b) < 0.99
    # A text that fits in one window embeds the same either way.
    np.testing.assert_allclose(
        win.embed_documents([SORT_CODE]), cut.embed_documents([SORT_CODE]), atol=1e-5
    )


def test_prefixes_come_from_the_card(resolved: models.ResolvedModel) -> None:
    card = replace(resolved.card, query_prefix="query: ", document_prefix="passage: ")
    emb = OnnxEmbedder(replace(resolved, card=card), device="cpu")
    plain = OnnxEmbedder(resolved, device="cpu")
    np.testing.assert_allclose(
        emb.embed_query("sort"), plain.embed_documents(["query: sort"])[0], atol=1e-5
    )
    np.testing.assert_allclose(
        emb.embed_documents(["x"]), plain.embed_documents(["passage: x"]), atol=1e-5
    )
    assert emb.count_tokens(["x"]) == plain.count_tokens(["passage: x"])


def test_stats_count_texts_tokens_and_time(resolved: models.ResolvedModel) -> None:
    emb = OnnxEmbedder(resolved, device="cpu")
    texts = [JSON_CODE, SORT_CODE, HTTP_CODE]
    emb.embed_documents(texts)
    snap = emb.stats.snapshot()
    assert snap["texts"] == 3 and snap["tokens"] == sum(emb.count_tokens(texts))
    assert snap["seconds"] > 0 and snap["tokens_per_s"] > 0 and snap["chunks_per_s"] > 0


def test_calls_from_many_threads_agree(embedder: OnnxEmbedder) -> None:
    texts = [JSON_CODE, SORT_CODE, HTTP_CODE]
    expected = embedder.embed_documents(texts)
    results: list[np.ndarray] = []
    workers = [
        threading.Thread(target=lambda: results.append(embedder.embed_documents(texts)))
        for _ in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 4
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_thread_cap(monkeypatch: pytest.MonkeyPatch, resolved: models.ResolvedModel) -> None:
    assert resolve_threads(3) == 3
    monkeypatch.setenv("KENNING_THREADS", "2")
    assert OnnxEmbedder(resolved, device="cpu").threads == 2
    monkeypatch.setenv("KENNING_THREADS", "lots")
    assert resolve_threads(None) >= 1
    with pytest.raises(ModelError):
        resolve_threads(0)


def test_a_folder_model_embeds_like_the_card(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resolved: models.ResolvedModel,
    embedder: OnnxEmbedder,
) -> None:
    folder = tmp_path / "mini"
    folder.mkdir()
    shutil.copy(resolved.model_path, folder / "model.onnx")
    shutil.copy(resolved.tokenizer_path, folder / "tokenizer.json")
    (folder / "card.json").write_text('{"max_tokens": 256, "cpu_int8": true}')
    monkeypatch.setenv("KENNING_MODEL", str(folder))
    emb = load_embedder(device="cpu")
    assert emb.model_id.startswith("local:mini@") and emb.dims == 384
    np.testing.assert_allclose(
        emb.embed_documents([JSON_CODE]), embedder.embed_documents([JSON_CODE]), atol=1e-5
    )


def test_broken_files_are_model_errors(tmp_path: Path, resolved: models.ResolvedModel) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    shutil.copy(resolved.tokenizer_path, folder / "tokenizer.json")
    emb = load_embedder(str(folder), device="cpu")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        emb.embed_documents(["x"])
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="tokenizers JSON"):
        load_embedder(str(folder), device="cpu")


def test_a_query_does_not_wait_behind_a_document_batch(resolved: models.ResolvedModel) -> None:
    # A search made while a first index embeds must not queue behind the batch
    # in flight: the document run here is held until the query has come back.
    emb = OnnxEmbedder(resolved, device="cpu", threads=1)
    real = emb.load()._session
    inside, release = threading.Event(), threading.Event()

    class Held:
        def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
            if feed["input_ids"].shape[1] > 40:  # the long document, not the query
                inside.set()
                release.wait(30)
            return real.run(names, feed)

    emb._session = Held()
    docs = threading.Thread(target=emb.embed_documents, args=([JSON_CODE * 3],))
    docs.start()
    try:
        assert inside.wait(30)
        got: list[np.ndarray] = []
        query = threading.Thread(target=lambda: got.append(emb.embed_query("read a json file")))
        query.start()
        query.join(20)
        assert got, "the query waited for the document batch"
        assert got[0].shape == (emb.dims,)
    finally:
        release.set()
        docs.join(30)
    assert emb.stats.snapshot()["texts"] == 1  # the document; queries are not indexing work
