"""The language server's wire: LSP framing over stdio or TCP, one session at a time.

pygls supplies the protocol (handlers, futures, the typed converter); this
module replaces its reading loop and its transports, and mends its
bookkeeping; pygls gets these things wrong for an editor:

* its reader skips any header line it does not recognise and then reads a
  body line by line, so garbage between messages, or a Content-Length that
  does not match its body, leaves the server alive and deaf forever, with
  nothing in its log;
* it parses every body inside one ``try`` that turns invalid JSON, or params
  of the wrong shape, into a ``window/showMessage`` popup of Python text, and
  the request is never answered;
* its TCP server shares one protocol between connections and shuts down
  when the first client leaves;
* it keeps the future of every notification it handles, and of every request
  of ours given up on, for as long as the session lasts (the protocol below
  forgets them once done: see ``_execute_handler`` and ``send_request``).

What happens instead:

* A body that is not JSON is answered ``-32700`` (id null), a message that is
  not a JSON-RPC object ``-32600``, a request whose params do not fit the
  method ``-32602`` with the offending path; notifications that do not fit
  are logged and dropped. The session goes on: the framing was intact.
* Lost framing (bytes between messages that are not a header, a header block
  that cannot be parsed, a body that holds the next message's header, or a
  message that stops arriving part way through, which is what a
  Content-Length longer than its body looks like) is logged, to the log file
  and stderr, and ends the session: on stdio the process exits with status 1
  and the editor starts a new server (VS Code's client and Neovim restart a
  server that dies); on TCP the connection is closed and the next one served.

Why not resynchronise by scanning for the next ``Content-Length:`` line?
Finding the next header is easy; knowing what was lost is not. A request
swallowed by the bad frame is never answered and its id is unknown, so the
client waits on it for ever; a ``didChange`` swallowed by it leaves our copy
of the buffer silently different from the editor's, and every later
incremental edit lands in the wrong place. A restart costs a second and
comes back with the editor's true state (it reopens its documents), so it is
the only recovery that is reliable. Whitespace between messages is the one
exception: it cannot hide a message, so it is skipped.

Over TCP, clients are served one after another, each with a fresh server
(``new_server()``): features registered once, folders, settings and open
documents starting empty. A client that connects while another is served
waits for its turn. A client that leaves without shutdown/exit, or in the
middle of a request, ends its session quietly: its requests are cancelled,
its indexes closed (the next session reopens them: opening costs
milliseconds, and nothing of the old session can leak into the new one).

Nothing may hold the turn without being there, or an editor restarted after
a crash would wait behind the ghost of its last run for ever:

* a connection must send ``initialize`` within :data:`INIT_TIMEOUT_S` of
  connecting (an editor sends it at once; a port probe, a client of some
  other protocol or one that died before speaking never does), or it is
  closed when its turn comes or the time is up, whichever is later. An
  ``initialize`` sent while waiting for the turn keeps the place, however
  long the wait;
* every connection has TCP keepalive (and, on Linux, a user timeout), so a
  peer that vanished without closing (a laptop gone to sleep or off the
  network, a machine powered off) is found dead within about a minute and
  its session ends like any other that was left. An editor that is merely
  quiet answers the probes from its kernel and keeps its session.

A session that is served is never taken away for a newcomer: a second editor
waits until the first leaves (shutdown, closed, or found dead), as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, BinaryIO

import cattrs
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)
from pygls.protocol.language_server import lsp_method

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

log = logging.getLogger("kenning.lsp")

# JSON-RPC and LSP error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002

# Exit status of a stdio server whose client broke the framing, or that got
# ``exit`` without ``shutdown`` (LSP asks for 1 there).
EXIT_ERROR = 1

# A message that has started must go on arriving: no bytes for this long in
# the middle of one means its Content-Length was longer than its body (a
# client writes a message in one go; only a stopped client pauses this long).
STALL_S = 10.0
# A header block is a line or two; this much without the blank line that ends
# it is not a header.
MAX_HEADER_BYTES = 8192
# Far beyond any real message (a 10 MB file opened is 10 MB); a larger
# Content-Length is a corrupt one.
MAX_BODY_BYTES = 1 << 30
READ_SIZE = 1 << 16
# A TCP client must send ``initialize`` this soon after connecting (see above).
INIT_TIMEOUT_S = 10.0
# However late its turn comes, a connection gets this long to be read: its
# ``initialize`` may be waiting in the socket's buffer.
MIN_READ_S = 0.1
# TCP keepalive: first probe after this much silence, then every interval; a
# peer that answers none of the probes is dead (about a minute in all).
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3
# Linux: data we sent that is not acknowledged for this long ends the
# connection too (a status notification to a peer that has gone).
USER_TIMEOUT_MS = 60_000

# RFC 9110 field name (a token), then the value.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_HEADER = re.compile(rb"(" + _TOKEN + rb"+):[ \t]*(.*?)[ \t]*")
# What a header line still arriving can look like.
_HEADER_START = re.compile(_TOKEN + rb"*(?::[^\r\n]*)?\r?")
_NEXT_HEADER = re.compile(rb"content-length[ \t]*:[ \t]*\d+\r\n", re.IGNORECASE)
_WHITESPACE = b" \t\r\n"


class FramingLost(Exception):
    """The byte stream no longer splits into messages; the message says why."""


class Silent(Exception):
    """No message began before the deadline the session set."""


# -- reading ------------------------------------------------------------------------


class PipeSource:
    """Chunks of a blocking binary stream (stdin), read on a thread of its own.

    Its own thread rather than pygls's handler pool, which handlers use too;
    and because a read there cannot be given a deadline, where an
    ``asyncio.Queue`` can, which is how a stalled message is noticed.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[bytes] | None = None

    def _start(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        read = _raw_reader(self._stream)

        def pump() -> None:
            while True:
                try:
                    chunk = read(READ_SIZE)
                except (OSError, ValueError):
                    chunk = b""
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                except RuntimeError:
                    return  # the loop is closed: the session is over
                if not chunk:
                    return

        threading.Thread(target=pump, name="kenning-stdin", daemon=True).start()
        return queue

    async def read(self, timeout: float | None) -> bytes | None:
        """Some bytes; ``b""`` at the end; None if none came within ``timeout``."""
        if self._queue is None:
            self._queue = self._start()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


def _raw_reader(stream: BinaryIO) -> Callable[[int], bytes]:
    """``os.read`` on the stream's descriptor where it has one.

    A thread blocked in a buffered reader holds its lock, and a process
    exiting while one does aborts ("could not acquire lock ... at interpreter
    shutdown"); a thread blocked in ``os.read`` holds nothing.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return getattr(stream, "read1", stream.read)
    return lambda n: os.read(fd, n)


class StreamSource:
    """Chunks of an asyncio stream (a TCP connection)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def read(self, timeout: float | None) -> bytes | None:
        try:
            return await asyncio.wait_for(self._read(), timeout)
        except TimeoutError:
            return None

    async def _read(self) -> bytes:
        try:
            return await self._reader.read(READ_SIZE)
        except OSError:
            # Reset by the peer, or found dead by keepalive: the same as a
            # close. Inside wait_for, so that keepalive's ETIMEDOUT (a
            # TimeoutError too) is not taken for a read that timed out.
            return b""


class Framer:
    """Splits a byte stream into message bodies, strictly (LSP's base protocol)."""

    def __init__(self, source: PipeSource | StreamSource, stall_s: float | None = None) -> None:
        self._source = source
        self._stall_s = STALL_S if stall_s is None else stall_s
        self._buf = bytearray()
        self._eof = False

    async def next_body(self, deadline: float | None = None) -> bytes | None:
        """The next message's body; None when the client has gone.

        ``deadline`` (the event loop's clock): raise :class:`Silent` if no
        message has begun by then; bytes already received are read first.
        """
        # Between messages: only whitespace may come before a header.
        while True:
            start = len(self._buf) - len(self._buf.lstrip(_WHITESPACE))
            del self._buf[:start]
            if self._buf:
                break
            wait = None
            if deadline is not None:
                wait = max(deadline - asyncio.get_running_loop().time(), MIN_READ_S)
            if not await self._fill(waiting=False, wait=wait):
                return None
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._check_header_lines(self._buf)
            if len(self._buf) > MAX_HEADER_BYTES:
                raise FramingLost(f"no end to a header after {len(self._buf)} bytes")
            if not await self._fill(waiting=True):
                self._gone_mid_message("header")
                return None
        length = self._content_length(bytes(self._buf[:end]))
        del self._buf[: end + 4]
        while len(self._buf) < length:
            if not await self._fill(waiting=True, need=length):
                self._gone_mid_message(f"{len(self._buf)} of {length} bytes of a body")
                return None
        body = bytes(self._buf[:length])
        del self._buf[:length]
        return body

    async def _fill(
        self, waiting: bool, need: int | None = None, wait: float | None = None
    ) -> bool:
        """Read more bytes; False at the end of the stream.

        ``waiting`` means in the middle of a message, where a pause of
        ``stall_s`` is lost framing; between messages the client may be
        silent for as long as it likes, or for ``wait`` seconds.
        """
        if self._eof:
            return False
        chunk = await self._source.read(self._stall_s if waiting else wait)
        if chunk is None and not waiting:
            raise Silent(f"nothing within {wait:g}s")
        if chunk is None:
            what = (
                f"{len(self._buf)} of the {need} bytes its Content-Length announced"
                if need is not None
                else f"{len(self._buf)} bytes of a header"
            )
            raise FramingLost(
                f"a message stopped arriving after {what} ({self._stall_s:g}s with nothing more)"
            )
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def _gone_mid_message(self, what: str) -> None:
        log.info("the client closed the connection part way through a message (%s)", what)

    @staticmethod
    def _check_header_lines(buf: bytearray) -> None:
        """Fail at once on a line that cannot be (or become) a header, not after a stall.

        The rest of a body whose Content-Length was too short, or a person
        typing at the server, is caught here with no wait.
        """
        *lines, arriving = bytes(buf).split(b"\r\n")
        for line in lines:
            if not _HEADER.fullmatch(line):
                raise FramingLost(f"expected a header line, got {_show(line)}")
        if not _HEADER_START.fullmatch(arriving):
            raise FramingLost(f"expected a header line, got {_show(arriving)}")

    @staticmethod
    def _content_length(block: bytes) -> int:
        length: int | None = None
        for line in block.split(b"\r\n"):
            match = _HEADER.fullmatch(line)
            if match is None:
                raise FramingLost(f"expected a header line, got {_show(line)}")
            name, value = match.group(1).lower(), match.group(2)
            if name != b"content-length":
                continue  # Content-Type, or a header of some future version
            if not value.isdigit() or (length is not None and int(value) != length):
                raise FramingLost(f"a bad Content-Length header: {_show(line)}")
            length = int(value)
        if length is None:
            raise FramingLost(f"a header without Content-Length: {_show(block)}")
        if length > MAX_BODY_BYTES:
            raise FramingLost(f"a Content-Length of {length} bytes")
        return length


def _show(data: bytes, limit: int = 60) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


# -- writing ------------------------------------------------------------------------


class PipeWriter:
    """stdout for pygls: whole frames under a lock, quiet once the client has gone."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.gone = False

    def write(self, data: bytes) -> None:
        with self._lock:
            if self.gone:
                return
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError) as exc:
                # pygls would log a BrokenPipeError traceback and raise it
                # into whichever handler was answering.
                self.gone = True
                log.info("the client stopped reading (%s)", exc)

    def close(self) -> None:
        with self._lock:
            self.gone = True
            with contextlib.suppress(OSError, ValueError):
                self._stream.close()


class SocketWriter:
    """A TCP connection for pygls; writes after the peer has gone are dropped."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        if self._writer.transport.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write(data)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.close()


# -- the protocol -------------------------------------------------------------------


class KenningProtocol(LanguageServerProtocol):
    """pygls's protocol, fed one body at a time by :func:`run_session`.

    Adds, beyond the JSON-RPC checks of :meth:`receive`:

    * cancel hooks: pygls cancels a request's future when the client cancels
      it, which stops a coroutine at its next await, but work already handed
      to the index thread would go on; a hook lets that work stop too;
    * ``exit`` ends the session (pygls calls ``sys.exit``, which over TCP
      would end the server with its first client);
    * LSP's rules for messages before ``initialize`` and after ``shutdown``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_hooks: dict[Any, list[Callable[[], None]]] = {}
        self.initialize_received = False
        # Set by ``exit``: the session ends with this status.
        self.exit_code: int | None = None

    # -- pygls's bookkeeping of futures --------------------------------------------

    def _execute_handler(
        self,
        msg_id: Any,
        handler: Any,
        callback: Callable[[Future[Any]], None],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """pygls's, with the handler's future forgotten once it is done.

        pygls files the future of every handler it runs under an id in
        ``_request_futures``, so that a ``$/cancelRequest`` can find it, and
        only the answer to a request takes it out again. A notification's
        handler (filed under a fresh uuid) and the user handler that one of
        pygls's own (``didChange``, ``didOpen``, ``executeCommand``, ...)
        hands on to stayed there for good: two futures and about 2.7 KB for
        every edit an editor sends, for as long as the session lasts.
        """

        def done(future: Future[Any]) -> None:
            if self._request_futures.get(msg_id) is future:
                self._request_futures.pop(msg_id, None)
            callback(future)

        super()._execute_handler(msg_id, handler, done, args, kwargs)

    def send_request(
        self,
        method: str,
        params: Any | None = None,
        callback: Callable[[Any], None] | None = None,
        msg_id: Any = None,
    ) -> Future[Any]:
        """pygls's, with a request given up on (cancelled, timed out) forgotten.

        pygls forgets a request of ours only when the client answers it; one
        never answered kept its future and result type for good, and a late
        answer to one given up on was set on a cancelled future, which
        raised. Now that answer is an unknown id, logged and dropped.
        """
        if msg_id is None:
            msg_id = str(uuid.uuid4())
        future = super().send_request(method, params, callback, msg_id)

        def forget(f: Future[Any]) -> None:
            if f.cancelled() and self._request_futures.get(msg_id) is f:
                self._request_futures.pop(msg_id, None)
                self._result_types.pop(msg_id, None)

        future.add_done_callback(forget)
        return future

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if not isinstance(msg_id, int | str):
            # lsprotocol lets any JSON through as the id; pygls hashes it.
            log.warning("$/cancelRequest for an id that is neither integer nor string: %r", msg_id)
            return
        for hook in self.cancel_hooks.pop(msg_id, []):
            try:
                hook()
            except Exception:
                log.warning("cancel hook failed", exc_info=True)
        super()._handle_cancel_notification(msg_id)

    @lsp_method(lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def lsp_work_done_progress_cancel(
        self, params: lsp.WorkDoneProgressCancelParams
    ) -> Generator[Any, Any, None]:
        if not isinstance(params.token, int | str):
            log.warning("a progress cancel for a token that is no token: %r", params.token)
            return
        yield from super().lsp_work_done_progress_cancel(params)

    @lsp_method(lsp.EXIT)
    def lsp_exit(self, *args: Any) -> None:  # type: ignore[override]  # pygls's exits the process
        self.exit_code = 0 if self._shutdown else EXIT_ERROR

    # -- receiving --------------------------------------------------------------------

    def receive(self, body: bytes) -> None:
        """Handle one message body; every error is answered or logged, never raised."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError and bodies that are not UTF-8.
            if _NEXT_HEADER.search(body):
                raise FramingLost(
                    "a message body holds another message's header "
                    "(the Content-Length before it was too long)"
                ) from None
            log.warning("a message that is not JSON (%d bytes): %s", len(body), _brief(exc))
            self._reply_error(None, PARSE_ERROR, f"Parse error: {_brief(exc)}")
            return
        if not isinstance(data, dict):
            log.warning("a message that is not a JSON object: %s", _show(body))
            self._reply_error(None, INVALID_REQUEST, "Invalid Request: expected a JSON object")
            return
        method = data.get("method")
        msg_id = data.get("id")
        id_ok = isinstance(msg_id, int | str) and not isinstance(msg_id, bool)
        is_request = "method" in data and "id" in data
        if data.get("jsonrpc") != "2.0" or ("method" in data and not isinstance(method, str)):
            log.warning("a message that is not JSON-RPC 2.0: %s", _show(body))
            if "method" in data or "id" in data:
                self._reply_error(
                    msg_id if id_ok else None,
                    INVALID_REQUEST,
                    'Invalid Request: expected {"jsonrpc": "2.0", "method": "...", ...}',
                )
            return
        if "id" in data and not id_ok:
            log.warning("a message whose id is neither integer nor string: %s", _show(body))
            if is_request:
                self._reply_error(None, INVALID_REQUEST, "Invalid Request: bad id")
            return
        if isinstance(method, str) and not self._admit(method, msg_id if is_request else None):
            return
        expected = self.get_message_type(method) if "method" in data else None
        if expected is not None and is_request != ("id" in attr_names(expected)):
            kind = "a notification" if is_request else "a request"
            log.warning("%s is %s; the message was ignored: %s", method, kind, _show(body))
            if is_request:
                self._reply_error(msg_id, INVALID_REQUEST, f"Invalid Request: {method} is {kind}")
            return
        try:
            message = self._structure(data)
        except Exception as exc:
            detail = _structure_error(exc)
            if is_request:
                log.info("%s: invalid params: %s", method, detail)
                self._reply_error(msg_id, INVALID_PARAMS, f"Invalid params for {method}: {detail}")
            elif "method" in data:
                log.warning("%s: invalid params, ignored: %s", method, detail)
            else:
                log.warning("a response that does not fit its request: %s", detail)
                # Whoever awaits the answer gets an error rather than waiting for ever.
                pending = (
                    self._request_futures.pop(msg_id, None)
                    if msg_id is not None and id_ok
                    else None
                )
                if pending is not None and not pending.done():
                    pending.set_exception(JsonRpcInvalidParams(f"a malformed response: {detail}"))
            return
        if method == lsp.INITIALIZE:
            self.initialize_received = True
        try:
            self.handle_message(message)
        except Exception:
            log.error("handling %s failed", method or "a response", exc_info=True)

    def _admit(self, method: str, request_id: Any) -> bool:
        """LSP's rules on what may come before ``initialize`` and after ``shutdown``."""
        if method == lsp.EXIT:
            return True
        if method == lsp.INITIALIZE:
            if self.initialize_received and request_id is not None:
                self._reply_error(
                    request_id, INVALID_REQUEST, "initialize may be sent once per session"
                )
            return not self.initialize_received
        if not self.initialize_received:
            if request_id is not None:
                self._reply_error(
                    request_id, SERVER_NOT_INITIALIZED, "the server is not initialized"
                )
            return False
        if self._shutdown:
            if request_id is not None:
                self._reply_error(request_id, INVALID_REQUEST, "the server is shutting down")
            return False
        return True

    def _structure(self, data: dict[str, Any]) -> Any:
        """The typed message, as pygls's ``structure_message`` makes it.

        Not that method itself: it logs a traceback for every client mistake,
        and it runs as ``json.loads``'s object hook, on every nested object
        too, so a ``"jsonrpc"`` key anywhere in params would be taken for a
        message.
        """
        if "method" in data:
            cls = self.get_message_type(data["method"])
            if cls is None:
                cls = JsonRPCRequestMessage if "id" in data else JsonRPCNotification
                # JSON-RPC lets params be left out; pygls's fallback types require them.
                data = {"params": None, **data}
            return self._converter.structure(data, cls)
        if "error" in data:
            return self._converter.structure(data, lsp.ResponseErrorMessage)
        answered = data.get("id")
        cls = (
            self._result_types.pop(answered, None) if answered is not None else None
        ) or JsonRPCResponseMessage
        return self._converter.structure(data, cls)

    def _reply_error(self, msg_id: Any, code: int, message: str) -> None:
        # A plain dict: lsprotocol leaves out an id of None, and a parse
        # error's reply must carry "id": null.
        self._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )


