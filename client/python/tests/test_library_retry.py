"""The library's retry contract, as its users' own tests exercise it: they patch the retry
module's `sleep` (and `asyncio_sleep`) and assert the delays it recorded; the backoff's
numbers are the library's. Nothing here sleeps."""

import asyncio
import random
from datetime import timedelta
from unittest.mock import Mock

import pytest

from resilient_circuit_client import ExponentialDelay, FixedDelay, RetryWithBackoffPolicy
from resilient_circuit_client import retry as retry_module
from resilient_circuit_client.exceptions import RetryLimitReached


@pytest.fixture
def recorded(monkeypatch):
    """The waits of every retry, recorded through the module's `sleep`, as users patch it."""
    waits = []
    monkeypatch.setattr(retry_module, "sleep", waits.append)
    return waits


def test_a_fixed_delay_retry_that_fails_twice_records_one_second_twice(recorded):
    policy = RetryWithBackoffPolicy(backoff=FixedDelay(timedelta(seconds=1)))
    method = Mock(side_effect=[RuntimeError, RuntimeError, "test"])
    assert policy(method)() == "test"
    assert recorded == [1.0, 1.0]
    assert method.call_count == 3


def test_the_patch_is_seen_by_a_function_decorated_before_it(monkeypatch):
    # Decorated at import time in user code; the test patches afterwards.
    decorated = RetryWithBackoffPolicy(backoff=FixedDelay(timedelta(seconds=2)))(Mock(side_effect=[KeyError, 1]))
    waits = []
    monkeypatch.setattr(retry_module, "sleep", waits.append)
    assert decorated() == 1
    assert waits == [2.0]


def test_running_out_of_attempts_waits_after_the_last_one_too(recorded):
    policy = RetryWithBackoffPolicy(max_retries=2, backoff=FixedDelay(timedelta(seconds=1)))
    method = Mock(side_effect=RuntimeError)
    with pytest.raises(RetryLimitReached) as raised:
        policy(method)()
    assert method.call_count == 3
    assert recorded == [1.0, 1.0, 1.0], "the library waits once more before giving up"
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_exponential_waits_are_the_librarys(recorded):
    backoff = ExponentialDelay(min_delay=timedelta(seconds=1), max_delay=timedelta(seconds=5), factor=2)
    policy = RetryWithBackoffPolicy(max_retries=4, backoff=backoff)
    with pytest.raises(RetryLimitReached):
        policy(Mock(side_effect=ConnectionError))()
    assert recorded == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_without_a_backoff_nothing_is_waited(recorded):
    method = Mock(side_effect=[RuntimeError, RuntimeError, "test"])
    assert RetryWithBackoffPolicy()(method)() == "test"
    assert recorded == []


def test_a_declined_exception_is_raised_without_a_wait(recorded):
    policy = RetryWithBackoffPolicy(
        backoff=FixedDelay(timedelta(seconds=1)), should_handle=lambda e: isinstance(e, RuntimeError)
    )
    method = Mock(side_effect=ValueError)
    with pytest.raises(ValueError):
        policy(method)()
    assert method.call_count == 1 and recorded == []


def test_async_waits_go_through_the_modules_asyncio_sleep(monkeypatch, recorded):
    waits = []

    async def fake(seconds):
        waits.append(seconds)

    monkeypatch.setattr(retry_module, "asyncio_sleep", fake)
    calls = []

    @RetryWithBackoffPolicy(backoff=FixedDelay(timedelta(seconds=1)))
    async def op():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError
        return "test"

    assert asyncio.run(op()) == "test"
    assert waits == [1.0, 1.0] and recorded == []


def test_a_policys_own_sleep_wins_over_the_modules(recorded):
    own = []
    policy = RetryWithBackoffPolicy(backoff=FixedDelay(timedelta(seconds=1)), sleep=own.append)
    assert policy(Mock(side_effect=[RuntimeError, 7]))() == 7
    assert own == [1.0] and recorded == []


def test_jitter_never_takes_a_wait_below_min_delay_nor_above_max_delay():
    backoff = ExponentialDelay(
        min_delay=timedelta(seconds=1), max_delay=timedelta(seconds=4), factor=2, jitter=0.5, rng=random.Random(3)
    )
    firsts = [backoff.for_attempt(1) for _ in range(300)]
    assert min(firsts) == 1.0 and max(firsts) > 1.3, "clamped at min_delay, spread above it"
    assert all(1.0 <= backoff.for_attempt(n) <= 4.0 for n in range(1, 8) for _ in range(50))


def test_the_backoff_refuses_what_the_library_refuses():
    second = timedelta(seconds=1)
    with pytest.raises(ValueError, match="factor"):
        ExponentialDelay(min_delay=second, max_delay=second, factor=0)
    with pytest.raises(ValueError, match="max_delay"):
        ExponentialDelay(min_delay=2 * second, max_delay=second)
    assert ExponentialDelay(min_delay=second, max_delay=second * 10).factor == 2
