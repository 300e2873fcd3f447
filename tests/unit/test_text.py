"""Identifier splitting for the FTS index."""

from __future__ import annotations

import random
import re

from kenning.engine.text import fts_symbol, query_words, split_case, words_of


def two_pass_split(text: str) -> str:
    """The rule spelled out as two substitutions: small letter or digit before a
    capital, then a capital before a capitalised word."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    return re.sub(r"([A-Z])([A-Z][a-z])", r"\1 \2", text)


def test_case_boundaries_open_up() -> None:
    assert split_case("parseHTTPResponse2") == "parse HTTP Response2"
    assert split_case("getX") == "get X"
    assert split_case("HTMLParser xmlHTTP") == "HTML Parser xml HTTP"
    assert split_case("v2Api snake_case ALLCAPS") == "v2 Api snake_case ALLCAPS"
    assert split_case("déjàVu") == "déjàVu"  # only ASCII letters mark a boundary
    assert split_case("") == ""
    assert fts_symbol("Store.writeFile") == "Store.writeFile Store.write File"
    assert fts_symbol("plain") == "plain"


def test_split_matches_the_two_pass_rule_on_random_text() -> None:
    rng = random.Random(7)
    alphabet = "aAbBzZ09 _\n.(\u00e9\u00c9"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert split_case(text) == two_pass_split(text), text


def test_a_query_and_a_name_are_compared_word_by_word() -> None:
    # What the name priors of search compare: the words, never the whole identifier.
    assert words_of("SmallVec.is_empty") == {"small", "vec", "is", "empty"}
    assert words_of("parseHTTPResponse2") == {"parse", "http", "response", "2"}
    assert query_words("Returns true if the vector is empty.") >= {"vector", "empty"}
    assert "the" not in query_words("the vector") and "is" not in query_words("is empty")
