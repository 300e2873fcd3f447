"""The CLI as a user runs it: JSON on stdout only, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import write_tree


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kenning", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ),
        timeout=300,
    )


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "ws",
        {
            "src/config.py": '''
            import json


            def load_config(path):
                """Read a JSON config file and return it as a dict."""
                with open(path) as fh:
                    return json.load(fh)
            ''',
            "src/users.py": """
            def sort_users_by_age(users):
                return sorted(users, key=lambda u: u.age)
            """,
            "node_modules/dep/index.js": "module.exports = {}\n",
        },
    )


def test_index_json_shape(ws: Path) -> None:
    out = run("index", "--no-embed", "--json", "--path", str(ws))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in (
        "files",
        "changed",
        "chunks",
        "embedded",
        "cached",
        "deleted",
        "skipped",
        "took_s",
        "model",
        "device",
    ):
        assert key in data
    assert data["files"] == 2 and data["changed"] == 2 and data["skipped"] >= 1
    again = json.loads(run("index", "--no-embed", "--json", "--path", str(ws)).stdout)
    assert again["changed"] == 0


def test_lexical_search_json_shape_and_cwd_default(ws: Path) -> None:
    out = run("search", "json", "config", "--mode", "lexical", "--json", cwd=ws)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["query"] == "json config" and isinstance(data["took_ms"], float)
    top = data["results"][0]
    assert top["path"] == "src/config.py"
    assert set(top) >= {
        "path",
        "start_line",
        "end_line",
        "symbol",
        "kind",
        "language",
        "score",
        "snippet",
    }
    assert top["language"] == "python" and 1 <= top["start_line"] <= top["end_line"]


def test_search_filters(ws: Path) -> None:
    data = json.loads(
        run(
            "search",
            "users",
            "config",
            "--mode",
            "lexical",
            "--json",
            "--glob",
            "**/users.py",
            "--path",
            str(ws),
        ).stdout
    )
    assert [r["path"] for r in data["results"]] == ["src/users.py"]
    data = json.loads(
        run(
            "search", "users", "--mode", "lexical", "--json", "--lang", "rust", "--path", str(ws)
        ).stdout
    )
    assert data["results"] == []


def test_status_json(ws: Path) -> None:
    run("index", "--no-embed", "--path", str(ws))
    out = run("status", "--json", "--path", str(ws))
    data = json.loads(out.stdout)
    assert data["files"] == 2 and data["chunks"] >= 2
    # Nothing embedded yet: what the first embedding would use, model unloaded.
    assert data["embedding_source"] == "planned"
    assert data["model"] == "all-minilm-l6-v2-int8" and data["device"] in ("cpu", "cuda")
    assert data["precision"] in ("int8", "fp32")
    assert out.stderr == ""
    assert data["skip_reasons"].get("excluded", 0) + data["skip_reasons"].get("vendored", 0) >= 1


def test_several_roots(ws: Path, tmp_path: Path) -> None:
    other = write_tree(tmp_path / "other", {"lib.py": "def parse_json_config():\n    pass\n"})
    data = json.loads(
        run(
            "search",
            "json",
            "config",
            "--mode",
            "lexical",
            "--json",
            "--path",
            str(ws),
            "--path",
            str(other),
        ).stdout
    )
    assert {r["root"] for r in data["results"]} == {str(ws.resolve()), str(other.resolve())}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x", "--path", "/no/such/dir"], "no such folder"),
        (["similar", "missing.py:3", "--path", "{ws}"], "no such file"),
        (["similar", "src/config.py", "--path", "{ws}"], "FILE:LINE"),
        (["similar", "/etc/passwd:1", "--path", "{ws}"], "outside the workspace"),
    ],
)
def test_user_errors_are_one_line_exit_1(ws: Path, args: list[str], message: str) -> None:
    out = run(*[a.replace("{ws}", str(ws)) for a in args])
    assert out.returncode == 1, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr


def test_bad_usage_exits_2(ws: Path) -> None:
    out = run("search", "x", "--mode", "fuzzy", "--path", str(ws))
    assert out.returncode == 2 and "invalid choice" in out.stderr
    assert run("frobnicate").returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x", "--lang", "notalang"], "unknown language 'notalang'"),
        (["search", "x", "--lang", "pyhton"], "did you mean python?"),
        (["search", "x", "--glob", "["], "bad glob '[': an unclosed ["),
        (["search", "x", "--glob", "[z-a]"], "bad glob '[z-a]'"),
        (["search", "x", "--exclude", "#x"], "bad glob '#x'"),
        (["search", "x", "-k", "0"], "argument -k: must be at least 1, got 0"),
        (["search", "x", "-k", "-5"], "must be at least 1, got -5"),
        (["search", "x", "-k", "many"], "expected a whole number, got 'many'"),
        (["search", "x", "--max-wait", "-1"], "must be 0 or more seconds"),
        (["search", "x", "--max-wait", "nan"], "must be 0 or more seconds"),
        (["similar", "src/config.py:1", "-k", "0"], "must be at least 1"),
        (["templates", "match", "src/config.py:1", "-k", "0"], "must be at least 1"),
        (["templates", "list", "--lang", "notalang"], "unknown language"),
        (["patterns", "--threshold", "0"], "must be in (0, 1]"),
        (["patterns", "--threshold", "nan"], "must be in (0, 1]"),
        (["patterns", "--min-size", "1"], "must be at least 2"),
        (["patterns", "--limit", "0"], "must be at least 1"),
    ],
)
def test_bad_filters_and_numbers_are_bad_usage_in_one_line(
    ws: Path, args: list[str], message: str
) -> None:
    out = run(*args, "--path", str(ws))
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    if "unknown language" in message:
        assert "python" in lines[0] and "typescript" in lines[0]  # the known ones, named


def test_language_aliases_are_what_users_type(ws: Path) -> None:
    def paths(*lang: str) -> list[str]:
        out = run(
            "search", "users", "config", "--mode", "lexical", "--json", "--path", str(ws), *lang
        )
        assert out.returncode == 0, out.stderr
        return sorted({r["path"] for r in json.loads(out.stdout)["results"]})

    assert paths("--lang", "py") == paths("--lang", "Python") == ["src/config.py", "src/users.py"]
    assert paths("--lang", "rs") == []


def test_a_file_with_a_bad_byte_is_searchable_and_skips_are_listed(tmp_path: Path) -> None:
    ws = write_tree(
        tmp_path / "bytes",
        {
            "legacy.py": b"# Fran\xe7ois wrote this\n\ndef rotate_log_files(folder):\n"
            b"    return sorted(folder.iterdir())\n",
            "stray.py": b"SEP = '\x00'\n\n\ndef split_on_separator(text):\n    return text.split(SEP)\n",
            "tool.bin.py": bytes(range(256)) * 4,
            "package-lock.json": "{}\n",
        },
    )
    for query, path in [("rotate log files", "legacy.py"), ("split on separator", "stray.py")]:
        out = run("search", query, "--mode", "lexical", "--json", "--path", str(ws))
        assert out.returncode == 0 and out.stderr == "", out.stderr
        assert json.loads(out.stdout)["results"][0]["path"] == path

    data = json.loads(run("status", "--skipped", "--json", "--path", str(ws)).stdout)
    assert data["skipped_files"] == [
        {"path": "package-lock.json", "reason": "lockfile"},
        {"path": "tool.bin.py", "reason": "binary"},
    ]
    assert data["files"] == 2 and data["skipped"] == 2
    text = run("status", "--skipped", "--path", str(ws))
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert any("lockfile" in ln and "package-lock.json" in ln for ln in lines)
    assert any("binary" in ln and "tool.bin.py" in ln for ln in lines)


def test_every_command_is_documented_in_the_readme() -> None:
    from kenning.cli import COMMANDS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in COMMANDS:
        assert f"kenning {name}" in readme, f"`kenning {name}` is missing from README.md"


_FIXTURES = Path(__file__).parents[1] / "fixtures" / "near_duplicates"
# Shared with the language server's duplicate tests; each starts with "import time".
FETCH = (_FIXTURES / "profile.py").read_text()
FETCH_COPY = (_FIXTURES / "billing.py").read_text()
UNRELATED = (_FIXTURES / "stats.py").read_text()


@pytest.mark.model
def test_patterns_finds_a_renamed_copy_and_saves_it_as_a_template(tmp_path: Path) -> None:
    ws = write_tree(
        tmp_path / "dups",
        {
            "a/profile.py": FETCH,
            "b/billing.py": FETCH_COPY,
            "c/stats.py": UNRELATED,
        },
    )
    out = run("patterns", "--json", "--path", str(ws))
    assert out.returncode == 0, out.stderr
    clusters = json.loads(out.stdout)["clusters"]
    assert len(clusters) == 1
    paths = {clusters[0]["canonical"]["path"]} | {m["path"] for m in clusters[0]["members"]}
    assert paths == {"a/profile.py", "b/billing.py"}
    assert clusters[0]["size"] == 2 and clusters[0]["languages"] == ["python"]

    saved = run("patterns", "--json", "--save-template", "c1", "--path", str(ws))
    assert saved.returncode == 0, saved.stderr
    listed = json.loads(run("templates", "list", "--json", "--path", str(ws)).stdout)["templates"]
    mine = [t for t in listed if t["source"] == "workspace"]
    assert len(mine) == 1 and mine[0]["languages"] == ["python"]
    bad = run("patterns", "--save-template", "c9", "--path", str(ws))
    assert bad.returncode == 1 and "no cluster 'c9'" in bad.stderr


def test_templates_list_json() -> None:
    data = json.loads(run("templates", "list", "--json").stdout)["templates"]
    assert len(data) >= 30
    assert len({lang for t in data for lang in t["languages"]}) >= 6
    assert set(data[0]) >= {"id", "name", "languages", "description", "source"}


@pytest.mark.model
def test_templates_match_json(tmp_path: Path) -> None:
    ws = write_tree(tmp_path / "t", {"client.py": FETCH})
    out = run("templates", "match", "client.py:5", "--json", "--path", str(ws))
    assert out.returncode == 0, out.stderr
    matches = json.loads(out.stdout)["matches"]
    assert matches and set(matches[0]) >= {"id", "name", "languages", "score", "why"}
    assert "retr" in matches[0]["id"] or "http" in matches[0]["id"]


def test_models_list_json() -> None:
    data = json.loads(run("models", "list", "--json").stdout)["models"]
    default = [m for m in data if m["id"] == "all-minilm-l6-v2-int8"]
    assert default and default[0]["available"] is True


@pytest.mark.model
def test_stderr_stays_quiet_and_status_names_the_device(ws: Path) -> None:
    out = run("search", "read a json config file", "--path", str(ws))
    assert out.returncode == 0
    # Loading the model, picking a device, deriving int8 weights: -v only.
    assert out.stderr == ""
    assert out.stdout.split()[1].startswith("src/config.py:"), out.stdout
    loud = run("search", "read a json config file", "-v", "--path", str(ws))
    assert "model all-minilm-l6-v2-int8" in loud.stderr, loud.stderr
    status = json.loads(run("status", "--json", "--path", str(ws)).stdout)
    assert status["embedding_source"] == "index"
    assert status["device"] in ("cpu", "cuda") and status["precision"] in ("int8", "fp32")
    # A user error after the model has loaded is still the one line.
    bad = run("similar", "src/config.py:999", "--path", str(ws))
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1, bad.stderr


def test_duplicates_lists_the_renamed_copy_of_the_chunk_at_a_line(tmp_path: Path) -> None:
    from tests.e2e.test_lsp_duplicates import FILES

    dups = write_tree(tmp_path / "dups", FILES)
    out = run("duplicates", "a/profile.py:6", "--json", "--path", str(dups))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [(r["path"], r["symbol"]) for r in data["results"]] == [("b/billing.py", "load_account")]
    assert data["results"][0]["score"] >= 0.85 and data["threshold"] == 0.85
    assert data["chunk"] == {"start_line": 4, "end_line": 11}

    # Text for people; a chunk with no near-duplicate says so; a stricter threshold drops it.
    text = run("duplicates", "a/profile.py:6", "--path", str(dups), "--no-refresh")
    assert "b/billing.py:4-" in text.stdout and "load_account" in text.stdout
    alone = run("duplicates", "c/stats.py:6", "--path", str(dups), "--no-refresh")
    assert alone.returncode == 0 and alone.stdout.startswith("no near-duplicates of c/stats.py:6")
    strict = run("duplicates", "a/profile.py:6", "--json", "--threshold", "1", "--path", str(dups))
    assert json.loads(strict.stdout)["results"] == []

    # A line past the end of the file is a user error: one line, exit 1.
    bad = run("duplicates", "a/profile.py:999", "--path", str(dups), "--no-refresh")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
