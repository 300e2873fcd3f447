"""Wire conversions and argument checks of the language server."""

from __future__ import annotations

import json

import pytest

from kenning.engine.types import SearchHit
from kenning.errors import LocationError, UsageError
from kenning.lsp import convert


def hit(**kw) -> SearchHit:
    base = dict(
        path="src/a.py",
        start_line=3,
        end_line=9,
        symbol="f",
        kind="function",
        language="python",
        score=0.5,
        snippet="def f():\n    pass",
        root="/ws",
    )
    base.update(kw)
    return SearchHit(**base)


def test_hit_json_has_contract_fields_and_zero_based_whole_line_range():
    out = convert.hit_json(hit())
    assert out["uri"] == "file:///ws/src/a.py"
    assert out["range"] == {
        "start": {"line": 2, "character": 0},
        "end": {"line": 9, "character": 0},
    }
    assert {"symbol", "kind", "language", "score", "snippet"} <= set(out)


def test_symbol_information_has_a_location_and_a_name_for_anonymous_chunks():
    sym = convert.hit_symbol(hit(symbol=None, kind="window", snippet="\n  x = compute()\n"))
    assert sym.name == "x = compute()"
    assert sym.location.uri == "file:///ws/src/a.py"
    assert sym.location.range.start.line == 2


def test_bounded_drops_the_tail_to_fit():
    items = [{"snippet": "x" * 1000} for _ in range(500)]
    out = convert.bounded(items, limit=50_000)
    assert 0 < len(out) < 500
    assert len(json.dumps(out)) <= 50_000


@pytest.mark.parametrize(
    "obj, message",
    [
        ({}, "query: expected a non-empty string"),
        ({"query": "   "}, "query: expected a non-empty string"),
        ({"query": 3}, "query: expected a non-empty string"),
    ],
)
def test_bad_queries(obj, message):
    with pytest.raises(UsageError, match=message):
        convert.get_query(obj)


def test_k_is_checked_and_capped():
    assert convert.get_k({}, 20) == 20
    assert convert.get_k({"k": 5000}, 20) == convert.MAX_K
    for bad in (0, -1, "3", True, 2.5):
        with pytest.raises(UsageError, match="k: expected a positive integer"):
            convert.get_k({"k": bad}, 20)


def test_lang_and_glob_take_a_string_or_a_list():
    assert convert.get_str_list({"lang": "python"}, "lang") == ["python"]
    assert convert.get_str_list({"glob": ["a/**", "b/*"]}, "glob") == ["a/**", "b/*"]
    assert convert.get_str_list({}, "lang") is None
    with pytest.raises(UsageError, match="lang: expected a string or a list of strings"):
        convert.get_str_list({"lang": ["python", 3]}, "lang")


def test_one_object_argument():
    assert convert.one_object("kenning.status", []) == {}
    assert convert.one_object("kenning.status", [[]]) == {}  # Neovim's empty table
    assert convert.one_object("kenning.search", [{"query": "x"}]) == {"query": "x"}
    with pytest.raises(UsageError, match="takes one object argument"):
        convert.one_object("kenning.search", ["x"])
    with pytest.raises(UsageError, match="takes one object argument"):
        convert.one_object("kenning.search", [{}, {}])


def test_locations_from_position_and_range():
    assert convert.get_location(
        {"uri": "file:///a.py", "position": {"line": 4, "character": 2}}
    ) == ("file:///a.py", 5, None)
    # A range ending at character 0 of a line does not include that line.
    r = {"start": {"line": 2, "character": 0}, "end": {"line": 6, "character": 0}}
    assert convert.get_location({"uri": "file:///a.py", "range": r}) == ("file:///a.py", 3, 6)
    r = {"start": {"line": 2, "character": 0}, "end": {"line": 6, "character": 3}}
    assert convert.get_location({"uri": "file:///a.py", "range": r}) == ("file:///a.py", 3, 7)
    with pytest.raises(UsageError, match="position"):
        convert.get_location({"uri": "file:///a.py", "position": {"line": -1}})
    with pytest.raises(UsageError, match=r"expected \{uri, position\} or \{uri, range\}"):
        convert.get_location({"uri": "file:///a.py"})


def test_uris():
    assert str(convert.uri_to_path("file:///ws/a%20b.py")) == "/ws/a b.py"
    with pytest.raises(LocationError, match="only file: URIs"):
        convert.uri_to_path("untitled:Untitled-1")
