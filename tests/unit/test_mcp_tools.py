"""The MCP tools' argument checks and answer sizes (no server needed)."""

from __future__ import annotations

import pytest

from kenning.errors import UsageError
from kenning.mcp import tools


def test_defaults_are_filled_in_and_kept_small() -> None:
    args = tools.check_arguments("search", {"query": "retry"})
    assert args["k"] == 8 and args["mode"] == "hybrid" and args["snippet_lines"] == 6
    assert args["lang"] is None and args["explain"] is False
    assert tools.check_arguments("patterns", None) == {"limit": 10}
    assert tools.check_arguments("status", {}) == {}


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("search", {"query": "x", "k": 51}, "k: must be at most 50, got 51"),
        ("search", {"query": "x", "k": 0}, "k: must be at least 1"),
        ("search", {"query": "x", "k": True}, "k: expected a whole number, got a boolean"),
        ("search", {"query": "x", "k": 2.5}, "k: expected a whole number"),
        ("search", {"query": ["x"]}, "query: expected a string, got a list"),
        ("search", {"query": "x" * 1001}, "query: 1001 characters; at most 1000"),
        ("search", {"query": "x", "lang": 3}, "lang: expected a string or a list of strings"),
        ("search", {"query": "x", "explain": "yes"}, "explain: expected true or false"),
        ("search", {"query": "x", "snippet_lines": 41}, "snippet_lines: must be at most 40"),
        ("search", {"k": 3}, "query is required"),
        ("search", {"query": "x", "q": 1}, "unknown argument 'q'"),
        ("duplicates", {"path": "a.py", "line": 1, "threshold": 0}, "must be more than 0"),
        ("duplicates", {"path": "a.py", "line": 1, "threshold": float("nan")}, "NaN"),
        ("similar", {"code": "x" * 20_001}, "code: 20001 characters; at most 20000"),
        ("match_templates", {"path": "a.py"}, "line is required"),
    ],
)
def test_a_wrong_argument_is_one_line_naming_it(tool: str, args: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        tools.check_arguments(tool, args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_whole_floats_pass_as_integers() -> None:
    # Some clients send every JSON number as a float.
    assert tools.check_arguments("search", {"query": "x", "k": 3.0})["k"] == 3


def test_filters_are_checked_before_any_index_is_asked() -> None:
    with pytest.raises(UsageError, match="unknown language 'klingon'"):
        tools.check_filters({"lang": ["klingon"]})
    assert tools.check_filters({"lang": ["py"], "glob": ["src/**"]}) == (["py"], ["src/**"])


def test_snippets_are_capped_by_lines_by_line_length_and_in_all() -> None:
    text = "\n".join(f"line {i} " + "x" * 500 for i in range(100))
    cut = tools.snippet_of(text, 3)
    assert len(cut.splitlines()) == 3
    assert all(len(line) <= tools.MAX_LINE_CHARS for line in cut.splitlines())
    assert len(tools.snippet_of(text, 40)) <= tools.MAX_SNIPPET_CHARS
    assert tools.snippet_of(text, 0) == ""


def test_every_tool_has_schemas_and_the_text_says_what_is_stale() -> None:
    for name, spec in tools.TOOLS.items():
        assert spec["input"]["type"] == "object", name
        assert spec["output"]["type"] == "object", name
    answer = {
        "results": [
            {
                "path": "a.py",
                "start_line": 3,
                "end_line": 9,
                "symbol": "load",
                "kind": "function",
                "score": 0.8,
                "snippet": "def load():\n    pass",
                "stale": True,
            }
        ],
        "phase": "embedding",
        "pending": 12,
    }
    text = tools.render_hits(answer)
    assert text.splitlines()[0] == "a.py:3-9  load  0.80  [stale: file changed since indexed]"
    assert "    def load():" in text
    assert text.splitlines()[-1].startswith("index: embedding, 12 chunks still to embed")
