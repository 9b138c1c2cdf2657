"""The uncached Acquire's Session stream (`_session`): shared by threads, every answer to
its caller; a trial answered after its caller gave up is released at once; a broken
stream hands the call to the unary Acquire and is reopened after its cool-off."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import grpc
import pytest

from daemon import Daemon
from resilient_circuit_client import CircuitProtectorPolicy
from resilient_circuit_client import _session
from resilient_circuit_client._generated import (
    admin_pb2,
    admin_pb2_grpc,
    protector_pb2,
    protector_pb2_grpc,
    types_pb2,
)

from test_token import TOKEN, guarded  # noqa: F401 - the guarded daemon fixture

PATIENT = timedelta(seconds=5)
DEADLINE = 10.0


def stubs(address: str):
    channel = grpc.insecure_channel(address)
    return protector_pb2_grpc.ProtectorServiceStub(channel), admin_pb2_grpc.AdminServiceStub(channel)


def view(address: str, name: str) -> types_pb2.Protector:
    protectors, _ = stubs(address)
    return protectors.GetProtector(protector_pb2.GetProtectorRequest(name=name), timeout=5).protector


def eventually(check, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.01)  # polling the daemon's view, with a deadline


def test_threads_share_the_stream_and_each_gets_its_own_answer(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, cached=False, acquire_deadline=PATIENT)

    @policy
    def noop():
        return None

    noop()  # opens the stream, the unary Acquire answering
    sessions = policy._rt.conn.replica.sessions
    stream = sessions._stream
    assert stream is not None and stream.broken is None, "the first call did not open the stream"
    errors: list[BaseException] = []

    def calls() -> None:
        try:
            for _ in range(200):
                noop()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert policy.fallback_decisions == 0
    assert sessions._stream is stream and stream.broken is None, "the calls left the stream"
    policy.close()
    counters = view(address, key).counters
    assert (counters.admitted, counters.successes) == (1 + 8 * 200, 1 + 8 * 200)


def test_a_trial_answered_after_its_caller_gave_up_is_released(address, key):
    protectors, admin = stubs(address)
    protectors.EnsureProtector(protector_pb2.EnsureProtectorRequest(name=key, policy=types_pb2.Policy()), timeout=5)
    admin.SetStatus(admin_pb2.SetStatusRequest(name=key, status=types_pb2.STATUS_HALF_OPEN), timeout=5)
    stream = _session.Stream(*_session.host_port(address), address, None, 5)
    try:
        # The Acquire's answer arrives for an id whose caller gave up on it.
        with stream._cond:
            stream._abandon(7, key)
        stream._request(b"\x08\x07" + _session.acquire_field(key), time.monotonic() + 5)
        # Another call reads the stream, and with it the late answer.
        probe = _session.acquire_field(f"{key}-absent")
        try:
            stream.acquire(probe, f"{key}-absent", 5)
        except _session.SessionRpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND
        eventually(lambda: view(address, key).trials_in_flight == 0, "the late trial was never released")
        assert view(address, key).counters.failures == 0
    finally:
        stream.close()


def test_a_broken_stream_hands_the_call_to_the_unary_acquire(address, key, monkeypatch):
    monkeypatch.setattr(_session, "COOL_OFF", 0.0)
    policy = CircuitProtectorPolicy(resource_key=key, address=address, cached=False, acquire_deadline=PATIENT)

    @policy
    def noop():
        return None

    noop()  # opens the stream
    noop()  # the stream answers
    sessions = policy._rt.conn.replica.sessions
    first = sessions._stream
    first.sock.shutdown(2)  # as a daemon closing the connection would
    noop()  # the unary Acquire answers this one, and a new stream is opened
    assert first.broken is not None
    second = sessions._stream
    assert second is not first and second.broken is None
    noop()  # the new stream answers
    assert sessions._stream is second and second.broken is None
    assert policy.fallback_decisions == 0
    policy.close()
    assert view(address, key).counters.successes == 4


def test_the_stream_carries_the_token(guarded, key):  # noqa: F811 - the fixture
    policy = CircuitProtectorPolicy(
        resource_key=key, address=guarded.address, cached=False, acquire_deadline=PATIENT, token=TOKEN
    )

    @policy
    def noop():
        return None

    noop()
    noop()
    stream = policy._rt.conn.replica.sessions._stream
    assert stream is not None and stream.broken is None, "the daemon refused the token on the stream"
    assert policy.fallback_decisions == 0


def test_a_stream_the_daemon_refuses_is_broken_not_an_answer(guarded, key):  # noqa: F811 - the fixture
    stream = _session.Stream(*_session.host_port(guarded.address), guarded.address, "not-the-token", 5)
    try:
        with pytest.raises(_session.Broken):
            stream.acquire(_session.acquire_field(key), key, 5)
    finally:
        stream.close()


def test_an_idle_stream_does_not_hold_up_the_daemons_shutdown(circuitd_bin, key):
    # With a grace period far beyond the stop's deadline, the daemon exits by itself only
    # once every connection closed: an idle client must close the stream the daemon ended.
    own = Daemon(circuitd_bin, extra=("--shutdown-grace", "1h"))
    try:
        policy = CircuitProtectorPolicy(resource_key=key, address=own.address, cached=False, acquire_deadline=PATIENT)

        @policy
        def noop():
            return None

        noop()
        noop()
        policy.close()
        stream = policy._rt.conn.replica.sessions._stream
        assert stream is not None and stream.broken is None
    finally:
        code = own.stop(deadline=DEADLINE)
    assert code == 0, "the daemon waited for the idle stream (killed at the deadline)"
    assert stream.broken is not None


def test_a_writer_that_finds_the_window_closed_reads_the_update_itself(address, key):
    # Requests written and never read for: the daemon reopens its flow-control window by
    # WINDOW_UPDATEs that only a reader takes. Far more than its initial 64 KiB.
    stream = _session.Stream(*_session.host_port(address), address, None, 5)
    try:
        message = b"\x08\x00" + _session.acquire_field(f"{key}-absent")
        for _ in range(200_000 // len(message) + 1):
            stream._request(message, time.monotonic() + DEADLINE)
        assert stream.broken is None
    finally:
        stream.close()


def test_only_plain_host_port_addresses_get_a_stream():
    assert _session.host_port("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert _session.host_port("[::1]:50051") == ("::1", 50051)
    assert _session.host_port("daemon.internal:7") == ("daemon.internal", 7)
    for other in ["dns:///daemon:50051", "unix:/run/circuitd.sock", "daemon", ":50051", "daemon:port"]:
        assert _session.host_port(other) is None, other


def test_the_session_stream_can_be_turned_off(address, key, monkeypatch):
    monkeypatch.setenv("RESILIENT_CIRCUIT_SESSION_STREAM", "0")
    policy = CircuitProtectorPolicy(resource_key=key, address=address, cached=False, acquire_deadline=PATIENT)

    @policy
    def noop():
        return "done"

    assert [noop() for _ in range(3)] == ["done"] * 3
    assert policy._rt.conn.replica.sessions is None, "the Session stream was used though turned off"
    assert policy.decisions["daemon"] == 3
