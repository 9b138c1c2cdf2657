"""Issue 18's policy rules through the Python client: every rule's argument reaches the
daemon, bad values fail at construction naming the argument, and call durations reach
the daemon on both paths (a Report of a daemon permit, a cached batch listing the slow
calls), so its slow-call rule trips on them."""

import time
from datetime import timedelta
from fractions import Fraction

import pytest

from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus, ProtectedCallError
from resilient_circuit_client._generated import protector_pb2, types_pb2


def test_every_rule_reaches_the_daemon(address, key):
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=address,
        cooldown=timedelta(seconds=10),
        failure_limit=(3, 10),
        window_duration=timedelta(minutes=1),
        minimum_calls=20,
        consecutive_failures=5,
        slow_call_duration=timedelta(milliseconds=250),
        slow_call_limit=Fraction(1, 2),
        cooldown_multiplier=2.5,
        max_cooldown=timedelta(minutes=10),
        shadow=True,
        history_size=1000,
    )
    p = policy._rt.get().policy
    assert p.window_duration.ToTimedelta() == timedelta(minutes=1)
    assert p.minimum_calls == 20
    assert p.consecutive_failures == 5
    assert p.slow_call_duration.ToTimedelta() == timedelta(milliseconds=250)
    assert (p.slow_call_limit.numerator, p.slow_call_limit.denominator) == (1, 2)
    assert p.cooldown_multiplier == 2.5
    assert p.max_cooldown.ToTimedelta() == timedelta(minutes=10)
    assert p.shadow
    assert p.history_size == 1000
    policy.close()


@pytest.mark.parametrize(
    "rule, field",
    [
        ({"window_duration": timedelta(milliseconds=10)}, "window_duration"),
        ({"minimum_calls": 5}, "minimum_calls"),
        ({"consecutive_failures": 10_001}, "consecutive_failures"),
        ({"slow_call_duration": timedelta(seconds=1)}, "slow_call_duration"),
        ({"slow_call_duration": timedelta(seconds=1), "slow_call_limit": (3, 2)}, "slow_call_limit"),
        ({"cooldown_multiplier": 0.5}, "cooldown_multiplier"),
        ({"max_cooldown": timedelta(seconds=1)}, "max_cooldown"),
        ({"history_size": -1}, "history_size"),
    ],
)
def test_a_bad_rule_fails_at_construction_naming_it(rule, field):
    with pytest.raises(ValueError, match=field):
        CircuitProtectorPolicy(resource_key="never-made", cooldown=timedelta(seconds=10), **rule)


def slow_policy(address, key, cached):
    # Trips on 2 slow calls (50 ms or more) of the last 2; the failure rule never trips.
    return CircuitProtectorPolicy(
        resource_key=key,
        address=address,
        cooldown=timedelta(minutes=1),
        failure_limit=(2, 2),
        slow_call_duration=timedelta(milliseconds=50),
        slow_call_limit=(2, 2),
        cached=cached,
    )


def slow_call():
    # At least the threshold, however loaded the machine (nothing asserts how long).
    time.sleep(0.06)


def test_an_uncached_call_reports_its_duration_and_slow_calls_trip(address, key):
    policy = slow_policy(address, key, cached=False)
    op = policy(slow_call)
    op()
    op()
    assert policy.status == CircuitStatus.OPEN
    with pytest.raises(ProtectedCallError):
        op()
    policy.close()


def test_cached_slow_successes_reach_the_daemon_with_their_durations(address, key):
    policy = slow_policy(address, key, cached=True)
    fast = policy(lambda: None)
    fast()
    assert policy._rt.synced.wait(5), "the watch never synced"
    assert policy._rt.slow_call == pytest.approx(0.05)
    cached = policy.decisions["cache"]
    op = policy(slow_call)
    op()
    op()
    assert policy.decisions["cache"] == cached + 2, "the slow calls were decided locally"
    # The batched slow calls trip the daemon's slow-call rule.
    assert policy.status == CircuitStatus.OPEN
    assert policy._rt.get().window.slow_calls == 2
    policy.close()


def test_a_batch_lists_slow_successes_and_the_last_outcome_with_durations():
    policy = CircuitProtectorPolicy(resource_key="batch-shape", failure_limit=(2, 2))
    rt = policy._rt
    rt.slow_call = 0.05
    batch = rt._batch(7, 3, [0.2, 0.3], ("FAILURE", 0.01))
    assert (batch.generation, batch.successes) == (7, 3)
    assert list(batch.outcomes) == [types_pb2.OUTCOME_SUCCESS, types_pb2.OUTCOME_SUCCESS, types_pb2.OUTCOME_FAILURE]
    assert [d.ToTimedelta() for d in batch.durations] == [
        timedelta(milliseconds=200),
        timedelta(milliseconds=300),
        timedelta(milliseconds=10),
    ]
    # Without a slow-call rule, nothing is listed but the outcome itself.
    rt.slow_call = 0.0
    batch = rt._batch(7, 3, [], ("FAILURE", 0.01))
    assert list(batch.outcomes) == [types_pb2.OUTCOME_FAILURE] and not batch.durations
    assert isinstance(batch, protector_pb2.OutcomeBatch)
