"""Identifier splitting for the FTS index."""

from __future__ import annotations

import random
import re

from kenning.engine.text import fts_symbol, split_case


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
