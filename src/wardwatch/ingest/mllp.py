"""MLLP: HL7 v2 messages over TCP (optionally TLS), each framed 0x0B message 0x1C 0x0D.

The server answers every message with the text its handler returns, in order, and only after
the handler has returned; the handler commits before returning, so an ACK means committed
(ack-after-commit). A sender that sees no ACK resends; the store is idempotent.

Errors::

    MLLPError(ValueError)   the byte stream is not MLLP (garbage between frames, a start
                            block inside a frame, a frame over the size limit); the
                            stream cannot be resynchronized, so the server closes the
                            connection (messages already answered stay answered)

Character set: HL7 v2 declares it in MSH-18 ("8859/1", "UNICODE UTF-8", "ASCII" ...). A
declared set is used; without one, UTF-8 is tried and ISO 8859-1 is the fallback (it never
fails and keeps every byte, so nothing is lost; at worst non-ASCII text shows as mojibake,
which is logged). Bytes invalid in a declared set, or an unknown set, fall back the same way
with a warning. The ACK is sent in the character set the message was read with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import signal
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

from wardwatch.ingest import hl7v2

START = b"\x0b"
END = b"\x1c\r"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # results may embed documents (OBX type ED)
_BETWEEN_FRAMES = b"\r\n"  # line ends some senders put between frames: tolerated
_READ_SIZE = 64 * 1024

log = logging.getLogger(__name__)

CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "ISO IR100": "latin-1",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",  # not in HL7 table 0211, but sent
    "ISO IR192": "utf-8",
    "GB 18030-2000": "gb18030",
    "BIG-5": "big5",
    "KS X 1001": "euc_kr",
    **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
}

Handler = Callable[[str], str]


@runtime_checkable
class GroupHandler(Protocol):
    """A handler that can also answer several messages at once (one commit for all)."""

    def __call__(self, text: str) -> str: ...

    def handle_many(self, texts: list[str]) -> list[str]: ...


class MLLPError(ValueError):
    """The byte stream breaks MLLP framing."""


class MLLPDecoder:
    """Incremental MLLP deframer: `feed` bytes as they arrive, get complete messages back.

    Messages split across reads and several messages in one read are both fine. An error
    found after complete messages in the same chunk is held back and raised by the next call
    (`feed(b"")` checks), so the complete ones can still be answered first.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._in_frame = False
        self._scanned = 0  # bytes of the current frame already searched for the end block
        self._error: MLLPError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[bytes] = []
        try:
            while (self._in_frame or self._start()) and (message := self._end()) is not None:
                messages.append(message)
        except MLLPError as error:
            self._error = error
            if not messages:
                raise
        return messages

    def _start(self) -> bool:
        """Enter the next frame; False when no more bytes are buffered."""
        skip = 0
        while skip < len(self._buffer) and self._buffer[skip] in _BETWEEN_FRAMES:
            skip += 1
        del self._buffer[:skip]
        if not self._buffer:
            return False
        if self._buffer[:1] != START:
            raise MLLPError(f"expected start block 0x0B, got {bytes(self._buffer[:16])!r}")
        del self._buffer[:1]
        self._in_frame, self._scanned = True, 0
        return True

    def _end(self) -> bytes | None:
        """The current frame's message when its end block has arrived, else None."""
        end = self._buffer.find(END[:1], self._scanned)
        limit = len(self._buffer) if end == -1 else end
        if self._buffer.find(START, self._scanned, limit) != -1:
            raise MLLPError("start block 0x0B inside a frame: the previous message was cut off")
        if limit > self.max_message_bytes:
            raise MLLPError(f"message longer than {self.max_message_bytes} bytes")
        if end == -1 or end + 1 == len(self._buffer):
            self._scanned = limit
            return None
        if self._buffer[end + 1 : end + 2] != END[1:]:
            raise MLLPError("end block 0x1C not followed by 0x0D")
        message = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        self._in_frame = False
        return message


def frame(message: str, encoding: str | None = None, errors: str = "strict") -> bytes:
    """One message framed for the wire; LF and CRLF become CR (HL7's segment separator).

    `encoding` defaults to the message's MSH-18 character set, else UTF-8.
    """
    if "\x0b" in message or "\x1c" in message:
        raise ValueError("a message cannot contain the MLLP block characters 0x0B or 0x1C")
    text = message.replace("\r\n", "\r").replace("\n", "\r")
    codec = encoding or CHARSETS.get(_declared_charset(text.encode("latin-1", "replace")), "utf-8")
    return START + text.encode(codec, errors) + END


def decode(raw: bytes) -> tuple[str, str]:
    """A message's text and the codec it was read with (see the module notes)."""
    declared = _declared_charset(raw)
    codec = CHARSETS.get(declared.upper(), "utf-8")
    if declared and declared.upper() not in CHARSETS:
        log.warning("MSH-18 character set %r is not supported; reading as UTF-8", declared)
    try:
        return raw.decode(codec), codec
    except UnicodeDecodeError:
        log.warning("message is not valid %s (MSH-18 %r); reading it as latin-1", codec, declared)
        return raw.decode("latin-1"), "latin-1"


