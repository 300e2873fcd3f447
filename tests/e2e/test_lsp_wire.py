"""The wire: what the server does with bytes that are not a well-formed exchange.

Invalid JSON inside an intact frame is answered and the session goes on; a
broken frame ends the session with a line in the log (stdio: exit status 1,
so the editor restarts the server), never a deaf server. Over TCP, clients
come one after another, each with a fresh session, a client that vanishes
costs nothing but its own session, and one that never says ``initialize``
gives up its turn.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import FAKE_SERVER, server_env, uri, write_files
from .wire import Closed, StdioServer, TcpClient, Wire, frame, free_port

FILES = {
    "lib/tokens.py": '''
        def tokenize_sentence(text):
            """Split a sentence into word tokens."""
            return text.split()
        ''',
    "lib/words.py": '''
        def count_words(text):
            """How many words a sentence has."""
            return len(text.split())
        ''',
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write_files(root, FILES)
    return root


def stdio_server(tmp_path: Path, home: Path, **env: str) -> StdioServer:
    return StdioServer(home, tmp_path / "server", env=env)


def no_traceback(server: StdioServer) -> None:
    assert "Traceback" not in server.stderr, server.stderr
    assert "Traceback" not in server.log, server.log


def search_works(wire: Wire) -> None:
    answer = wire.command("kenning.search", {"query": "split a sentence into words"})
    assert "result" in answer, answer
    assert answer["result"]["results"], answer


# -- an intact frame with bad content: answered, and the session goes on --------------


def test_invalid_json_is_answered_with_a_parse_error_and_the_session_goes_on(
    tmp_path, kenning_home, workspace
):
    with stdio_server(tmp_path, kenning_home) as server:
        wire = server.wire
        wire.initialize(workspace)
        wire.idle()
        wire.send_raw(frame(b'{"jsonrpc": "2.0", "id": 7, "method": "workspace/symbol", '))
        error = wire.response(None)["error"]
        assert error["code"] == -32700
        assert error["message"].startswith("Parse error")
        # Not UTF-8 at all: the same answer.
        wire.send_raw(frame(b"\xff\xfe{}"))
        assert wire.response(None)["error"]["code"] == -32700
        search_works(wire)
        # No popup of Python text, no traceback.
        popups = [n for n in wire.notifications if n["method"] == "window/showMessage"]
        assert popups == []
        assert "a message that is not JSON" in server.log
        no_traceback(server)
        wire.shutdown()
        assert server.wait() == 0


def test_messages_that_are_not_valid_requests_get_json_rpc_errors(
    tmp_path, kenning_home, workspace
):
    with stdio_server(tmp_path, kenning_home) as server:
        wire = server.wire
        # Before initialize: LSP's ServerNotInitialized.
        early = wire.call("workspace/symbol", {"query": "x"})
        assert early["error"]["code"] == -32002
        wire.initialize(workspace)
        wire.idle()
        cases = [
            (frame(b"[1, 2]"), None, -32600),
            (frame(b"42"), None, -32600),
            (frame({"jsonrpc": "1.0", "id": 31, "method": "workspace/symbol"}), 31, -32600),
            (frame({"jsonrpc": "2.0", "id": 32, "method": 5}), 32, -32600),
            (frame({"jsonrpc": "2.0", "id": [1], "method": "workspace/symbol"}), None, -32600),
            # A notification's method sent as a request would never be answered.
            (frame({"jsonrpc": "2.0", "id": 33, "method": "textDocument/didSave"}), 33, -32600),
            (frame({"jsonrpc": "2.0", "id": 34, "method": "initialize", "params": {}}), 34, -32600),
            (frame({"jsonrpc": "2.0", "id": 35, "method": "kenning/unknown"}), 35, -32601),
        ]
        for data, msg_id, code in cases:
            wire.send_raw(data)
            answer = wire.response(msg_id)
            assert answer["error"]["code"] == code, (data, answer)
        # Params of the wrong shape: -32602, naming where.
        bad = wire.call(
            "textDocument/codeAction",
            {
                "textDocument": {"uri": uri(workspace / "lib/tokens.py")},
                "range": {"start": {"line": "one", "character": 0}, "end": {}},
                "context": {"diagnostics": []},
            },
        )
        assert bad["error"]["code"] == -32602
        assert "textDocument/codeAction" in bad["error"]["message"]
        assert "range.start.line" in bad["error"]["message"]
        # A bad notification has nobody to answer: logged, dropped.
        wire.notify("textDocument/didOpen", {"textDocument": 12})
        wire.send_raw(b"\r\n")  # whitespace between messages cannot hide one: skipped
        search_works(wire)
        assert "textDocument/didOpen: invalid params, ignored" in server.log
        assert [n for n in wire.notifications if n["method"] == "window/showMessage"] == []
        no_traceback(server)
        wire.shutdown()
        assert server.wait() == 0


def test_a_malformed_answer_from_the_client_fails_the_waiting_handler_not_the_server(
    tmp_path, kenning_home, workspace
):
    with stdio_server(tmp_path, kenning_home) as server:
        wire = server.wire
        wire.initialize(workspace)
        wire.idle()
        # Settings by pull: the server asks, and gets an error of no known shape.
        wire.answers["workspace/configuration"] = {"error": {"code": "bad"}}
        wire.notify("workspace/didChangeConfiguration", {"settings": None})
        wire.wait_for(
            lambda m: (
                "workspace/didChangeConfiguration: a malformed response"
                in m.get("params", {}).get("message", "")
            ),
            "the handler to give up on the malformed answer",
        )
        search_works(wire)
        no_traceback(server)
        wire.shutdown()
        assert server.wait() == 0


def test_exit_without_shutdown_exits_1(tmp_path, kenning_home, workspace):
    with stdio_server(tmp_path, kenning_home) as server:
        server.wire.initialize(workspace)
        server.wire.notify("exit")
        assert server.wait() == 1


# -- a broken frame: logged, and the server exits so that the editor restarts it -------

SEARCH = {
    "jsonrpc": "2.0",
    "id": 50,
    "method": "workspace/executeCommand",
    "params": {"command": "kenning.status", "arguments": [{}]},
}
BODY = json.dumps(SEARCH).encode()

LOST = {
    # Bytes between two messages that are no header.
    "garbage line": b"garbage\r\n" + frame(BODY),
    "garbage glued to a header": b"xyz" + frame(BODY),
    # One message's header inside another's body.
    "Content-Length too long": b"Content-Length: %d\r\n\r\n" % (len(BODY) + 30)
    + BODY
    + frame(BODY)
    + frame(BODY),
    # The rest of the body is read as a header.
    "Content-Length too short": b"Content-Length: %d\r\n\r\n" % (len(BODY) - 8)
    + BODY
    + frame(BODY),
    "Content-Length not a number": b"Content-Length: twelve\r\n\r\n" + BODY,
    "no Content-Length": b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + BODY,
    "a header that never ends": b"Content-Length: 5\r\n" + b"X-Padding: yes\r\n" * 600,
    # A body that never arrives in full: the client is waiting for an answer.
    "Content-Length too long, nothing after": b"Content-Length: %d\r\n\r\n" % (len(BODY) + 30)
    + BODY,
}


@pytest.mark.parametrize("case", list(LOST))
def test_lost_framing_is_logged_and_the_server_exits_non_zero(
    tmp_path, kenning_home, workspace, case
):
    with stdio_server(tmp_path, kenning_home, KENNING_TEST_STALL_S="1") as server:
        wire = server.wire
        wire.initialize(workspace)
        started = time.monotonic()
        wire.send_raw(LOST[case])
        assert server.wait(timeout=20) == 1
        took = time.monotonic() - started
        assert took < 15, took
        assert "lost the message framing on stdio" in server.log
        assert "exiting so that the editor restarts the server" in server.stderr
        no_traceback(server)
        # The frames that came after the break were not answered as if nothing happened.
        assert 50 not in wire.responses


def test_a_client_that_closes_mid_message_ends_the_server_quietly(
    tmp_path, kenning_home, workspace
):
    with stdio_server(tmp_path, kenning_home) as server:
        server.wire.initialize(workspace)
        server.wire.send_raw(frame(BODY)[:-10])
        server.proc.stdin.close()  # type: ignore[union-attr]
        assert server.wait(timeout=20) == 0
        no_traceback(server)


# -- TCP: one client after another ----------------------------------------------------


class TcpServer:
    def __init__(self, home: Path, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / "stderr.txt"
        self.home = home
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [*FAKE_SERVER, "--tcp", "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**server_env(home), **env},
        )

    def connect(self) -> TcpClient:
        return TcpClient(self.port)

    @property
    def output(self) -> str:
        log = self.home / "logs" / "lsp.log"
        return self.stderr_path.read_text() + (log.read_text() if log.exists() else "")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def test_tcp_serves_one_client_after_another_and_survives_abrupt_disconnects(
    tmp_path, kenning_home, workspace
):
    server = TcpServer(kenning_home, tmp_path / "server")
    try:
        a_file = workspace / "lib/tokens.py"
        # A: its own settings and an unsaved buffer, then gone mid-request.
        client_a = server.connect()
        a = client_a.wire
        a.initialize(workspace, {"search": {"k": 1}})
        a.idle()
        a.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri(a_file),
                    "languageId": "python",
                    "version": 1,
                    "text": "def zebrafish_unsaved():\n    return 1\n",
                }
            },
        )
        found = a.command("kenning.search", {"query": "zebrafish_unsaved", "mode": "lexical"})
        assert found["result"]["results"][0]["uri"] == uri(a_file)
        assert len(a.command("kenning.search", {"query": "words text"})["result"]["results"]) == 1
        a.request("workspace/executeCommand", {"command": "kenning.reindex", "arguments": [{}]})
        client_a.close(reset=True)

        # A2: connects and goes without a word, its request half sent.
        client_a2 = server.connect()
        client_a2.wire.send_raw(frame(BODY)[:-5])
        client_a2.close()

        # B: a fresh session; C waits its turn meanwhile.
        client_b = server.connect()
        b = client_b.wire
        init = b.initialize(workspace)
        assert "kenning.search" in init["capabilities"]["executeCommandProvider"]["commands"]
        b.idle()
        client_c = server.connect()
        c = client_c.wire
        c_init = c.request(
            "initialize",
            {"processId": None, "rootUri": uri(workspace), "capabilities": {}},
        )
        # Settings and open documents of A are gone: default k, the file as on disk.
        results = b.command("kenning.search", {"query": "words text"})["result"]["results"]
        assert len(results) == 2
        stale = b.command("kenning.search", {"query": "zebrafish_unsaved", "mode": "lexical"})
        assert stale["result"]["results"] == []
        with pytest.raises(TimeoutError):
            c.response(c_init, timeout=0.5)
        b.shutdown()
        b.wait_closed()
        client_b.close()

        # C: served once B has gone.
        assert "result" in c.response(c_init)
        c.notify("initialized", {})
        c.idle()
        search_works(c)
        c.shutdown()
        c.wait_closed()
        client_c.close()

        # Still listening, and nothing in the log but lines.
        client_d = server.connect()
        d = client_d.wire
        d.initialize(None)
        assert d.command("kenning.status")["result"]["files"] == 0
        client_d.close()
        assert server.proc.poll() is None
        out = server.output
        assert "Traceback" not in out, out
        assert "already registered" not in out, out
        assert "a session with" in out
    finally:
        server.close()


def test_tcp_lost_framing_closes_that_connection_only(tmp_path, kenning_home, workspace):
    server = TcpServer(kenning_home, tmp_path / "server")
    try:
        client_a = server.connect()
        a = client_a.wire
        a.initialize(workspace)
        a.send_raw(b"garbage\r\n")
        a.wait_closed()
        with pytest.raises(Closed):
            a.response(123, timeout=1)
        client_a.close()
        client_b = server.connect()
        b = client_b.wire
        b.initialize(workspace)
        b.idle()
        search_works(b)
        b.shutdown()
        client_b.close()
        assert server.proc.poll() is None
        out = server.output
        assert "lost the message framing" in out and "closing the connection" in out
        assert "Traceback" not in out, out
    finally:
        server.close()


def test_tcp_a_client_that_never_says_initialize_gives_up_its_turn(
    tmp_path, kenning_home, workspace
):
    grace = 2.0  # the server's INIT_TIMEOUT_S, 10 s outside tests
    server = TcpServer(kenning_home, tmp_path / "server", KENNING_TEST_INIT_S=str(grace))
    try:
        # A connects and says nothing: a port probe, an editor that hung before speaking.
        client_a = server.connect()
        # B: the editor restarted; it must not wait behind A for ever.
        started = time.monotonic()
        client_b = server.connect()
        b = client_b.wire
        b.initialize(workspace)
        waited = time.monotonic() - started
        assert waited < grace + 3, f"B waited {waited:.1f}s"
        client_a.wire.wait_closed(timeout=5)  # the server closed A's connection
        b.idle()
        search_works(b)

        # C connects while B is served and says initialize at once: however long
        # it then waits for its turn, it keeps its place.
        client_c = server.connect()
        c = client_c.wire
        c_init = c.request(
            "initialize",
            {"processId": None, "rootUri": uri(workspace), "capabilities": {}},
        )
        time.sleep(grace + 1)
        with pytest.raises(TimeoutError):
            c.response(c_init, timeout=0.1)
        search_works(b)  # B, quiet for longer than the grace, is served as before
        b.shutdown()
        b.wait_closed()
        client_b.close()
        assert "result" in c.response(c_init)
        c.notify("initialized", {})
        c.idle()
        search_works(c)
        c.shutdown()
        client_c.close()
        client_a.close()

        assert server.proc.poll() is None
        out = server.output
        assert f"sent no initialize within {grace:g}s of connecting" in out, out
        assert "Traceback" not in out, out
    finally:
        server.close()
