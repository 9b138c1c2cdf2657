"""The uncached Acquire on a Session stream spoken over a plain socket by the caller's thread.

Design note. grpcio spends about 150 to 180 µs of client CPU on one unary call (its core's
HTTP/2, completion queue and poller threads), where redis-py's round trip is one socket
write and read: measured against the same daemon, a bare unary Acquire from Python made
a third to a half of pybreaker-on-Redis's calls/s, and grpcio's Session stream hands every
message to and from threads of its own, which costs as much. So the uncached Acquire goes
on the daemon's Session RPC (proto/SEMANTICS.md: pipelined Acquires, each answered once
with the unary call's semantics, correlated by id) through this minimal HTTP/2 client:
one connection and one stream per replica, each request one DATA frame written by the
caller, each answer read by a caller from the socket with the call's deadline as the
socket's timeout. No handoff between threads: about 15 µs of client CPU a call. A
stream is opened after a call the unary Acquire answered (the daemon sets it up while
the caller runs its function; opening it first would spend the call's deadline on it),
and used from the next call on.

It does only what the stream needs. Requests are one HEADERS frame (HPACK literals, never
indexed, so this side keeps no table) and DATA frames; it acknowledges SETTINGS and PING,
honours the daemon's flow-control windows for what it sends and opens its own receive
windows to the maximum (refilled as answers arrive). It never decodes the daemon's header
blocks: an answer is a DATA frame, and a stream that ends (trailers, RST_STREAM, GOAWAY,
EOF) is *broken*, whatever its status said. A broken stream raises `Broken` (not an RPC
error), and the caller asks the same call by grpcio's unary Acquire, which reads the real
status (UNAVAILABLE, UNAUTHENTICATED, ...); the replica's stream is then left alone for
`COOL_OFF` before a new connection is tried, so a daemon that refuses Session costs one
extra connect a second, not one a call.

Several threads share a stream: each writes its request under a lock, then whichever
waiting caller finds nobody reading reads frames for everyone, hands each answer to its
waiter and passes the reading on when its own arrived. Each stream has one thread, which
reads only while no call is in flight (see `Stream._idle`): an idle client still answers
the daemon's PINGs, and closes the stream the daemon ended at its shutdown instead of
holding the daemon up until its `--shutdown-grace`. A caller past its deadline stops
waiting (DEADLINE_EXCEEDED, so the fallback decides) without cancelling anything; if its
answer arrives later and is a HALF_OPEN trial's permit, the reader reports it IGNORED on
the stream at once, as the semantics ask, so the trial is not held until `permit_ttl`.

Used for plaintext channels with a `host:port` address only (a token goes as the
`authorization` header); TLS channels and other target forms keep grpcio's unary call.
Fork: the socket belongs to a `Replica` of a `Connection`, which a child never uses (it
makes new connections), and the calls run inside `_fork.gate` like every RPC.
"""

from __future__ import annotations

import itertools
import select
import socket
import struct
import threading
import time
from typing import Optional

import grpc

from ._generated import protector_pb2, types_pb2

#: How long a replica's stream is left alone after it broke (calls use the unary Acquire).
COOL_OFF = 1.0
#: How often a stream's thread looks at the socket while calls read it (seconds).
IDLE_POLL = 0.2
#: Answers given up on whose late arrival is still watched for (to release trial permits).
ABANDONED_MAX = 4096

_PATH = "/resilient_circuit.v1.ProtectorService/Session"
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_INITIAL_WINDOW_SIZE = 4
_MAX_WINDOW = 0x7FFFFFFF
_STREAM = 1
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_IGNORED = types_pb2.OUTCOME_IGNORED


class Broken(Exception):
    """The stream ended or could not be opened: ask by the unary call instead."""