def _declared_charset(raw: bytes) -> str:
    """MSH-18 (first repetition) from the raw header, or ""."""
    header = raw.split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not header.startswith(b"MSH") or len(header) < 8:
        return ""
    fields = header.split(header[3:4])
    if len(fields) < 18:
        return ""
    charset = fields[17].split(fields[1][1:2] or b"~", 1)[0]
    return charset.decode("ascii", "ignore").strip()


# -- server --------------------------------------------------------------------------------


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    ssl: ssl.SSLContext | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> asyncio.Server:
    """Start an MLLP server; `handler(message_text) -> ack_text` runs in a worker thread.

    Messages on one connection are handled one at a time, in order, and each ACK is written
    only after the handler has returned. A handler's `HL7Error` is answered AE or AR and any
    other exception AE with its reason (and logged); the server keeps serving.
    """

    committer = _GroupCommitter(handler) if isinstance(handler, GroupHandler) else None

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _converse(reader, writer, handler, max_message_bytes, committer)

    server = await asyncio.start_server(connected, host, port, ssl=ssl)
    if committer is not None:
        _COMMITTERS[server] = committer
    return server


_WORKERS = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="mllp")
_COMMITTERS: weakref.WeakKeyDictionary[asyncio.Server, _GroupCommitter] = (
    weakref.WeakKeyDictionary()
)


class _GroupCommitter:
    """One thread answers the messages of every connection, as many at once as have arrived.

    A message costs little next to its transaction, so while one group commits, whatever
    arrives meanwhile waits and goes in the next. The event loop only queues a message and
    later writes its ACK: no thread per message, which under the interpreter lock would
    hand the lock around once per message and cap throughput well below what one commit
    per group allows.
    """

    def __init__(self, handler: GroupHandler, max_group: int = 128, linger: float = 0.002) -> None:
        self.handler, self.max_group, self.linger = handler, max_group, linger
        self.connections = 0  # open connections: each has at most one message waiting
        self._queue: queue.SimpleQueue[tuple[bytes, asyncio.Future[bytes]] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mllp-commit", daemon=True)
        self._thread.start()

    def submit(self, raw: bytes) -> asyncio.Future[bytes]:
        answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._queue.put((raw, answered))
        return answered

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            group = [first]
            deadline = time.monotonic() + self.linger
            while len(group) < self.max_group:
                try:
                    item = self._queue.get(timeout=self._wait(len(group), deadline))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                group.append(item)
            replies = answer_many(self.handler, [raw for raw, _ in group])
            for (_, answered), reply in zip(group, replies, strict=True):
                answered.get_loop().call_soon_threadsafe(_settle, answered, reply)


    def _wait(self, grouped: int, deadline: float) -> float:
        """How long to wait for one more message of this group, as PostgreSQL's commit_delay.

        Other connections whose next message is on its way (their ACK just went out) join
        this commit instead of waiting a whole commit for the next one. A lone connection
        never waits: it cannot have a second message in flight.
        """
        if grouped >= self.connections:
            return 0.0
        return max(0.0, deadline - time.monotonic())


def _settle(answered: asyncio.Future[bytes], reply: bytes) -> None:
    if not answered.done():
        answered.set_result(reply)


async def _converse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    limit: int,
    committer: _GroupCommitter | None = None,
) -> None:
    peer = writer.get_extra_info("peername")
    decoder = MLLPDecoder(limit)
    log.info("MLLP connection from %s", peer)
    loop = asyncio.get_running_loop()
    if committer is not None:
        committer.connections += 1
    try:
        while data := await reader.read(_READ_SIZE):
            for raw in decoder.feed(data):
                # A bare future, not a task: `stop` cancels tasks, and this one must finish.
                if committer is not None:
                    work = committer.submit(raw)
                else:
                    work = loop.run_in_executor(_WORKERS, answer, handler, raw)
                try:
                    writer.write(await asyncio.shield(work))
                except asyncio.CancelledError:  # stopping: answer the message in hand first
                    writer.write(await work)
                    raise
                await writer.drain()
            decoder.feed(b"")  # an error held back behind complete messages
    except MLLPError as error:
        log.warning("MLLP framing error from %s: %s; closing the connection", peer, error)
    except (ConnectionError, ssl.SSLError) as error:
        log.info("MLLP connection from %s lost: %s", peer, error)
    except asyncio.CancelledError:
        log.info("MLLP connection from %s closed: the server is stopping", peer)
    finally:
        if committer is not None:
            committer.connections -= 1
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.CancelledError):
            await writer.wait_closed()
        log.info("MLLP connection from %s closed", peer)


