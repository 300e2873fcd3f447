"""The template library: built-in content, file loading, reloads, snippets, matching."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from kenning.engine.templates import (
    SnippetError,
    TemplateLibrary,
    builtin_dir,
    comment_request,
    parse_template_file,
    snippet_to_text,
    validate_snippet,
)
from kenning.errors import UsageError

# ---------------------------------------------------------------------------
# Embedders


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder: texts sharing words are similar."""

    model_id = "fake-hash-64"

    space = "fake-hash-64"
    dims = 64

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dims, dtype=np.float32)
        for word in re.findall(r"[a-z]+", text.lower()):
            vec[zlib.crc32(word.encode()) % self.dims] += 1.0
        norm = np.linalg.norm(vec)
        return vec / norm if norm else vec

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dims))

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


def MiniLM():
    """The default model through the engine's own embedder (offline)."""
    from kenning.engine.embedder import load_embedder

    return load_embedder(threads=2)


def make_library(
    tmp_path: Path, embedder: object | None = None, **kwargs: object
) -> TemplateLibrary:
    kwargs.setdefault("check_interval", 0.0)
    kwargs.setdefault("disk_cache", False)
    return TemplateLibrary(
        tmp_path / "ws",
        user_dir=tmp_path / "user",
        embedder=embedder,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def write_template(folder: Path, name: str, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def bump_mtime(path: Path) -> None:
    # Coarse filesystem clocks can give an edit the same mtime as the write before it.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


GOOD = {
    "id": "ws-greeter",
    "name": "Greeter",
    "languages": ["python"],
    "description": "Print a friendly greeting.",
    "keywords": ["greeting", "hello"],
    "body": 'def ${1:greet}(name):\n    print(f"hello {name}")\n$0',
}

# ---------------------------------------------------------------------------
# The built-in library


@pytest.fixture(scope="module")
def builtins() -> list:
    templates = []
    for path in sorted(builtin_dir().glob("*.json")):
        found, problems = parse_template_file(path, "builtin")
        assert problems == [], problems
        templates.extend(found)
    return templates


def test_builtin_library_is_large_and_covers_six_languages(builtins: list) -> None:
    assert len(builtins) >= 30
    languages = {lang for t in builtins for lang in t.languages}
    assert {"python", "typescript", "go", "rust", "elixir", "java"} <= languages


def test_builtin_ids_are_unique_across_files(builtins: list) -> None:
    ids = [t.id for t in builtins]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_every_builtin_template_is_complete(builtins: list) -> None:
    for t in builtins:
        assert t.name.strip() and t.description.strip(), t.id
        assert len(t.keywords) >= 3, t.id
        assert t.id.startswith(t.languages[0] + "-"), t.id
        numbers = validate_snippet(t.body)
        assert 0 in numbers, f"{t.id}: no final $0"
        assert 1 in numbers, f"{t.id}: no tab stop to fill in"
        assert snippet_to_text(t.body).strip(), t.id


def test_builtin_templates_load_through_the_library_without_problems(tmp_path: Path) -> None:
    lib = make_library(tmp_path)
    assert lib.problems == []
    assert {t.source for t in lib.templates()} == {"builtin"}
    assert lib.get("elixir-genserver").name == "GenServer"


def test_python_templates_compile(builtins: list) -> None:
    for t in builtins:
        if "python" in t.languages:
            compile(snippet_to_text(t.body), t.id, "exec")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_templates_parse(builtins: list, tmp_path: Path) -> None:
    for t in builtins:
        if "bash" in t.languages:
            script = tmp_path / f"{t.id}.sh"
            script.write_text(snippet_to_text(t.body))
            subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript_templates_parse(builtins: list, tmp_path: Path) -> None:
    for t in builtins:
        if t.languages == ("javascript",):
            script = tmp_path / f"{t.id}.mjs"
            script.write_text(snippet_to_text(t.body))
            subprocess.run(["node", "--check", str(script)], check=True)


def test_escapes_in_builtins_render_as_the_language_needs(tmp_path: Path) -> None:
    lib = make_library(tmp_path)
    assert "def start_link(opts \\\\ []) do" in lib.get("elixir-genserver").text
    assert "case $opt in" in lib.get("bash-script-strict").text
    assert "WHERE id = $1" in lib.get("go-repository-sql").text
    assert "`HTTP ${res.status}`" in lib.get("typescript-react-fetch-hook").text
    assert "\tif r.Method != http.MethodPost {" in lib.get("go-http-handler").text


# ---------------------------------------------------------------------------
# Snippets


def test_snippet_to_text_fills_placeholders_mirrors_choices_and_variables() -> None:
    body = "def ${1:name}(${2:x}):\n    return $1(${3|a,b|}) + ${TM_X:dflt} + $HOME\\$ \\}$0"
    assert snippet_to_text(body) == "def name(x):\n    return name(a) + dflt + HOME$ }"
    assert snippet_to_text("${1:outer ${2:inner}} $2") == "outer inner inner"
    assert snippet_to_text("$TM_FILENAME_BASE", {"TM_FILENAME_BASE": "user"}) == "user"
    assert snippet_to_text("${1:a \\} b}") == "a } b"
    assert snippet_to_text("cost: $ 5, {braces} ok") == "cost: $ 5, {braces} ok"
    assert snippet_to_text("${TM_FILENAME/(.*)\\..+$/$1/}x") == "TM_FILENAMEx"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a\n  ${1:oops", "line 2 column 3 is never closed"),
        ("${ x}", "must be followed by a tabstop number or a variable name"),
        ("${1|a,b}", "never closed"),
        ("${1!}", "must continue with"),
    ],
)
def test_invalid_snippets_name_the_place(body: str, message: str) -> None:
    with pytest.raises(SnippetError, match=re.escape(message)):
        validate_snippet(body)


def test_validate_snippet_lists_tabstops_in_order() -> None:
    assert validate_snippet("${1:a ${2:b}} $3 ${4|x,y|} $0") == [1, 2, 3, 4, 0]


# ---------------------------------------------------------------------------
# Comment requests


@pytest.mark.parametrize(
    "line",
    [
        "# kenning: http client with retries",
        "    // kenning: http client with retries",
        "-- kenning: http client with retries",
        ";; kenning: http client with retries",
        "/* kenning: http client with retries */",
        "<!-- kenning: http client with retries -->",
        "#kenning:http client with retries",
        "  % KENNING: http client with retries  \n",
        " * kenning: http client with retries",
    ],
)
def test_comment_request_reads_every_comment_syntax(line: str) -> None:
    assert comment_request(line) == "http client with retries"


@pytest.mark.parametrize(
    "line",
    ["x = 1  # kenning: http client", "# kenning:", "// kenning:   ", "# todo: kenning", ""],
)
def test_comment_request_ignores_other_lines(line: str) -> None:
    assert comment_request(line) is None


# ---------------------------------------------------------------------------
# Files, problems, overrides, reloads


def test_invalid_template_files_are_reported_and_the_others_keep_working(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ws" / ".kenning" / "templates"
    write_template(folder, "good.json", GOOD)
    (folder / "broken.json").write_text('{"id": "x",', encoding="utf-8")
    bad_body = write_template(
        folder,
        "mixed.json",
        {
            "templates": [
                {**GOOD, "id": "bad-body", "body": 42},
                {**GOOD, "id": "fine-too", "keywords": ["other"]},
            ]
        },
    )
    write_template(folder, "snippet.json", {**GOOD, "id": "bad-snippet", "body": "x ${1:y"})
    write_template(folder, "nolang.json", {**GOOD, "id": "no-lang", "languages": []})
    lib = make_library(tmp_path)

    ids = {t.id for t in lib.templates()}
    assert {"ws-greeter", "fine-too", "elixir-genserver"} <= ids
    assert not ids & {"x", "bad-body", "bad-snippet", "no-lang"}
    problems = lib.problems
    assert len(problems) == 4, problems
    assert any(p.startswith(f"{folder / 'broken.json'}: invalid JSON at line 1") for p in problems)
    assert (
        f"{bad_body}: templates[0] ('bad-body'): field 'body': must be a string or a list of "
        "strings, not a number"
    ) in problems
    assert any(
        p.startswith(f"{folder / 'snippet.json'}: field 'body': invalid snippet:") for p in problems
    )
    assert f"{folder / 'nolang.json'}: field 'languages': must name at least one entry" in problems
    assert all("\n" not in p for p in problems)
    # Matching still works with the broken files present.
    assert lib.match_query("friendly greeting", "python")[0].template.id == "ws-greeter"


def test_unknown_fields_are_reported_but_the_template_loads(tmp_path: Path) -> None:
    folder = tmp_path / "ws" / ".kenning" / "templates"
    path = write_template(folder, "t.json", {**GOOD, "keyword": ["typo"]})
    lib = make_library(tmp_path)
    assert lib.get("ws-greeter").source == "workspace"
    assert lib.problems == [f"{path}: field 'keyword': unknown field (ignored)"]


def test_workspace_overrides_user_overrides_builtin(tmp_path: Path) -> None:
    user = write_template(
        tmp_path / "user", "mine.json", {**GOOD, "id": "elixir-genserver", "name": "User GS"}
    )
    lib = make_library(tmp_path)
    template = lib.get("elixir-genserver")
    assert (template.name, template.source, template.file) == ("User GS", "user", str(user))

    write_template(
        tmp_path / "ws" / ".kenning" / "templates",
        "gs.json",
        [{**GOOD, "id": "elixir-genserver", "name": "Project GS"}],
    )
    template = lib.get("elixir-genserver")
    assert (template.name, template.source) == ("Project GS", "workspace")
    assert len([t for t in lib.templates() if t.id == "elixir-genserver"]) == 1


def test_template_edited_on_disk_is_used_without_a_restart(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    folder = tmp_path / "ws" / ".kenning" / "templates"
    path = write_template(folder, "greeter.json", GOOD)
    lib = make_library(tmp_path, embedder, check_interval=0.05)
    assert lib.match_query("friendly greeting", "python")[0].template.id == "ws-greeter"
    embedded_before = len(embedder.embedded)

    edited = {
        **GOOD,
        "name": "Farewell",
        "description": "Wave goodbye politely.",
        "keywords": ["farewell", "goodbye"],
        "body": "def ${1:bye}():\n    print('goodbye')\n$0",
    }
    path.write_text(json.dumps(edited), encoding="utf-8")
    bump_mtime(path)
    lib.reload(force=True)  # what the next call after check_interval does by itself

    best = lib.match_query("wave goodbye politely", "python")[0]
    assert (best.template.id, best.template.name) == ("ws-greeter", "Farewell")
    assert "goodbye" in best.why
    # Only the edited template was embedded again: its card and its body.
    assert len(embedder.embedded) - embedded_before == 2
    assert any("Wave goodbye politely" in text for text in embedder.embedded[embedded_before:])


def test_changes_are_noticed_after_the_check_interval(tmp_path: Path) -> None:
    folder = tmp_path / "ws" / ".kenning" / "templates"
    lib = make_library(tmp_path, check_interval=0.2)
    assert "ws-greeter" not in {t.id for t in lib.templates()}
    write_template(folder, "greeter.json", GOOD)
    # Within the interval the library does not even look at the disk...
    assert "ws-greeter" not in {t.id for t in lib.templates()}
    time.sleep(0.25)
    # ...after it, the new file is there.
    assert lib.get("ws-greeter").source == "workspace"
    (folder / "greeter.json").unlink()
    time.sleep(0.25)
    with pytest.raises(UsageError, match="unknown template 'ws-greeter'"):
        lib.get("ws-greeter")


def test_unknown_template_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="kenning templates list"):
        make_library(tmp_path).get("no-such-template")


# ---------------------------------------------------------------------------
# Matching


# An Elixir module written like a GenServer, shared with the other template tests.
GENSERVER_LIKE = (Path(__file__).parents[1] / "fixtures" / "genserver_like.ex").read_text()


def test_keyword_matching_without_a_model(tmp_path: Path) -> None:
    lib = make_library(tmp_path)
    matches = lib.match(GENSERVER_LIKE, "elixir")
    assert matches[0].template.id == "elixir-genserver"
    assert "handle_call" in matches[0].why and "no embedding model" in matches[0].why
    assert all(m.score > 0 for m in matches)
    # Other languages are not candidates when the language has templates.
    assert {m.language for m in matches} == {"elixir"}
    assert lib.match("zzz qqq", "elixir") == []


def test_query_matching_without_a_model_uses_keywords_and_plurals(tmp_path: Path) -> None:
    lib = make_library(tmp_path)
    best = lib.match_query("http client with retries", "python")[0]
    assert best.template.id == "python-http-client-retry"
    assert "http client" in best.why and "retry" in best.why


def test_match_json_shape(tmp_path: Path) -> None:
    lib = make_library(tmp_path, FakeEmbedder())
    out = lib.match(GENSERVER_LIKE, "elixir", k=2)
    assert len(out) == 2
    data = out[0].to_json()
    assert data["id"] == "elixir-genserver"
    assert data["languages"] == ["elixir"] and data["language"] == "elixir"
    assert data["source"] == "builtin"
    assert isinstance(data["score"], float) and 0 < data["score"] <= 1
    assert data["why"].startswith("similar to ")
    json.dumps(data)
    assert out[0].score >= out[1].score


def test_language_aliases_and_fallback(tmp_path: Path) -> None:
    lib = make_library(tmp_path, FakeEmbedder())
    tsx = lib.match_query("react component with state", "typescriptreact")
    assert tsx[0].template.id == "typescript-react-component"
    assert all("typescript" in m.template.languages for m in tsx)
    kotlin = lib.match_query("http client with retries", "kotlin")
    assert kotlin, "a language with no templates falls back to all of them"
    assert all("no templates for kotlin" in m.why for m in kotlin)
    assert len({lang for m in kotlin for lang in m.template.languages}) > 1


def test_match_vector_uses_a_precomputed_vector(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    lib = make_library(tmp_path, embedder)
    via_text = lib.match(GENSERVER_LIKE, "elixir")
    via_vector = lib.match_vector(
        embedder.embed_documents([GENSERVER_LIKE])[0], GENSERVER_LIKE, "elixir"
    )
    assert [(m.template.id, m.score) for m in via_text] == [
        (m.template.id, m.score) for m in via_vector
    ]


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    lib = make_library(tmp_path)
    with pytest.raises(UsageError):
        lib.match("x", "python", k=0)
    with pytest.raises(UsageError):
        lib.match_query("   ")


def test_vectors_are_cached_on_disk_per_model(tmp_path: Path) -> None:
    first = FakeEmbedder()
    lib = make_library(tmp_path, first, disk_cache=True, cache_dir=tmp_path / "cache")
    lib.warm()
    embedded_once = len(first.embedded)
    assert embedded_once > 60
    assert (tmp_path / "cache" / "fake-hash-64.npz").is_file()

    second = FakeEmbedder()
    lib2 = make_library(tmp_path, second, disk_cache=True, cache_dir=tmp_path / "cache")
    lib2.warm()
    assert second.embedded == []
    assert [m.template.id for m in lib2.match(GENSERVER_LIKE, "elixir")] == [
        m.template.id for m in lib.match(GENSERVER_LIKE, "elixir")
    ]

    (tmp_path / "cache" / "fake-hash-64.npz").write_bytes(b"not a zip")
    third = FakeEmbedder()
    make_library(tmp_path, third, disk_cache=True, cache_dir=tmp_path / "cache").warm()
    assert len(third.embedded) == embedded_once  # a broken cache is just rebuilt


# ---------------------------------------------------------------------------
# With the real model


@pytest.fixture(scope="module")
def real_library(tmp_path_factory: pytest.TempPathFactory) -> TemplateLibrary:
    root = tmp_path_factory.mktemp("real")
    lib = TemplateLibrary(
        root / "ws", user_dir=root / "user", embedder=MiniLM(), cache_dir=root / "cache"
    )
    lib.warm()
    return lib


@pytest.mark.model
@pytest.mark.parametrize("language", ["elixir", None])
def test_genserver_like_module_matches_the_genserver_template_first(
    real_library: TemplateLibrary, language: str | None
) -> None:
    matches = real_library.match(GENSERVER_LIKE, language)
    assert matches[0].template.id == "elixir-genserver", [m.why for m in matches]
    assert matches[0].score - matches[1].score > 0.1
    assert "similar to" in matches[0].why and "handle_call" in matches[0].why


@pytest.mark.model
def test_http_client_code_matches_by_meaning(real_library: TemplateLibrary) -> None:
    # Written without the template's keywords: urllib, a loop, sleep.
    code = """def download(url, tries=4):
    last = None
    for n in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read()
        except urllib.error.URLError as exc:
            last = exc
            time.sleep(0.5 * 2 ** n)
    raise last
"""
    ids = [m.template.id for m in real_library.match(code, "python", k=2)]
    assert ids[0] in {"python-http-client-retry", "python-retry-decorator"}, ids
    assert set(ids) == {"python-http-client-retry", "python-retry-decorator"}


@pytest.mark.model
@pytest.mark.parametrize(
    ("line", "language", "expected"),
    [
        ("# kenning: http client with retries", "python", "python-http-client-retry"),
        ("// kenning: worker pool that shuts down gracefully", "go", "go-worker-graceful-shutdown"),
        ("// kenning: error type", "rust", "rust-error-enum"),
        ("# kenning: supervision tree", "elixir", "elixir-supervisor"),
        ("// kenning: unit test", "java", "java-junit5-test"),
    ],
)
def test_comment_requests_find_the_template(
    real_library: TemplateLibrary, line: str, language: str, expected: str
) -> None:
    query = comment_request(line)
    assert query is not None
    top = [m.template.id for m in real_library.match_query(query, language, k=2)]
    assert expected in top, top
