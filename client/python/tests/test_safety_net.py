"""SafetyNet: the first policy outermost, unique policies, and a retry around a protector."""

from datetime import timedelta

import pytest

from resilient_circuit_client import (
    CircuitProtectorPolicy,
    FixedDelay,
    ProtectedCallError,
    RetryLimitReached,
    RetryWithBackoffPolicy,
    SafetyNet,
)


def tagging(tag, log):
    def policy(func):
        def wrapped(*a, **kw):
            log.append(tag)
            return func(*a, **kw)

        return wrapped

    return policy


def test_policies_apply_first_outermost():
    log = []
    net = SafetyNet(policies=(tagging("outer", log), tagging("inner", log)))
    assert net(lambda: log.append("call") or 7)() == 7
    assert log == ["outer", "inner", "call"]


def test_the_same_policy_twice_is_refused():
    retry = RetryWithBackoffPolicy()
    with pytest.raises(ValueError, match="unique"):
        SafetyNet(policies=(retry, retry))


def test_with_honour_retry_after_a_retry_around_a_protector_stops_when_it_opens(address, key):
    slept = []
    retry = RetryWithBackoffPolicy(max_retries=5, backoff=FixedDelay(timedelta(milliseconds=5)), sleep=slept.append)
    protector = CircuitProtectorPolicy(resource_key=key, address=address, cooldown=timedelta(seconds=30))
    calls = []

    @SafetyNet(policies=(retry, protector), honour_retry_after=True)
    def op():
        calls.append(1)
        raise ConnectionError

    # The first failure opens the default protector; the retry's next attempt is
    # rejected with a 30 s retry_after, longer than the backoff, so it is raised at once.
    with pytest.raises(ProtectedCallError) as raised:
        op()
    assert len(calls) == 1 and slept == [0.005]
    assert raised.value.reason == "OPEN" and raised.value.retry_after > timedelta(seconds=20)


def test_a_protector_around_a_retry_counts_the_whole_sequence_once(address, key):
    retry = RetryWithBackoffPolicy(max_retries=2, sleep=lambda d: None)
    protector = CircuitProtectorPolicy(resource_key=key, address=address, failure_limit=(3, 3))

    @SafetyNet(policies=(protector, retry))
    def op():
        raise ConnectionError

    with pytest.raises(RetryLimitReached):
        op()
    log = protector.execution_log
    assert (len(log), log.failure_count) == (1, 1)
