"""Hybrid fusion: how the lexical and vector lists are blended and ordered."""

from __future__ import annotations

from kenning.engine.search import rank_fused


def test_a_lone_word_match_beats_a_vector_list_that_tells_nothing_apart() -> None:
    # Chunk 9 alone holds the query's words and has no vector yet (just edited);
    # the vector list scores every candidate the same, so each is "the best" of
    # its list. Equal fused scores go to the chunk with word evidence.
    lexical = [(9, -7.5)]
    vector = [(1, 0.31), (2, 0.31), (3, 0.31)]
    ranked = rank_fused(lexical, vector)
    assert ranked[0][0] == 9
    assert [cid for cid, _ in ranked[1:]] == [1, 2, 3]
    # Before, ties went by chunk id, and chunk 9 came last.