class SessionRpcError(grpc.RpcError):
    """An answer that is an error (SessionError), or a missed deadline, as grpcio raises it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def host_port(address: str) -> Optional[tuple[str, int]]:
    """(host, port) of a plain `host:port` address, else None (other gRPC target forms)."""
    if "/" in address or address.startswith("unix:"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def _literal(name: bytes, value: bytes, index: int = 0) -> bytes:
    """An HPACK literal header field without indexing (a static-table name when `index`)."""

    def string(s: bytes) -> bytes:
        return _integer(len(s), 7, 0) + s

    return _integer(index, 4, 0) + (b"" if index else string(name)) + string(value)


def _varint(value: int) -> bytes:
    """A protobuf varint, which is also how an HPACK integer continues past its prefix."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _integer(value: int, prefix: int, first: int) -> bytes:
    """An HPACK integer with a `prefix`-bit prefix (RFC 7541, 5.1)."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes((first | value,))
    return bytes((first | limit,)) + _varint(value - limit)


def acquire_field(name: str) -> bytes:
    """The encoded `acquire` field of a SessionRequest for `name` (cached per protector)."""
    body = protector_pb2.AcquireRequest(name=name).SerializeToString()
    return b"\x12" + _varint(len(body)) + body


class Stream:
    """One connection to a replica carrying one Session stream."""

    def __init__(self, host: str, port: int, authority: str, token: Optional[str], timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=max(timeout, 0.001))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = (
            b"\x83\x86"  # :method POST, :scheme http (static table entries 3 and 6)
            + _literal(b"", _PATH.encode(), 4)
            + _literal(b"", authority.encode(), 1)
            + _literal(b"content-type", b"application/grpc")
            + _literal(b"te", b"trailers")
            + (_literal(b"authorization", f"Bearer {token}".encode()) if token else b"")
        )
        self.broken: Optional[str] = None
        self.broken_at = 0.0
        # Reentrant: a write that fails breaks the stream, which wakes writers waiting on a window.
        self._write = threading.RLock()
        self._cond = threading.Condition()
        self._reading = False
        self._answers: dict[int, bytes] = {}
        self._waiting: set[int] = set()
        # id -> protector name of calls given up on, oldest first (dicts keep order).
        self._abandoned: dict[int, str] = {}
        self._buffer = bytearray()
        self._data = bytearray()
        # The daemon's windows for what this side sends, and what it sent since the last
        # refill of this side's receive windows.
        self._send_conn = 65535
        self._send_stream = 65535
        self._peer_initial = 65535
        self._window_cond = threading.Condition(self._write)
        self._received = 0
        self._ids = itertools.count(1)
        self._stopped = threading.Event()
        self._send(
            _PREFACE
            + _frame(_SETTINGS, 0, 0, struct.pack(">HI", _INITIAL_WINDOW_SIZE, _MAX_WINDOW))
            + _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535))
            + _frame(_HEADERS, _END_HEADERS, _STREAM, headers)
        )
        threading.Thread(target=self._idle, name=f"resilient-circuit-session {authority}", daemon=True).start()

    def _idle(self) -> None:
        """The stream's one thread: reads what arrives while no call does (a PING, the
        daemon's GOAWAY or trailers when it shuts down, a late answer), so an idle client
        answers keepalives and closes a stream the daemon ended instead of holding up its
        shutdown. Calls read for themselves: while one is in flight this thread only looks
        again every IDLE_POLL seconds."""
        while self.broken is None:
            try:
                readable, _, _ = select.select([self.sock], [], [], IDLE_POLL)
            except (OSError, ValueError):
                return
            if not readable:
                continue
            with self._cond:
                busy = self._reading or bool(self._waiting)
                if not busy:
                    self._reading = True
            if busy:
                self._stopped.wait(IDLE_POLL)
                continue
            try:
                end = time.monotonic() + IDLE_POLL
                while self.broken is None:
                    message = self._buffered_message()
                    if message is not None:
                        self._deliver(message)
                    elif self._frame_buffered() or select.select([self.sock], [], [], 0)[0]:
                        self._step(end)
                    else:
                        break
            except (Broken, SessionRpcError, OSError, ValueError):
                pass
            finally:
                with self._cond:
                    self._reading = False
                    self._cond.notify_all()

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            self._break(f"write: {e}")
            raise Broken(self.broken) from e

    def close(self) -> None:
        self._break("closed")

    def _break(self, why: str) -> None:
        self._stopped.set()
        with self._cond:
            if self.broken is None:
                self.broken = why
                self.broken_at = time.monotonic()
            self._cond.notify_all()
        with self._window_cond:
            self._window_cond.notify_all()
        try:
            self.sock.close()
        except OSError:
            pass

    # -- calls --------------------------------------------------------------------------

    def acquire(self, field: bytes, name: str, timeout: float) -> protector_pb2.AcquireResponse:
        """The daemon's answer to an Acquire (`field` from `acquire_field(name)`) within
        `timeout` seconds; SessionRpcError for an error answer or a missed deadline,
        Broken when the stream ended."""
        end = time.monotonic() + timeout
        i = next(self._ids)
        with self._cond:
            if self.broken is not None:
                raise Broken(self.broken)
            self._waiting.add(i)
        try:
            self._request(b"\x08" + _varint(i) + field, end)
            answer = self._wait(i, end)
        except BaseException:
            with self._cond:
                # An answer a reader stored after this caller stopped waiting is a late one.
                late = self._answers.pop(i, None)
                if i in self._waiting:
                    self._waiting.discard(i)
                    if late is None:
                        self._abandon(i, name)
            if late is not None:
                self._release_late_trial(name, late, reading=False)
            raise
        response = protector_pb2.SessionResponse.FromString(answer)
        if response.HasField("error"):
            e = response.error
            raise SessionRpcError(_CODES.get(e.code, grpc.StatusCode.UNKNOWN), e.message)
        return response.acquire

    def _abandon(self, i: int, name: str) -> None:
        self._abandoned[i] = name
        if len(self._abandoned) > ABANDONED_MAX:
            del self._abandoned[next(iter(self._abandoned))]

    def _request(self, message: bytes, end: float, reading: bool = False) -> None:
        """Writes one gRPC message as a DATA frame, within the daemon's send windows;
        `reading` when the caller is the stream's reader already."""
        payload = b"\x00" + struct.pack(">I", len(message)) + message
        with self._write:
            while min(self._send_conn, self._send_stream) < len(payload):
                # The windows reopen as a reader takes the daemon's WINDOW_UPDATEs. When
                # nobody reads (every caller is here, and the update came after the last
                # answer read), this writer reads until they do.
                left = end - time.monotonic()
                if self.broken is not None:
                    raise Broken(self.broken)
                if left <= 0:
                    raise SessionRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "the daemon's flow-control window is closed")
                if reading:
                    self._step(end)
                    continue
                with self._cond:
                    reader = not self._reading
                    self._reading = True
                if not reader:
                    self._window_cond.wait(left)
                    continue
                try:
                    self._step(end)
                    while (message := self._buffered_message()) is not None:
                        self._deliver(message)
                finally:
                    with self._cond:
                        self._reading = False
                        self._cond.notify_all()
            self._send_conn -= len(payload)
            self._send_stream -= len(payload)
            self._send(_frame(_DATA, 0, _STREAM, payload))

    def _wait(self, i: int, end: float) -> bytes:
        with self._cond:
            while True:
                answer = self._answers.pop(i, None)
                if answer is not None:
                    self._waiting.discard(i)
                    return answer
                if self.broken is not None:
                    raise Broken(self.broken)
                left = end - time.monotonic()
                if left <= 0:
                    raise SessionRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
                if not self._reading:
                    self._reading = True
                    break
                self._cond.wait(left)
        try:
            return self._read_until(i, end)
        finally:
            with self._cond:
                self._reading = False
                if self._waiting:
                    # Someone else still waits: one of them reads next.
                    self._cond.notify_all()

    def _read_until(self, i: int, end: float) -> bytes:
        while True:
            message = self._next_message(end)
            mine = self._deliver(message)
            if mine is not None and mine == i:
                with self._cond:
                    self._waiting.discard(i)
                    return self._answers.pop(i)

    def _deliver(self, message: bytes) -> Optional[int]:
        """Hands an answer to its waiter; returns its id (None when nobody waits for it)."""
        i, _ = _leading_id(message)
        with self._cond:
            if i in self._waiting:
                self._answers[i] = message
                self._cond.notify_all()
                return i
            name = self._abandoned.pop(i, None)
        if name is not None:
            self._release_late_trial(name, message, reading=True)
        return None

    def _release_late_trial(self, name: str, message: bytes, reading: bool) -> None:
        response = protector_pb2.SessionResponse.FromString(message)
        if not response.HasField("acquire"):
            return
        permit = response.acquire.permit
        if response.acquire.decision == types_pb2.DECISION_ADMITTED and permit.id:
            report = protector_pb2.SessionRequest(
                id=0, report=protector_pb2.ReportRequest(name=name, permit=permit, outcome=_IGNORED)
            )
            # Its answer (id 0) is read and dropped like any other nobody waits for. On a
            # stream that broke meanwhile the daemon releases the permit itself.
            try:
                self._request(report.SerializeToString(), time.monotonic() + 1.0, reading)
            except (Broken, SessionRpcError):
                pass

    # -- reading ------------------------------------------------------------------------

    def _next_message(self, end: float) -> bytes:
        """The next gRPC message on the stream, answering control frames on the way."""
        while True:
            message = self._buffered_message()
            if message is not None:
                return message
            self._step(end)

    def _buffered_message(self) -> Optional[bytes]:
        if len(self._data) >= 5:
            length = int.from_bytes(self._data[1:5], "big")
            if len(self._data) >= 5 + length:
                message = bytes(self._data[5 : 5 + length])
                del self._data[: 5 + length]
                return message
        return None

    def _frame_buffered(self) -> bool:
        b = self._buffer
        return len(b) >= 9 and len(b) >= 9 + int.from_bytes(b[:3], "big")

    def _step(self, end: float) -> None:
        """Reads one frame and does what it says."""
        kind, flags, stream, payload = self._frame(end)
        if kind == _DATA and stream == _STREAM:
            if flags & _PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            self._data += payload
            self._refill(len(payload))
            if flags & _END_STREAM:
                self._fail("the daemon ended the stream")
        elif kind == _HEADERS and stream == _STREAM and flags & _END_STREAM:
            self._fail("the daemon ended the stream (trailers)")
        elif kind == _RST_STREAM and stream == _STREAM:
            self._fail(f"the daemon reset the stream (error {int.from_bytes(payload[:4], 'big')})")
        elif kind == _GOAWAY:
            self._fail("the daemon closed the connection (GOAWAY)")
        elif kind == _SETTINGS and not flags & _ACK:
            self._settings(payload)
        elif kind == _PING and not flags & _ACK:
            with self._write:
                self._send(_frame(_PING, _ACK, 0, payload))
        elif kind == _WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & _MAX_WINDOW
            with self._write:
                if stream == 0:
                    self._send_conn += increment
                elif stream == _STREAM:
                    self._send_stream += increment
                self._window_cond.notify_all()

    def _fail(self, why: str):
        self._break(why)
        raise Broken(why)

    def _settings(self, payload: bytes) -> None:
        with self._write:
            for at in range(0, len(payload) - 5, 6):
                key, value = struct.unpack_from(">HI", payload, at)
                if key == _INITIAL_WINDOW_SIZE:
                    self._send_stream += value - self._peer_initial
                    self._peer_initial = value
            self._window_cond.notify_all()
            self._send(_frame(_SETTINGS, _ACK, 0, b""))

    def _refill(self, count: int) -> None:
        self._received += count
        if self._received >= _MAX_WINDOW // 2:
            update = struct.pack(">I", self._received)
            self._received = 0
            with self._write:
                self._send(_frame(_WINDOW_UPDATE, 0, 0, update) + _frame(_WINDOW_UPDATE, 0, _STREAM, update))

    def _frame(self, end: float) -> tuple[int, int, int, bytes]:
        # Taken from the buffer only once whole: a reader whose deadline passes mid-frame
        # leaves the part it read to the next reader.
        buffer = self._fill(9, end)
        length = int.from_bytes(buffer[:3], "big")
        buffer = self._fill(9 + length, end)
        kind, flags = buffer[3], buffer[4]
        stream = int.from_bytes(buffer[5:9], "big") & _MAX_WINDOW
        payload = bytes(buffer[9 : 9 + length])
        del buffer[: 9 + length]
        return kind, flags, stream, payload

    def _fill(self, n: int, end: float) -> bytearray:
        """The read buffer, holding at least `n` bytes."""
        buffer = self._buffer
        while len(buffer) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise SessionRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            try:
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                self._fail(f"read: {e}")
            if not chunk:
                self._fail("the daemon closed the connection")
            buffer += chunk
        return buffer


