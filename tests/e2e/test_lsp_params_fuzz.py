"""Random params for every method the server handles never take it down.

One real server subprocess (stdio, raw frames) takes every example; after
each, a normal ``kenning.search`` must still be answered. Requests must be
answered too, with a result or a JSON-RPC error that is not an internal one
(an internal error is a handler tripping over input it should have checked).

URIs come from a fixed pool inside the test's own workspace (plus ones that
do not exist or are not ``file:``), and no string holds a ``:``, so no
example can point the server at a real folder elsewhere or at a network
address (``remote.endpoints``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import uri, write_files
from .wire import StdioServer, frame

FILES = {
    "lib/anchor.py": '''
        def quokka_anchor_tokens(text):
            """Split a sentence into word tokens."""
            return text.split()
        ''',
    "lib/tokens.py": "def tokenize(text):\n    return text.split()\n",
    "src/config.py": "import json\n\ndef load_config(path):\n    return json.load(open(path))\n",
    "src/notes.md": "# Notes\n\nSome words.\n",
}
# The anchor is never named by an example: the last check finds it.
TOUCHABLE = ["lib/tokens.py", "src/config.py", "src/notes.md", "src/missing.py", "lib", "src"]

INTERNAL_ERROR = -32603

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), max_size=12)
odd_ints = st.one_of(
    st.integers(-3, 40),
    st.integers(-(2**40), 2**40),
    st.sampled_from([2**31 - 1, 2**31, 2**32, -(2**31)]),
)
scalars = st.one_of(
    st.none(), st.booleans(), odd_ints, st.floats(allow_nan=False, allow_infinity=False), text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the shaped value, sometimes any JSON at all in its place."""
    return st.one_of(strategy, strategy, strategy, json_values)


def shapes(root: Path) -> dict[str, st.SearchStrategy[Any]]:
    uris = maybe(
        st.sampled_from(
            [uri(root / p) for p in TOUCHABLE]
            + ["untitled:Untitled-1", "file:///nonexistent/kenning/x.py", ""]
        )
    )
    position = maybe(st.fixed_dictionaries({"line": maybe(odd_ints), "character": maybe(odd_ints)}))
    range_ = maybe(st.fixed_dictionaries({"start": position, "end": position}))
    doc = maybe(st.fixed_dictionaries({"uri": uris}, optional={"version": odd_ints}))
    where = st.one_of(
        st.fixed_dictionaries({"uri": uris, "position": position}),
        st.fixed_dictionaries({"uri": uris, "range": range_}),
    )
    command_args = st.one_of(
        st.fixed_dictionaries(
            {"query": maybe(text)},
            optional={
                "k": maybe(odd_ints),
                "mode": maybe(st.sampled_from(["hybrid", "vector", "lexical"])),
                "lang": maybe(text),
                "glob": maybe(st.lists(text, max_size=3)),
            },
        ),
        st.fixed_dictionaries(
            {}, optional={"k": maybe(odd_ints), "templateId": maybe(text)}
        ).flatmap(lambda extra: where.map(lambda w: {**w, **extra})),
        json_values,
    )
    settings_values = st.fixed_dictionaries(
        {},
        optional={
            "search": maybe(st.fixed_dictionaries({}, optional={"k": odd_ints, "mode": text})),
            "index": maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "onChange": maybe(st.booleans()),
                        "debounceMs": maybe(odd_ints),
                        "maxFileBytes": maybe(odd_ints),
                    },
                )
            ),
            "workspaceSymbol": maybe(st.fixed_dictionaries({"semantic": maybe(st.booleans())})),
            "duplicates": maybe(
                st.fixed_dictionaries(
                    {}, optional={"diagnostics": maybe(st.booleans()), "threshold": json_values}
                )
            ),
            "exclude": maybe(st.lists(text, max_size=3)),
            "device": maybe(st.sampled_from(["auto", "cpu", "cuda", "tpu"])),
        },
    )
    change = st.one_of(
        st.fixed_dictionaries({"range": range_, "text": maybe(text)}),
        st.fixed_dictionaries({"text": maybe(text)}),
        json_values,
    )
    folder = maybe(st.fixed_dictionaries({"uri": uris, "name": maybe(text)}))
    return {
        # Requests.
        "workspace/executeCommand": st.fixed_dictionaries(
            {
                "command": maybe(
                    st.sampled_from(
                        [
                            "kenning.search",
                            "kenning.similar",
                            "kenning.duplicates",
                            "kenning.matchTemplates",
                            "kenning.applyTemplate",
                            "kenning.status",
                            "kenning.reindex",
                            "kenning.nonsense",
                        ]
                    )
                ),
                "arguments": maybe(st.lists(command_args, max_size=2)),
            }
        ),
        "workspace/symbol": st.fixed_dictionaries({"query": maybe(text)}),
        "textDocument/codeAction": st.fixed_dictionaries(
            {
                "textDocument": doc,
                "range": range_,
                "context": maybe(st.fixed_dictionaries({"diagnostics": maybe(st.just([]))})),
            }
        ),
        "textDocument/completion": st.fixed_dictionaries(
            {"textDocument": doc, "position": position}
        ),
        "initialize": json_values,  # a second one in the session
        # Notifications.
        "textDocument/didOpen": st.fixed_dictionaries(
            {
                "textDocument": maybe(
                    st.fixed_dictionaries(
                        {
                            "uri": uris,
                            "languageId": maybe(st.sampled_from(["python", "markdown", "x"])),
                            "version": maybe(odd_ints),
                            "text": maybe(st.text(max_size=200)),
                        }
                    )
                )
            }
        ),
        "textDocument/didChange": st.fixed_dictionaries(
            {"textDocument": doc, "contentChanges": maybe(st.lists(change, max_size=3))}
        ),
        "textDocument/didSave": st.fixed_dictionaries({"textDocument": doc}),
        "textDocument/didClose": st.fixed_dictionaries({"textDocument": doc}),
        "workspace/didChangeWatchedFiles": st.fixed_dictionaries(
            {
                "changes": maybe(
                    st.lists(
                        st.fixed_dictionaries({"uri": uris, "type": maybe(odd_ints)}), max_size=3
                    )
                )
            }
        ),
        "workspace/didChangeConfiguration": st.fixed_dictionaries(
            {"settings": maybe(st.fixed_dictionaries({"kenning": maybe(settings_values)}))}
        ),
        "workspace/didChangeWorkspaceFolders": st.fixed_dictionaries(
            {
                "event": maybe(
                    st.fixed_dictionaries(
                        {
                            "added": maybe(st.lists(folder, max_size=2)),
                            "removed": maybe(st.lists(folder, max_size=2)),
                        }
                    )
                )
            }
        ),
        "$/cancelRequest": st.fixed_dictionaries({"id": json_values}),
        "$/setTrace": st.fixed_dictionaries({"value": maybe(text)}),
        "window/workDoneProgress/cancel": st.fixed_dictionaries({"token": json_values}),
    }


