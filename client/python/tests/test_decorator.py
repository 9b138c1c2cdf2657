"""CircuitProtectorPolicy against a real circuitd: every behaviour the library documents,
and the documented differences."""

import asyncio
import threading
from datetime import timedelta
from fractions import Fraction

import pytest

from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus, ProtectedCallError
from resilient_circuit_client import circuit_breaker, exceptions

CLOSED, OPEN, HALF_OPEN = CircuitStatus.CLOSED, CircuitStatus.OPEN, CircuitStatus.HALF_OPEN


class Boom(Exception):
    pass


def scripted(policy):
    """A protected function that fails when given "F" and succeeds when given "S"."""

    @policy
    def op(code):
        if code == "F":
            raise Boom
        return code

    def run(script):
        for code in script.replace(" ", ""):
            try:
                op(code)
            except Boom:
                pass

    return op, run


def changes_of(policy_kwargs, address, key):
    seen = []
    policy = CircuitProtectorPolicy(
        resource_key=key, address=address, on_status_change=lambda p, old, new: seen.append((old, new)), **policy_kwargs
    )
    return policy, seen


def test_a_protected_function_returns_and_raises_as_before(address, key):
    op, _ = scripted(CircuitProtectorPolicy(resource_key=key, address=address, failure_limit=(9, 9)))
    assert op("S") == "S"
    with pytest.raises(Boom):
        op("F")
    assert op.__name__ == "op"


def test_the_default_policy_opens_on_the_first_failure(address, key):
    policy, seen = changes_of({"cooldown": timedelta(seconds=30)}, address, key)
    op, run = scripted(policy)
    run("SSS F")
    assert seen == [(CLOSED, OPEN)], "fired before the failing call returned"
    with pytest.raises(ProtectedCallError) as raised:
        op("S")
    e = raised.value
    assert (e.status, e.reason, e.fallback) == (OPEN, "OPEN", False)
    assert timedelta(seconds=25) < e.retry_after <= timedelta(seconds=30)
    assert isinstance(e, exceptions.ProtectionException)
    assert policy.status is OPEN


def test_two_failures_in_the_last_five_trip_two_fifths(address, key):
    policy, seen = changes_of({"failure_limit": Fraction(2, 5), "cooldown": timedelta(seconds=30)}, address, key)
    _, run = scripted(policy)
    run("SSSSS SFSSSSF")
    assert policy.status is CLOSED and seen == []
    run("F")
    assert policy.status is OPEN and seen == [(CLOSED, OPEN)]


def test_the_same_calls_leave_three_fifths_closed_with_the_log_to_show(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, failure_limit=Fraction(3, 5))
    _, run = scripted(policy)
    run("SSSSS SFSSSSFS")
    assert policy.status is CLOSED
    log = policy.execution_log
    assert list(log) == [True, True, True, False, True]
    assert (log.size, len(log), log.is_full) == (5, 5, True)
    assert (log.success_count, log.failure_count) == (4, 1)
    assert (log.success_rate, log.failure_rate) == (Fraction(4, 5), Fraction(1, 5))


def test_a_reduced_fraction_gets_the_librarys_window_and_a_pair_keeps_its_own(address, key):
    reduced = CircuitProtectorPolicy(resource_key=key + "-r", address=address, failure_limit=Fraction(5, 10))
    assert reduced.execution_log.size == 2
    kept = CircuitProtectorPolicy(resource_key=key + "-k", address=address, failure_limit=(5, 10))
    _, run = scripted(kept)
    run("FFFFFFFFF")
    assert kept.status is CLOSED and kept.execution_log.size == 10
    run("F")
    assert kept.status is OPEN


def test_three_fifths_successes_close_half_open(address, key):
    policy, seen = changes_of({"failure_limit": Fraction(1, 5), "success_limit": Fraction(3, 5)}, address, key)
    _, run = scripted(policy)
    run("SSSS F")
    run("FSFSS")  # cooldown 0: each call is a HALF_OPEN trial
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert policy.status is CLOSED


def test_without_a_success_limit_two_fifths_failures_reopen_half_open(address, key):
    policy, seen = changes_of({"failure_limit": Fraction(2, 5), "cooldown": timedelta(seconds=30)}, address, key)
    _, run = scripted(policy)
    run("SSSFF")
    assert policy.status is OPEN
    policy.status = HALF_OPEN
    run("FSFSS")
    assert policy.status is OPEN
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


