"""SafetyNet(retry, protector) keeps the library's exception contract against the real
daemon: a function that always fails runs once, opens the protector, and the retries that
follow are rejected until they run out, so the caller gets RetryLimitReached from the
ProtectedCallError. `honour_retry_after=True` (on the net or the retry) is the opt-in
retry-after-aware mode. Waits are recorded through the retry module's `sleep`."""

import asyncio
import time
from datetime import timedelta
from unittest.mock import Mock

import pytest

from resilient_circuit_client import (
    CircuitProtectorPolicy,
    CircuitState,
    FixedDelay,
    ProtectedCallError,
    RetryLimitReached,
    RetryWithBackoffPolicy,
    SafetyNet,
)
from resilient_circuit_client import retry as retry_module

SECOND = timedelta(seconds=1)


@pytest.fixture
def recorded(monkeypatch):
    waits = []
    monkeypatch.setattr(retry_module, "sleep", waits.append)
    return waits


@pytest.fixture
def protector(address, key):
    # A long cooldown: every retry after the trip meets an OPEN protector.
    p = CircuitProtectorPolicy(resource_key=key, address=address, cooldown=timedelta(seconds=30))
    yield p
    p.close()


def test_by_default_the_retries_run_out_on_the_open_protector(protector):
    method = Mock(side_effect=RuntimeError)
    net = SafetyNet(policies=(RetryWithBackoffPolicy(max_retries=3), protector))
    with pytest.raises(RetryLimitReached) as raised:
        net(method)()
    assert isinstance(raised.value.__cause__, ProtectedCallError)
    assert raised.value.__cause__.reason == "OPEN"
    assert raised.value.attempts == 4
    assert method.call_count == 1
    assert protector.status is CircuitState.OPEN


def test_by_default_every_attempt_waits_as_the_library_does(protector, recorded):
    retry = RetryWithBackoffPolicy(max_retries=2, backoff=FixedDelay(SECOND))
    with pytest.raises(RetryLimitReached):
        SafetyNet(policies=(retry, protector))(Mock(side_effect=RuntimeError))()
    assert recorded == [1.0, 1.0, 1.0]


def test_by_default_an_async_function_keeps_the_contract(protector):
    calls = []

    @SafetyNet(policies=(RetryWithBackoffPolicy(max_retries=3), protector))
    async def op():
        calls.append(1)
        raise ConnectionError

    with pytest.raises(RetryLimitReached) as raised:
        asyncio.run(op())
    assert isinstance(raised.value.__cause__, ProtectedCallError)
    assert len(calls) == 1


def test_a_protector_around_a_retry_sees_one_success(protector):
    method = Mock(side_effect=[RuntimeError, RuntimeError, "success"])
    assert SafetyNet(policies=(protector, RetryWithBackoffPolicy(max_retries=3)))(method)() == "success"
    assert method.call_count == 3
    assert protector.status is CircuitState.CLOSED


def test_honour_retry_after_on_the_net_reraises_the_rejection_at_once(protector, recorded):
    retry = RetryWithBackoffPolicy(max_retries=3, backoff=FixedDelay(SECOND))
    policies = (retry, protector)
    net = SafetyNet(policies=policies, honour_retry_after=True)
    assert net.policies is policies
    method = Mock(side_effect=RuntimeError)
    with pytest.raises(ProtectedCallError) as raised:
        net(method)()
    # One wait after the failure that opened it; the rejection's retry_after (about 30 s)
    # is longer than the next wait (1 s), so it is not retried.
    assert recorded == [1.0]
    assert method.call_count == 1
    assert raised.value.retry_after > 20 * SECOND
    assert retry.honour_retry_after is False, "the net does not change the policy object"


def test_honour_retry_after_on_the_retry_itself(protector, recorded):
    retry = RetryWithBackoffPolicy(max_retries=3, backoff=FixedDelay(SECOND), honour_retry_after=True)
    with pytest.raises(ProtectedCallError):
        SafetyNet(policies=(retry, protector))(Mock(side_effect=RuntimeError))()
    assert recorded == [1.0]


def test_honour_retry_after_waits_exactly_a_retry_after_that_fits(address, key, monkeypatch):
    # A cooldown far shorter than the backoff's wait: the rejection's retry_after (at most
    # the 1 ms cooldown) fits, so the retry waits that instead, and the attempt after it
    # is the HALF_OPEN trial. The short waits are really made (the behaviour under test);
    # the 10 s one is only recorded.
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if seconds <= 0.001:
            time.sleep(seconds)

    monkeypatch.setattr(retry_module, "sleep", sleep)
    protector = CircuitProtectorPolicy(resource_key=key, address=address, cooldown=timedelta(milliseconds=1))
    retry = RetryWithBackoffPolicy(max_retries=5, backoff=FixedDelay(timedelta(seconds=10)))
    method = Mock(side_effect=[RuntimeError, "ok"])
    assert SafetyNet(policies=(retry, protector), honour_retry_after=True)(method)() == "ok"
    assert waits[0] == 10.0 and len(waits) >= 1
    assert all(w <= 0.001 for w in waits[1:])
    protector.close()