def _leading_id(message: bytes) -> tuple[int, int]:
    """The `id` field (1, a varint) a SessionResponse starts with, and where it ends; 0
    when it does not start with it (an id of 0 is not encoded)."""
    if not message or message[0] != 0x08:
        return 0, 0
    value, shift, at = 0, 0, 1
    while at < len(message):
        b = message[at]
        value |= (b & 0x7F) << shift
        at += 1
        if b < 0x80:
            break
        shift += 7
    return value, at


class Sessions:
    """The stream of one replica: opened after a call the unary Acquire answered, used from
    the next call on, and opened again (after COOL_OFF) once it broke."""

    def __init__(self, address: str, token: Optional[str]) -> None:
        self.target = host_port(address)
        self.address = address
        self.token = token
        self._lock = threading.Lock()
        self._stream: Optional[Stream] = None
        self._retry_at = 0.0

    def live(self) -> Optional[Stream]:
        """The stream to ask on, if one is open."""
        s = self._stream
        return s if s is not None and s.broken is None else None

    def open(self, timeout: float) -> None:
        """Opens a stream for the next calls, unless one is open or the last one broke (or
        could not be opened) less than COOL_OFF ago. Called once a unary call answered, so
        the daemon sets the stream up while the caller runs its function, never within a
        call's deadline."""
        if self.target is None or time.monotonic() < self._retry_at:
            return
        with self._lock:
            s = self._stream
            now = time.monotonic()
            if s is not None and (s.broken is None or now < s.broken_at + COOL_OFF):
                return
            if now < self._retry_at:
                return
            try:
                self._stream = Stream(*self.target, self.address, self.token, timeout)
            except (OSError, Broken):
                self._retry_at = time.monotonic() + COOL_OFF

    def close(self) -> None:
        s = self._stream
        if s is not None:
            s.close()
