"""The LOCAL fallback's status machine: the library behaviours the daemon's machine keeps
(proto/breaker/tests/library.rs), plus the daemon's own rules it ports."""

from resilient_circuit_client._machine import (
    CLOSED,
    FAILURE,
    HALF_OPEN,
    IGNORED,
    OPEN,
    SUCCESS,
    Limit,
    Machine,
    Permit,
    Rejected,
)

CODES = {"S": SUCCESS, "F": FAILURE, "I": IGNORED}


def calls(m: Machine, script: str, now: float = 0.0):
    """Acquires and reports each outcome of `script` (spaces ignored); the transitions."""
    out = []
    for code in script.replace(" ", ""):
        permit, changes = m.acquire(now)
        assert isinstance(permit, Permit), permit
        out += changes
        accepted, changes = m.report(permit, CODES[code], now)
        assert accepted
        out += changes
    return out


def trip(m: Machine, now: float = 0.0):
    while m.status == CLOSED:
        calls(m, "F", now)


def half_open_then(m: Machine, script: str):
    trip(m)
    permits = []
    for _ in script:
        permit, _ = m.acquire(1.0)
        assert isinstance(permit, Permit) and permit.id != 0
        permits.append(permit)
    out = []
    for permit, code in zip(permits, script):
        out += m.report(permit, CODES[code], 2.0)[1]
    return out


def test_two_failures_in_the_last_five_trip_two_fifths():
    m = Machine(failure_limit=Limit(2, 5))
    assert calls(m, "SSSSS") == []
    assert calls(m, "SFSSSSF") == []
    assert m.status == CLOSED
    tripped = calls(m, "F")
    assert [(t.after, t.reason) for t in tripped] == [(OPEN, "FAILURE_LIMIT")]


def test_the_same_calls_leave_three_fifths_closed():
    m = Machine(failure_limit=Limit(3, 5))
    assert calls(m, "SSSSS SFSSSSFS") == []
    assert m.status == CLOSED
    assert list(m.window) == [False, False, False, True, False]


def test_three_fifths_successes_close_half_open():
    m = Machine(failure_limit=Limit(2, 10), success_limit=Limit(3, 5))
    decided = half_open_then(m, "FSFSS")
    assert [(t.after, t.reason) for t in decided] == [(CLOSED, "TRIALS_SUCCEEDED")]


def test_without_a_success_limit_two_fifths_failures_reopen_half_open():
    m = Machine(failure_limit=Limit(2, 5))
    decided = half_open_then(m, "FSFSS")
    assert [(t.after, t.reason) for t in decided] == [(OPEN, "TRIALS_FAILED")]


def test_the_default_policy_opens_on_the_first_failure_and_one_trial_closes_it():
    m = Machine()
    tripped = calls(m, "F")
    assert len(tripped) == 1 and tripped[0].open_until == 0.0
    permit, changes = m.acquire(0.0)
    assert permit.id != 0 and m.status == HALF_OPEN
    assert [t.reason for t in changes] == ["COOLDOWN_ELAPSED"]
    _, closed = m.report(permit, SUCCESS, 0.0)
    assert [(t.after, t.reason) for t in closed] == [(CLOSED, "TRIALS_SUCCEEDED")]
    assert m.acquire(0.0)[0].id == 0


def test_an_open_protector_with_a_cooldown_rejects_and_stays_open():
    m = Machine(cooldown=10.0)
    trip(m)
    for now in (0.0, 0.001, 5.0, 9.999):
        decision, _ = m.acquire(now)
        assert isinstance(decision, Rejected) and decision.reason == "OPEN"
        assert abs(decision.retry_after - (10.0 - now)) < 1e-9
        assert (m.status, m.generation) == (OPEN, 2)


def test_a_window_of_ten_needs_ten_outcomes_before_it_can_trip():
    m = Machine(failure_limit=Limit(5, 10))
    assert calls(m, "FFFFFFFFF") == []
    assert m.status == CLOSED
    assert len(calls(m, "F")) == 1 and m.status == OPEN


def test_a_report_from_another_generation_is_stale():
    m = Machine()
    old, _ = m.acquire(0.0)
    trip(m)
    assert m.report(old, SUCCESS, 0.0) == (False, [])


def test_trials_are_limited_to_the_half_open_window_and_expire_as_failures():
    m = Machine(failure_limit=Limit(1, 2), permit_ttl=1.0)
    trip(m)
    first, _ = m.acquire(0.0)
    second, _ = m.acquire(0.0)
    refused, _ = m.acquire(0.5)
    assert isinstance(refused, Rejected) and refused.reason == "TRIALS_EXHAUSTED"
    assert abs(refused.retry_after - 0.5) < 1e-9
    assert m.report(second, SUCCESS, 0.5)[0]
    # `first` expires at 1.0 and counts as a failure: 1 of 2 reaches 1/2, so OPEN again.
    decision, changes = m.acquire(1.5)
    assert [(t.after, t.reason) for t in changes][0] == (OPEN, "PERMIT_EXPIRED")
    assert m.report(first, SUCCESS, 1.5) == (False, [])


def test_unlimited_trials_with_zero_permits():
    m = Machine(failure_limit=Limit(1, 2), trial_permits=0)
    trip(m)
    assert all(isinstance(m.acquire(0.0)[0], Permit) for _ in range(20))


def test_setting_the_current_status_re_enters_it():
    m = Machine()
    changes = m.set_status(CLOSED, 0.0)
    assert [(t.before, t.after, t.reason, t.generation) for t in changes] == [(CLOSED, CLOSED, "MANUAL", 2)]


def test_ignored_outcomes_are_recorded_nowhere():
    m = Machine(failure_limit=Limit(1, 2))
    assert calls(m, "IIIF") == []
    assert list(m.window) == [True]


def test_consecutive_failures_trip_before_the_window_is_full():
    m = Machine(failure_limit=Limit(10, 10), consecutive_limit=3)
    # A SUCCESS ends a streak; IGNORED does not.
    assert calls(m, "FF S FF I") == []
    tripped = calls(m, "F")
    assert [(t.after, t.reason) for t in tripped] == [(OPEN, "CONSECUTIVE_FAILURES")]


def test_when_one_failure_meets_both_closed_rules_the_older_rules_reason_wins():
    # A 2/2 window filled and a streak of two at the same FAILURE: FAILURE_LIMIT, as the
    # daemon reports it.
    m = Machine(failure_limit=Limit(2, 2), consecutive_limit=2)
    assert [(t.after, t.reason) for t in calls(m, "FF")] == [(OPEN, "FAILURE_LIMIT")]


def test_a_streak_starts_again_when_the_protector_closes():
    m = Machine(failure_limit=Limit(10, 10), consecutive_limit=2)
    calls(m, "F")
    m.set_status(CLOSED, 0.0)
    assert calls(m, "F") == [] and m.status == CLOSED


def test_the_wire_policy_carries_the_streak_limit_to_the_machine():
    from resilient_circuit_client._wire import machine_settings
    from resilient_circuit_client._generated import types_pb2

    settings = machine_settings(types_pb2.Policy(consecutive_failures=4))
    assert settings["consecutive_limit"] == 4
    assert Machine(**settings).consecutive_limit == 4