def test_a_success_limit_of_one_is_unset_as_in_the_library(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, success_limit=Fraction(1, 1))
    daemon_policy = policy._rt.get().policy
    assert not daemon_policy.HasField("success_limit")
    other = CircuitProtectorPolicy(resource_key=key + "-s", address=address, success_limit=Fraction(2, 3))
    assert other._rt.get().policy.success_limit.denominator == 3


def test_open_rejects_until_the_cooldown_then_a_trial_closes_it(address, key):
    policy, seen = changes_of({"cooldown": timedelta(milliseconds=300)}, address, key)
    op, run = scripted(policy)
    run("F")
    with pytest.raises(ProtectedCallError) as raised:
        op("S")
    # Waiting out the cooldown the daemon announced, not synchronising.
    threading.Event().wait(raised.value.retry_after.total_seconds() + 0.02)
    assert policy.status is OPEN, "lazy: the next call is the trial"
    assert op("S") == "S"
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_should_handle_decides_which_exceptions_count_as_failures(address, key):
    policy = CircuitProtectorPolicy(
        resource_key=key, address=address, should_handle=lambda e: isinstance(e, ConnectionError)
    )

    @policy
    def op(error):
        raise error

    with pytest.raises(KeyError):
        op(KeyError())
    assert policy.status is CLOSED and list(policy.execution_log) == [True], "declined: a success"
    with pytest.raises(ConnectionError):
        op(ConnectionError())
    assert policy.status is OPEN


def test_assigning_status_sets_it_on_the_daemon_and_fires_each_time(address, key):
    policy, seen = changes_of({"cooldown": timedelta(seconds=30)}, address, key)
    op, _ = scripted(policy)
    policy.status = OPEN
    with pytest.raises(ProtectedCallError):
        op("S")
    policy.status = OPEN
    policy.status = CLOSED
    assert op("S") == "S"
    assert seen == [(CLOSED, OPEN), (OPEN, OPEN), (OPEN, CLOSED)]


def test_protectors_without_a_resource_key_get_unique_names(address):
    a = CircuitProtectorPolicy(address=address)
    b = CircuitProtectorPolicy(address=address)
    assert a.resource_key != b.resource_key
    assert a.resource_key.startswith("anonymous-") and str(id(a)) not in a.resource_key
    op, run = scripted(a)
    run("F")
    assert a.status is OPEN and b.status is CLOSED


def test_async_functions_are_awaited_before_the_outcome_counts(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, failure_limit=(2, 2))

    @policy
    async def op(fail):
        await asyncio.sleep(0)
        if fail:
            raise Boom
        return "done"

    async def main():
        assert await op(False) == "done"
        with pytest.raises(Boom):
            await op(True)

    asyncio.run(main())
    # The library would have counted two successes (the coroutine objects).
    assert list(policy.execution_log) == [True, False]


def test_an_inner_rejection_is_not_counted_by_the_outer_protector(address, key):
    inner = CircuitProtectorPolicy(resource_key=key + "-in", address=address, cooldown=timedelta(seconds=30))
    outer = CircuitProtectorPolicy(resource_key=key + "-out", address=address, failure_limit=(3, 3))
    inner.status = OPEN

    @outer
    @inner
    def op():
        return "never"

    with pytest.raises(ProtectedCallError):
        op()
    assert len(outer.execution_log) == 0 and outer.status is CLOSED


def test_a_callback_exception_does_not_break_the_call(address, key):
    def bad(policy, old, new):
        raise RuntimeError("callback")

    policy = CircuitProtectorPolicy(resource_key=key, address=address, on_status_change=bad)
    _, run = scripted(policy)
    run("F")
    assert policy.status is OPEN


def test_execution_log_of_an_empty_window_has_no_rate_as_in_the_library(address, key):
    log = CircuitProtectorPolicy(resource_key=key, address=address).execution_log
    assert (len(log), log.is_full, log.size) == (0, False, 1)
    with pytest.raises(ZeroDivisionError):
        log.failure_rate


def test_invalid_settings_are_refused_at_construction():
    with pytest.raises(ValueError, match="failure_limit"):
        CircuitProtectorPolicy(failure_limit=Fraction(0))
    with pytest.raises(ValueError, match="fallback"):
        CircuitProtectorPolicy(fallback="maybe")
    assert circuit_breaker.CircuitProtectorPolicy is CircuitProtectorPolicy
