"""RetryWithBackoffPolicy, ExponentialDelay and FixedDelay: the library's documented
behaviour (a wait after every failed attempt, the last included), and the
retry-after-aware option (no blind retry of a rejection). Sleeps are recorded, not slept."""

import asyncio
import random
from datetime import timedelta

import pytest

from resilient_circuit_client import (
    ExponentialDelay,
    FixedDelay,
    ProtectedCallError,
    RetryLimitReached,
    RetryWithBackoffPolicy,
)

MS = timedelta(milliseconds=1)


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"; counts calls."""

    def __init__(self, failures, error=ConnectionError):
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error() if isinstance(self.error, type) else self.error
        return "ok"


def retry(**kwargs):
    slept = []
    policy = RetryWithBackoffPolicy(sleep=slept.append, **kwargs)
    return policy, slept


def test_a_flaky_operation_succeeds_within_its_retries():
    policy, slept = retry(max_retries=3)
    op = Flaky(3)
    assert policy(op)() == "ok"
    assert op.calls == 4
    assert slept == [], "no backoff, no wait"


def test_running_out_of_retries_raises_retry_limit_reached_from_the_last_error():
    policy, _ = retry()
    op = Flaky(10, ValueError("boom"))
    with pytest.raises(RetryLimitReached) as raised:
        policy(op)()
    assert op.calls == 4, "max_retries defaults to 3: four attempts"
    assert isinstance(raised.value.__cause__, ValueError)
    assert raised.value.attempts == 4


def test_an_exception_should_handle_declines_is_raised_at_once():
    policy, slept = retry(should_handle=lambda e: isinstance(e, (ConnectionError, TimeoutError)))
    op = Flaky(10, KeyError)
    with pytest.raises(KeyError):
        policy(op)()
    assert op.calls == 1 and slept == []


def test_the_backoff_waits_after_every_failed_attempt_as_the_library_does():
    policy, slept = retry(max_retries=2, backoff=FixedDelay(250 * MS))
    with pytest.raises(RetryLimitReached):
        policy(Flaky(10))()
    # As in the library, it waits once more after the final attempt before giving up.
    assert slept == [0.25, 0.25, 0.25]


def test_exponential_backoff_between_attempts():
    backoff = ExponentialDelay(min_delay=timedelta(seconds=1), max_delay=timedelta(seconds=10), factor=2)
    policy, slept = retry(max_retries=5, backoff=backoff)
    with pytest.raises(RetryLimitReached):
        policy(Flaky(10))()
    assert slept == [1, 2, 4, 8, 10, 10]


def test_with_honour_retry_after_a_rejection_is_not_retried_blindly():
    policy, slept = retry(backoff=FixedDelay(timedelta(seconds=1)), honour_retry_after=True)
    op = Flaky(10, ProtectedCallError(name="p", reason="OPEN", retry_after=timedelta(seconds=30)))
    with pytest.raises(ProtectedCallError):
        policy(op)()
    assert op.calls == 1 and slept == []
    bare = Flaky(10, ProtectedCallError)
    with pytest.raises(ProtectedCallError):
        policy(bare)()
    assert bare.calls == 1


def test_with_honour_retry_after_a_rejection_whose_retry_after_fits_waits_exactly_that():
    policy, slept = retry(backoff=FixedDelay(timedelta(seconds=1)), honour_retry_after=True)
    op = Flaky(1, ProtectedCallError(name="p", reason="OPEN", retry_after=timedelta(milliseconds=200)))
    assert policy(op)() == "ok"
    assert slept == [0.2]


def test_async_functions_are_awaited_and_retried():
    slept = []

    async def record(delay):
        slept.append(delay)

    policy = RetryWithBackoffPolicy(max_retries=2, backoff=FixedDelay(10 * MS), async_sleep=record)
    calls = []

    @policy
    async def op():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError
        return "ok"

    assert asyncio.run(op()) == "ok"
    assert len(calls) == 3 and slept == [0.01, 0.01]


def test_exponential_delay_grows_by_its_factor_up_to_the_cap():
    backoff = ExponentialDelay(min_delay=timedelta(seconds=1), max_delay=timedelta(seconds=10), factor=3)
    assert [backoff.for_attempt(n) for n in range(1, 5)] == [1, 3, 9, 10]
    assert backoff.for_attempt(10_000) == 10


def test_exponential_delay_jitter_stays_within_its_fraction_and_under_the_cap():
    backoff = ExponentialDelay(
        min_delay=timedelta(seconds=1), max_delay=timedelta(seconds=10), factor=2, jitter=0.1, rng=random.Random(7)
    )
    thirds = [backoff.for_attempt(3) for _ in range(500)]
    assert all(3.6 <= d <= 4.4 for d in thirds)
    assert min(thirds) < 3.7 and max(thirds) > 4.3, "the spread reaches both ends"
    assert all(backoff.for_attempt(4) <= 8.8 for _ in range(100))
    assert all(backoff.for_attempt(5) <= 10 for _ in range(100)), "max_delay is a hard ceiling"


def test_exponential_delay_validates_jitter_and_attempt():
    with pytest.raises(ValueError, match="jitter"):
        ExponentialDelay(min_delay=MS, max_delay=MS, jitter=1.5)
    with pytest.raises(ValueError, match="jitter"):
        ExponentialDelay(min_delay=MS, max_delay=MS, jitter=-0.1)
    with pytest.raises(ValueError, match="attempt"):
        ExponentialDelay(min_delay=MS, max_delay=MS).for_attempt(0)


def test_fixed_delay_is_the_same_for_every_attempt():
    backoff = FixedDelay(timedelta(milliseconds=250))
    assert {backoff.for_attempt(n) for n in range(1, 20)} == {0.25}
    assert isinstance(backoff, ExponentialDelay)