def attr_names(cls: type) -> set[str]:
    return {a.name for a in getattr(cls, "__attrs_attrs__", ())}


def _brief(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _structure_error(exc: Exception) -> str:
    try:
        lines = cattrs.transform_error(exc)
    except Exception:
        lines = [_brief(exc)]
    text = "; ".join(lines) or _brief(exc)
    return text if len(text) <= 300 else text[:297] + "..."


# -- sessions -----------------------------------------------------------------------


async def run_session(
    server: LanguageServer,
    source: PipeSource | StreamSource,
    writer: Any,
    where: str = "stdio",
    initialize_by: float | None = None,
) -> int:
    """Serve one client until it leaves, sends ``exit`` or breaks the framing.

    ``initialize_by`` (the event loop's clock): end the session if no
    ``initialize`` has come by then. Returns the session's status: 0, or
    :data:`EXIT_ERROR` for ``exit`` without ``shutdown``, lost framing and
    a client that never said ``initialize``.
    """
    protocol = server.protocol
    assert isinstance(protocol, KenningProtocol)
    protocol.set_writer(writer)
    framer = Framer(source)
    code = 0
    try:
        while protocol.exit_code is None:
            try:
                deadline = None if protocol.initialize_received else initialize_by
                body = await framer.next_body(deadline)
                if body is None:
                    log.info("the client on %s has gone", where)
                    break
                protocol.receive(body)
            except FramingLost as exc:
                then = "exiting so that the editor restarts the server"
                if where != "stdio":
                    then = "closing the connection"
                log.error("lost the message framing on %s: %s; %s", where, exc, then)
                code = EXIT_ERROR
                break
            except Silent:
                log.warning(
                    "the client on %s sent no initialize within %gs of connecting; "
                    "closing the connection",
                    where,
                    INIT_TIMEOUT_S,
                )
                code = EXIT_ERROR
                break
        else:
            code = protocol.exit_code
    finally:
        await end_session(server)
    return code


async def end_session(server: LanguageServer) -> None:
    """Cancel what the client was waiting for and stop the session's work."""
    protocol = server.protocol
    for future in list(protocol._request_futures.values()):
        future.cancel()
    # Closing indexes waits for the index thread: not on the event loop.
    await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
    writer = protocol.writer
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()


def serve_stdio(
    server: LanguageServer, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None
) -> int:
    """Serve one client on stdin/stdout; the process's exit status."""
    source = PipeSource(stdin or sys.stdin.buffer)
    writer = PipeWriter(stdout or sys.stdout.buffer)
    try:
        return asyncio.run(run_session(server, source, writer))
    except KeyboardInterrupt:
        return 130


def serve_tcp(new_server: Callable[[], LanguageServer], host: str, port: int) -> int:
    """Serve clients one after another on a socket, each with a fresh server."""

    async def main() -> None:
        turn = asyncio.Lock()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            initialize_by = asyncio.get_running_loop().time() + INIT_TIMEOUT_S
            peer = writer.get_extra_info("peername")
            where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
            keep_alive(writer.get_extra_info("socket"))
            try:
                if turn.locked():
                    log.info("%s waits for the session before it to end", where)
                async with turn:
                    log.info("a session with %s starts", where)
                    code = await run_session(
                        new_server(),
                        StreamSource(reader),
                        SocketWriter(writer),
                        where,
                        initialize_by,
                    )
                    log.info("the session with %s ended (%d)", where, code)
            except Exception:
                log.error("the session with %s failed", where, exc_info=True)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        listener = await asyncio.start_server(on_connect, host, port)
        names = ", ".join(_address(s.getsockname()) for s in listener.sockets)
        log.info("listening on %s", names)
        async with listener:
            await listener.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return EXIT_ERROR
    return 0


def keep_alive(sock: Any) -> None:
    """Have the OS probe a quiet connection, so that a peer gone without a
    word (asleep, off the network, powered off) is noticed."""
    if sock is None:
        return
    options = [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        (socket.IPPROTO_TCP, "TCP_KEEPALIVE", KEEPALIVE_IDLE_S),  # macOS's name for it
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", KEEPALIVE_PROBES),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ]
    for level, name, value in options:
        option = getattr(socket, name, None)
        if option is None:
            continue
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:  # not a TCP socket, or an OS without the option
            log.debug("%s not set: %s", name, exc)


def _address(name: Any) -> str:
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)