REQUESTS = {
    "workspace/executeCommand",
    "workspace/symbol",
    "textDocument/codeAction",
    "textDocument/completion",
    "initialize",
}


def examples(root: Path) -> st.SearchStrategy[tuple[str, str, Any]]:
    """(kind, method, params): a known method with odd params, an unknown method, raw bytes."""
    known = st.one_of(
        *(
            st.tuples(st.just("known"), st.just(method), maybe(params))
            for method, params in shapes(root).items()
        )
    )
    unknown = st.tuples(
        st.sampled_from(["request", "notification"]),
        st.one_of(text, st.sampled_from(["$/kenning", "textDocument/hover", "kenning/x"])),
        json_values,
    )
    raw = st.tuples(st.just("raw"), st.just(""), st.binary(max_size=40))
    return st.one_of(known, known, known, unknown, raw)


def test_random_params_never_take_the_server_down(tmp_path, kenning_home):
    root = tmp_path / "ws"
    write_files(root, FILES)
    with StdioServer(kenning_home, tmp_path / "server") as server:
        wire = server.wire
        wire.initialize(root)
        wire.idle()

        @settings(
            max_examples=120,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(example=examples(root))
        def check(example: tuple[str, str, Any]) -> None:
            kind, method, params = example
            if kind == "raw":
                wire.send_raw(frame(params))
            elif kind == "notification" or (kind == "known" and method not in REQUESTS):
                wire.notify(method, params)
            else:
                answer = wire.call(method, params)
                assert "result" in answer or "error" in answer, answer
                if "error" in answer:
                    assert answer["error"]["code"] != INTERNAL_ERROR, answer
            alive = wire.command("kenning.search", {"query": "split a sentence into tokens"})
            assert isinstance(alive.get("result", {}).get("results"), list), alive
            assert server.proc.poll() is None

        check()

        # Back to the defaults, the index is whole: the file no example touched is found.
        wire.notify("workspace/didChangeConfiguration", {"settings": {"kenning": {}}})
        wire.idle(timeout=60)
        found = wire.command("kenning.search", {"query": "quokka_anchor_tokens"})["result"]
        assert found["results"][0]["uri"] == uri(root / "lib/anchor.py")
        wire.shutdown()
        assert server.wait() == 0
        assert "Traceback" not in server.stderr, server.stderr
        popups = [n for n in wire.notifications if n["method"] == "window/showMessage"]
        assert not [p for p in popups if "Error in server" in p["params"]["message"]], popups
        assert json.dumps(popups).count("Traceback") == 0
