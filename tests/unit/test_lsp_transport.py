"""The framer: bytes in, message bodies out, or FramingLost with a reason."""

from __future__ import annotations

import asyncio
import errno
import json
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenning.lsp import transport
from kenning.lsp.transport import Framer, FramingLost, Silent, StreamSource

STALL = object()


class Chunks:
    """A source that hands out the given chunks; STALL is a read that times out."""

    def __init__(self, chunks: list[bytes | object]) -> None:
        self.chunks = list(chunks)
        self.timeouts: list[float | None] = []

    async def read(self, timeout: float | None) -> bytes | None:
        self.timeouts.append(timeout)
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if chunk is STALL:
            assert timeout is not None, "only a message part way through may time out"
            return None
        assert isinstance(chunk, bytes)
        return chunk


def frame(body: bytes, header: bytes = b"") -> bytes:
    return b"Content-Length: %d\r\n" % len(body) + header + b"\r\n" + body


async def bodies(chunks: list[bytes | object]) -> list[bytes]:
    framer = Framer(Chunks(chunks), stall_s=1)
    out = []
    while (body := await framer.next_body()) is not None:
        out.append(body)
    return out


async def test_frames_split_anywhere_come_out_whole():
    data = frame(b'{"a": 1}') + frame(b"{}", b"Content-Type: application/vscode-jsonrpc\r\n")
    assert await bodies([data]) == [b'{"a": 1}', b"{}"]
    assert await bodies([bytes([b]) for b in data]) == [b'{"a": 1}', b"{}"]


async def test_header_names_are_case_insensitive_and_unknown_ones_are_ignored():
    data = b"content-length: 2\r\nX-Trace: 1\r\n\r\n{}"
    assert await bodies([data]) == [b"{}"]


async def test_whitespace_between_messages_is_skipped():
    assert await bodies([b"\r\n", frame(b"{}"), b" \n", frame(b"[]")]) == [b"{}", b"[]"]


async def test_only_a_message_part_way_through_has_a_deadline():
    source = Chunks([frame(b"{}")[:5], frame(b"{}")[5:]])
    framer = Framer(source, stall_s=7)
    assert await framer.next_body() == b"{}"
    assert await framer.next_body() is None
    # Waiting for a message to start: no deadline; for the rest of one: stall_s.
    assert source.timeouts == [None, 7, None]


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        ([b"garbage\r\n" + frame(b"{}")], "expected a header line, got b'garbage'"),
        ([b"xyz" + frame(b"{}")], "without Content-Length"),
        ([b"Content-Length: two\r\n\r\n{}"], "a bad Content-Length"),
        ([b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"], "a bad Content-Length"),
        ([b"Content-Length: 99999999999\r\n\r\n"], "a Content-Length of 99999999999"),
        ([b"Content-Length: 2\r\n" + b"X: y\r\n" * 2000], "no end to a header"),
        ([b"Content-Length: 40\r\n\r\n{}", STALL], "2 of the 40 bytes"),
        ([b"Content-Len", STALL], "11 bytes of a header"),
    ],
)
async def test_lost_framing_says_why(chunks, reason):
    with pytest.raises(FramingLost) as info:
        await bodies(chunks)
    assert reason in str(info.value)


async def test_a_header_line_is_judged_as_soon_as_it_is_complete():
    # Then the stream ends: judged only at the blank line, this would be a
    # client gone mid-message; the bad line alone is enough.
    with pytest.raises(FramingLost):
        await bodies([b"hello world\r\nContent-Length: 2\r\n"])


@pytest.mark.parametrize("rest", [b'"}}', b"hello\n", b"Content-Length: 2\n"])
async def test_bytes_that_cannot_start_a_header_are_judged_without_waiting(rest):
    # The rest of a body whose Content-Length was too short; someone typing.
    with pytest.raises(FramingLost):
        await bodies([frame(b"{}") + rest])


async def test_a_client_gone_mid_message_is_the_end_not_an_error():
    assert await bodies([frame(b'{"a": 1}')[:-3]]) == []
    assert await bodies([b"Content-Length: 2\r\n"]) == []


async def test_a_deadline_ends_the_wait_for_a_message_to_begin():
    loop = asyncio.get_running_loop()
    source = Chunks([STALL])
    with pytest.raises(Silent):
        await Framer(source, stall_s=7).next_body(loop.time() + 3)
    assert 2.5 < source.timeouts[0] <= 3  # type: ignore[operator]
    # A deadline passed while waiting for the turn: what has come is still read.
    source = Chunks([frame(b"{}"), STALL])
    framer = Framer(source, stall_s=7)
    assert await framer.next_body(loop.time() - 60) == b"{}"
    assert source.timeouts == [transport.MIN_READ_S]
    with pytest.raises(Silent):
        await framer.next_body(loop.time() - 60)


async def test_a_message_begun_before_the_deadline_gets_the_stall_time_to_finish():
    loop = asyncio.get_running_loop()
    source = Chunks([frame(b"{}")[:5], frame(b"{}")[5:]])
    assert await Framer(source, stall_s=7).next_body(loop.time() + 1) == b"{}"
    assert source.timeouts[1] == 7


class DeadPeer:
    """A connection keepalive found dead: the read fails with ETIMEDOUT."""

    async def read(self, n: int) -> bytes:
        raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")


class QuietPeer:
    async def read(self, n: int) -> bytes:
        await asyncio.sleep(60)
        return b""


async def test_a_peer_found_dead_is_gone_not_a_read_that_timed_out():
    assert await StreamSource(DeadPeer()).read(None) == b""  # type: ignore[arg-type]
    assert await StreamSource(DeadPeer()).read(5) == b""  # type: ignore[arg-type]
    assert await StreamSource(QuietPeer()).read(0.01) is None  # type: ignore[arg-type]


def test_connections_are_probed_so_that_a_vanished_peer_is_noticed():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        with client, accepted:
            transport.keep_alive(accepted)
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                idle = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
                interval = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
                probes = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
                # A dead peer is found within about a minute and a half.
                assert idle + interval * probes <= 90
    transport.keep_alive(None)  # a transport without a socket: nothing to do


json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
).map(lambda v: json.dumps(v, ensure_ascii=False).encode())


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(json_bodies, max_size=6), cuts=st.lists(st.integers(0, 400)))
async def test_any_valid_stream_cut_anywhere_gives_back_its_messages(messages, cuts):
    data = b"".join(frame(m) for m in messages)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert await bodies([c for c in chunks if c]) == messages
