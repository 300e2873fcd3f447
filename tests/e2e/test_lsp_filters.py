"""kenning.search's lang and glob filters: a filter that cannot match is an error, not []."""

from __future__ import annotations

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from .conftest import VSCODE, uri, write_files

INVALID_PARAMS = -32602

FILES = {
    "lib/tokens.py": '''
        def tokenize_sentence(text):
            """Split a sentence into word tokens."""
            return text.split()
        ''',
    "web/split.ts": """
        export function splitSentence(text: string): string[] {
          return text.split(" ");
        }
        """,
}


@pytest.mark.parametrize("caps", [VSCODE])
async def test_bad_filters_are_invalid_params_in_every_folder_layout(started, tmp_path):
    # Two folders: a per-folder error would only be logged there, and the
    # answer an empty list.
    first, second = tmp_path / "one", tmp_path / "two"
    write_files(first, FILES)
    write_files(second, {"app/main.go": "package app\n\nfunc SplitWords() {}\n"})
    s = await started(roots=[first, second])
    await s.idle()
    cases = [
        ({"lang": "notalang"}, "lang: unknown language 'notalang'"),
        ({"lang": ["python", "pyhton"]}, "did you mean python?"),
        ({"glob": "["}, "glob: bad glob '[': an unclosed ["),
        ({"glob": ["lib/**", "[z-a]"]}, "'[z-a]'"),
        ({"glob": "#x"}, "comment"),
    ]
    for filters, expected in cases:
        with pytest.raises(JsonRpcException) as err:
            await s.search("split sentence", mode="lexical", **filters)
        assert err.value.code == INVALID_PARAMS, err.value
        assert expected in err.value.message, (expected, err.value.message)
        assert "\n" not in err.value.message
        if "unknown language" in expected:
            assert "python, r, rst" in err.value.message  # the known languages, named

    # The spellings users type, and braces and negations in globs.
    def paths(out):
        return sorted(r["uri"] for r in out["results"])

    py = uri(first / "lib/tokens.py")
    ts = uri(first / "web/split.ts")
    go = uri(second / "app/main.go")
    assert paths(await s.search("split sentence", mode="lexical", lang="py")) == [py]
    assert paths(await s.search("split", mode="lexical", lang=["TS", "golang"])) == sorted([ts, go])
    assert paths(await s.search("split", mode="lexical", glob="**/*.{ts,go}")) == sorted([ts, go])
    assert paths(await s.search("split", mode="lexical", glob="!web/**")) == sorted([py, go])
    # workspace/symbol takes no filters and is unaffected.
    symbols = await s.client.workspace_symbol_async(
        lsp.WorkspaceSymbolParams(query="split sentence")
    )
    assert symbols