def answer(handler: Handler, raw: bytes) -> bytes:
    """The framed ACK for one framed message's bytes: never raises for a handler's fault."""
    text, codec = decode(raw)
    try:
        reply = handler(text)
        if not isinstance(reply, str):
            raise TypeError(f"the handler returned {type(reply).__name__}, not the ACK text")
        return frame(reply, codec, "replace")
    except hl7v2.HL7Error as error:
        log.warning("message %r answered %s: %s", error.control_id, error.ack_code, error.reason)
        return frame(hl7v2.error_ack(text, error), codec, "replace")
    except Exception as error:
        log.exception("MLLP handler failed; answering AE")
        reason = f"application error: {type(error).__name__}: {error}"
        return frame(hl7v2.ack(text, "AE", reason, condition="207"), codec, "replace")


def answer_many(handler: GroupHandler, raws: list[bytes]) -> list[bytes]:
    """The framed ACKs for several messages answered together; never raises.

    When the group fails as a whole, each message is answered on its own, so the fault
    lands on the message that has it.
    """
    decoded = [decode(raw) for raw in raws]
    try:
        replies = handler.handle_many([text for text, _ in decoded])
        if len(replies) != len(raws) or not all(isinstance(r, str) for r in replies):
            raise TypeError("the handler did not return one ACK text per message")
        return [frame(reply, codec, "replace")
                for reply, (_, codec) in zip(replies, decoded, strict=True)]  # fmt: skip
    except Exception:
        log.exception("a group of %d messages failed; answering them one by one", len(raws))
        return [answer(handler, raw) for raw in raws]


def run_forever(host: str, port: int, handler: Handler, ssl: ssl.SSLContext | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; then stop listening, answer the messages in hand, exit."""

    async def main() -> None:
        server = await serve(host, port, handler, ssl=ssl)
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
        log.info("MLLP listening on %s", ", ".join(str(s.getsockname()) for s in server.sockets))
        await stopping.wait()
        await stop(server)

    with contextlib.suppress(KeyboardInterrupt):  # where signal handlers cannot be installed
        asyncio.run(main())


async def stop(server: asyncio.Server) -> None:
    """Stop listening, close every connection (each answers its message in hand first).

    Meant for a loop that serves MLLP only: it cancels the loop's other tasks.
    """
    server.close()
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await server.wait_closed()
    committer = _COMMITTERS.pop(server, None)
    if committer is not None:
        await asyncio.to_thread(committer.close)


@contextlib.contextmanager
def background_server(
    handler: Handler, host: str = "127.0.0.1", port: int = 0, *, ssl: ssl.SSLContext | None = None
) -> Iterator[tuple[str, int]]:
    """Run `serve` on its own event loop in a thread (tests, benchmarks); yields (host, port)."""
    started: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event, tuple]]
    started = concurrent.futures.Future()

    async def main() -> None:
        try:
            server = await serve(host, port, handler, ssl=ssl)
        except OSError as error:
            started.set_exception(error)
            return
        stopping = asyncio.Event()
        started.set_result((asyncio.get_running_loop(), stopping, server.sockets[0].getsockname()))
        await stopping.wait()
        await stop(server)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="mllp-server")
    thread.start()
    loop, stopping, address = started.result(timeout=10)
    try:
        yield address[0], address[1]
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join()


# -- clients -------------------------------------------------------------------------------


def send(
    host: str,
    port: int,
    messages: Iterable[str],
    timeout: float = 10.0,
    *,
    ssl: ssl.SSLContext | None = None,
) -> list[str]:
    """Send messages on one connection, waiting for each ACK before the next; the ACKs.

    This is what an interface engine does. Raises `TimeoutError` when an ACK is late and
    `MLLPError` when the server closes the connection first.
    """
    with _connect(host, port, timeout, ssl) as sock:
        acks = _Acks(sock)
        replies = []
        for message in messages:
            sock.sendall(frame(message))
            replies.append(acks.next())
        return replies


def send_pipelined(
    host: str,
    port: int,
    messages: Iterable[str],
    timeout: float = 60.0,
    *,
    ssl: ssl.SSLContext | None = None,
) -> list[str]:
    """Send all messages without waiting, then collect the ACKs (benchmarks, bulk replay)."""
    frames = [frame(m) for m in messages]
    with _connect(host, port, timeout, ssl) as sock:
        failures: list[OSError] = []
        data = b"".join(frames)
        writer = threading.Thread(target=_send_all, args=(sock, data, failures), daemon=True)
        writer.start()
        acks = _Acks(sock)
        replies = [acks.next() for _ in frames]
        writer.join()
    if failures:
        raise failures[0]
    return replies


def _send_all(sock: socket.socket, data: bytes, failures: list[OSError]) -> None:
    try:
        sock.sendall(data)
    except OSError as error:
        failures.append(error)


def _connect(host: str, port: int, timeout: float, context: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if context is None:
        return sock
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


class _Acks:
    """Complete frames read from a blocking socket, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = MLLPDecoder()
        self.ready: deque[bytes] = deque()

    def next(self) -> str:
        while not self.ready:
            data = self.sock.recv(_READ_SIZE)
            if not data:
                raise MLLPError("the server closed the connection before acknowledging")
            self.ready.extend(self.decoder.feed(data))
        return decode(self.ready.popleft())[0]
