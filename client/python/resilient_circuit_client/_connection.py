"""One connection to the daemon per address and process, shared by every protector.

Design note. A connection owns a lazily connected gRPC channel per replica address
(constructing it never waits for the daemon), the link state with its reconnect backoff
and current replica, counters, and the
batcher: the background thread that sends the successes of calls admitted in CLOSED
(cached or not) in one ReportBatch every `flush_interval`. A protector hands itself to the
batcher when its first pending success arrives, so a busy protector costs the batcher one
wake-up per interval, not one per call. After a fork the child starts over with new
connections (channels and threads do not survive a fork); every RPC goes through
`_fork.gate`, so none is in flight when the process forks.

TLS (`Tls`, from `tls_ca=`/`tls_cert=`/`tls_key=` or `$RESILIENT_CIRCUIT_TLS_CA`,
`$RESILIENT_CIRCUIT_TLS_CERT`, `$RESILIENT_CIRCUIT_TLS_KEY`): the channels are secure ones
trusting the CA, presenting the certificate and key for mTLS. A bearer token (`token=` or
`$RESILIENT_CIRCUIT_TOKEN`) goes with every call, over TLS or plaintext alike. Connections
are shared per addresses, TLS settings and token alike.

Several addresses (a list, or one string of comma-separated addresses) are the replicas
of one cluster: every RPC goes through `Connection.ask`, which runs it on the current
replica and, when that one cannot be reached, on the next, until one answers or every one
failed in turn (see `_link`).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Sequence, TypeVar, Union

import grpc
import grpc.experimental

from ._fork import gate, inherited
from ._generated import admin_pb2_grpc, protector_pb2, protector_pb2_grpc
from ._link import Link
from ._session import Sessions

log = logging.getLogger("resilient_circuit_client")

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_VARIABLE = "RESILIENT_CIRCUIT_ADDRESS"
#: The bearer token of a daemon started with --tokens, when `token=` is not given.
TOKEN_VARIABLE = "RESILIENT_CIRCUIT_TOKEN"
TLS_CA_VARIABLE = "RESILIENT_CIRCUIT_TLS_CA"
TLS_CERT_VARIABLE = "RESILIENT_CIRCUIT_TLS_CERT"
TLS_KEY_VARIABLE = "RESILIENT_CIRCUIT_TLS_KEY"
#: Set to 0 (or off, false, no) to keep the uncached Acquire on grpcio's unary call instead of the
#: Session stream of `_session`: an operator's way out should the small HTTP/2 client ever misbehave
#: in front of a proxy or a daemon it was not tested against, at the cost of the uncached speed.
SESSION_STREAM_VARIABLE = "RESILIENT_CIRCUIT_SESSION_STREAM"

#: How long a Report, a ReportBatch, an EnsureProtector or a GetProtector may take.
REQUEST_TIMEOUT = 1.0
#: How often the batcher sends pending successes.
FLUSH_INTERVAL = 0.05

# The daemon could not be reached (rather than: it refused).
UNREACHABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    }
)


def unreachable(error: grpc.RpcError) -> bool:
    return error.code() in UNREACHABLE


T = TypeVar("T")
#: One address, several comma-separated, or a sequence of them.
Addresses = Union[str, Sequence[str]]


def split_addresses(address: Addresses) -> list[str]:
    """The addresses in `address`, validated: each non-empty, without whitespace."""
    parts = address.split(",") if isinstance(address, str) else list(address)
    if not parts:
        raise ValueError("no daemon address given")
    for part in parts:
        if not isinstance(part, str) or not part.strip():
            raise ValueError(f"an empty daemon address in {address!r}")
        if part != part.strip() or any(c.isspace() for c in part):
            raise ValueError(f"whitespace in the daemon address {part!r} (expected host:port)")
    return parts


class _Details(
    collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call on the channel: unary calls, the
    Watch stream and ReportBatch alike."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _Details(
            details.method,
            details.timeout,
            [*(details.metadata or ()), self._header],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)


def resolve_token(token: str | None) -> str | None:
    """The token to send: `token`, else $RESILIENT_CIRCUIT_TOKEN, else none."""
    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if token is not None and (token != token.strip() or not token.isascii() or not token.isprintable()):
        raise ValueError("the token must be printable ASCII without surrounding whitespace")
    return token


#: A PEM file's path, or its contents as bytes.
PemSource = Union[str, "os.PathLike[str]", bytes]


@dataclass(frozen=True)
class Tls:
    """The daemon's CA (PEM) and, for mTLS, this client's certificate chain and key."""

    ca: bytes
    cert: Optional[bytes] = None
    key: Optional[bytes] = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert)


def _pem(what: str, source: PemSource | None, variable: str) -> Optional[bytes]:
    """The PEM bytes `source` gives (bytes as they are, else the file it names), else the
    file `$variable` names, else None."""
    if source is None:
        source = os.environ.get(variable) or None
    if source is None or isinstance(source, bytes):
        return source
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what} {os.fspath(source)!r}: cannot read it: {e.strerror}") from e


def resolve_tls(
    ca: PemSource | None = None, cert: PemSource | None = None, key: PemSource | None = None
) -> Optional[Tls]:
    """TLS from the arguments, else the `RESILIENT_CIRCUIT_TLS_*` variables; None (plaintext)
    when no CA is given. A certificate needs its key, and both need the CA."""
    ca_pem = _pem("tls_ca", ca, TLS_CA_VARIABLE)
    cert_pem = _pem("tls_cert", cert, TLS_CERT_VARIABLE)
    key_pem = _pem("tls_key", key, TLS_KEY_VARIABLE)
    if (cert_pem is None) != (key_pem is None):
        raise ValueError("tls_cert and tls_key go together: give both or neither")
    if ca_pem is None:
        if cert_pem is not None:
            raise ValueError("tls_cert needs tls_ca, the CA that signed the daemon's certificate")
        return None
    return Tls(ca=ca_pem, cert=cert_pem, key=key_pem)


class Tries:
    """The tries of one call under `Connection.ask`'s rules, for either transport: iterating
    gives the index of the replica to ask; `failed(e)` notes a failure on the link and
    re-raises `e` unless the next replica is to be asked; `answered(a)` notes an answer."""

    def __init__(self, conn: "Connection", timeout: float) -> None:
        self.conn = conn
        self.end = time.monotonic() + timeout
        self.count = 0
        self.turn = (0, 0)

    def left(self) -> float:
        """The seconds left of the timeout."""
        return max(0.001, self.end - time.monotonic())

    def __iter__(self) -> Iterator[int]:
        while True:
            self.count += 1
            self.turn = self.conn.link.turn()
            yield self.turn[0] % len(self.conn.replicas)

    def failed(self, e: grpc.RpcError) -> None:
        if not unreachable(e):
            raise e
        next_now = self.conn.link.failed(f"{e.code().name}: {e.details()}", self.turn)
        if not next_now or self.count >= len(self.conn.replicas) or time.monotonic() >= self.end:
            raise e

    def answered(self, answer: T) -> T:
        self.conn.link.up()
        return answer


def options() -> list[tuple[str, int]]:
    """The options of every channel to the daemon."""
    # A subchannel pool of its own: in a forked child a new channel to the same address
    # would otherwise reuse the parent's connection from gRPC's global pool, whose
    # socket belongs to the parent ("Wrong file descriptor generation").
    return [("grpc.enable_retries", 0), ("grpc.use_local_subchannel_pool", 1)]


def sync_options() -> list[tuple[str, int]]:
    """The options of a blocking (not asyncio) channel. Its one server-streaming call, the
    Watch, is read by the thread that iterates it, not by gRPC's channel-spin thread: an
    event then needs the GIL once (the reader's) to reach the cached fast path, instead of
    twice (the spin thread's, then the reader's), each a wait for a busy thread to give it
    away (the cached fast path does every `_protector.TURN`)."""
    return options() + [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]


class Replica:
    """One address of the daemon: its lazily connected channel and the stubs on it."""

    def __init__(self, address: str, tls: Optional[Tls] = None, token: str | None = None) -> None:
        self.address = address
        self.token = token
        if tls is None:
            self.channel = grpc.insecure_channel(address, options=sync_options())
        else:
            self.channel = grpc.secure_channel(address, tls.credentials(), options=sync_options())
        if token is not None:
            self.channel = grpc.intercept_channel(self.channel, _Bearer(token))
        self.protectors = protector_pb2_grpc.ProtectorServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        # The uncached Acquire's Session stream (plaintext only, unless turned off; see _session).
        self.sessions = Sessions(address, token) if tls is None and session_stream_enabled() else None


class Batched(Protocol):
    """What the batcher needs of a protector."""

    name: str

    def take_pending(self) -> list[protector_pb2.OutcomeBatch]: ...

    def apply_batch_result(self, result: protector_pb2.OutcomeBatchResult, revision: int) -> None: ...

    def batch_lost(self, count: int, why: str) -> None: ...


def session_stream_enabled() -> bool:
    """Whether the uncached Acquire may use the Session stream ($RESILIENT_CIRCUIT_SESSION_STREAM)."""
    value = os.environ.get(SESSION_STREAM_VARIABLE, "").strip().lower()
    return value not in ("0", "off", "false", "no")


@dataclass
class Stats:
    fallback_decisions: int = 0
    reports_lost: int = 0
    reports_dropped: int = 0
    batches_sent: int = 0


class Connection:
    def __init__(self, address: str, tls: Optional[Tls] = None, token: str | None = None) -> None:
        self.address = address
        self.tls = tls
        self.token = token
        self.replicas = [Replica(a, tls, token) for a in split_addresses(address)]
        self.link = Link(replicas=len(self.replicas))
        self.stats = Stats()
        self._cond = threading.Condition()
        self._dirty: list[Batched] = []
        self._flusher: threading.Thread | None = None
        # Held from taking a protector's pending outcomes until their batch is answered, so
        # batches reach the daemon in the order their outcomes were taken: without it a
        # FAILURE sent at once could overtake successes the batcher took just before (and
        # make them stale), and a close() could return with a batch still in flight.
        # Reentrant: an answer may fire a status-change callback that reads the protector.
        self.sending = threading.RLock()
        self.closed = threading.Event()

    @property
    def replica(self) -> Replica:
        """The replica the link asks now."""
        return self.turn()[1]

    def turn(self) -> tuple[tuple[int, int], Replica]:
        """The link's turn and the replica it names."""
        turn = self.link.turn()
        return turn, self.replicas[turn[0] % len(self.replicas)]

    def ask(self, call: Callable[[Replica, Callable[[], float]], T], timeout: float) -> T:
        """`call(replica, left)` on the current replica, `left()` being the seconds left of
        `timeout`; notes on the link how it went. When the replica cannot be reached, the
        call runs again on the next one while the round lasts and time is left; then the
        last error is raised. An error that is an answer (the daemon refused) is raised as
        it is."""
        tries = Tries(self, timeout)
        for index in tries:
            try:
                with gate.call():
                    return tries.answered(call(self.replicas[index], tries.left))
            except grpc.RpcError as e:
                tries.failed(e)

    def wake(self, protector: Batched) -> None:
        """`protector` has pending successes for the next batch."""
        with self._cond:
            self._dirty.append(protector)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name=f"resilient-circuit-batcher {self.address}", daemon=True
                )
                self._flusher.start()
            self._cond.notify()

    def _flush_loop(self) -> None:
        while not self.closed.is_set():
            with self._cond:
                while not self._dirty:
                    self._cond.wait()
            # Lets successes accumulate for one interval: a period, not synchronisation.
            if self.closed.wait(FLUSH_INTERVAL):
                return
            with self._cond:
                dirty, self._dirty = self._dirty, []
            self.send(dirty)

    def send(self, protectors: list[Batched]) -> None:
        """Sends the pending outcomes of `protectors` in one ReportBatch."""
        with self.sending:
            owners: list[Batched] = []
            batches: list[protector_pb2.OutcomeBatch] = []
            for p in dict.fromkeys(protectors):
                for b in p.take_pending():
                    owners.append(p)
                    batches.append(b)
            if batches:
                self.report_batch(owners, batches)

    def report_batch(self, owners: list[Batched], batches: list[protector_pb2.OutcomeBatch]) -> bool:
        """Sends `batches` (from `owners`, one each) and applies the answer; False when lost."""
        request = protector_pb2.ReportBatchRequest(batches=batches)
        why = None
        if self.link.down:
            why = "the link to the daemon is down"
        else:
            try:
                response = self.ask(lambda r, left: r.protectors.ReportBatch(request, timeout=left()), REQUEST_TIMEOUT)
            except grpc.RpcError as e:
                why = f"{e.code().name}: {e.details()}"
            else:
                self.stats.batches_sent += 1
                for owner, result in zip(owners, response.results):
                    owner.apply_batch_result(result, response.revision)
                return True
        for owner, batch in zip(owners, batches):
            owner.batch_lost(batch.successes + len(batch.outcomes), why)
        return False


_lock = threading.Lock()
_connections: dict[tuple[str, Optional[Tls], str | None], Connection] = {}


def resolve_address(address: Addresses | None) -> str:
    """The address(es) to use, validated, as one comma-separated string (the key of the
    connection they share)."""
    return ",".join(split_addresses(address or os.environ.get(ADDRESS_VARIABLE) or DEFAULT_ADDRESS))


def connection(address: str, tls: Optional[Tls] = None, token: str | None = None) -> Connection:
    """The process's connection to `address` with `tls` and `token` (one per triple)."""
    with _lock:
        key = (address, tls, token)
        conn = _connections.get(key)
        if conn is None:
            conn = _connections[key] = Connection(address, tls, token)
        return conn


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    for conn in _connections.values():
        conn.closed.set()
        inherited.append(conn)
    _connections.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
