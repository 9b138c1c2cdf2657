"""The reconnect backoff and the exactly-once notifier, in isolation."""

from resilient_circuit_client._link import ASK, PROBE, SKIP, Link, backoff_delay
from resilient_circuit_client._notifier import Notifier


def test_reconnect_backoff_is_capped_exponential_with_full_jitter():
    for attempt, ceiling in [(0, 0.05), (1, 0.1), (3, 0.4), (7, 5.0), (40, 5.0)]:
        draws = [backoff_delay(0.05, 5.0, attempt) for _ in range(400)]
        assert all(0 <= d <= ceiling for d in draws)
        assert min(draws) < ceiling * 0.1 and max(draws) > ceiling * 0.9, "full jitter spans [0, ceiling]"


def test_a_down_link_skips_until_its_backoff_ends_then_one_caller_probes():
    link = Link(initial=0.0, cap=0.0)
    assert link.attempt() == ASK
    link.failed("refused")
    assert link.down and link.downs == 1
    assert link.attempt() == PROBE, "a zero backoff ends at once"
    link.up()
    assert link.attempt() == ASK and not link.down

    slow = Link(initial=60.0, cap=60.0)
    slow.failed("refused")
    # Within the backoff (drawn in [0, 60 s]) callers answer from the fallback; a draw of
    # exactly 0 would let a probe through, which is the rule too.
    assert slow.attempt() in (SKIP, PROBE)
    assert slow.first_fallback() and not slow.first_fallback()


def test_each_generation_fires_once_whichever_source_reports_it_first():
    fired = []
    n = Notifier("p", lambda old, new: fired.append((old, new)))
    n.snapshot("CLOSED", 1, 10, False)
    n.transition("CLOSED", "OPEN", 2, 11)  # from a report's answer
    n.transition("CLOSED", "OPEN", 2, 11)  # the same, from the Watch
    n.transition("HALF_OPEN", "CLOSED", 4, 13)  # overtakes generation 3
    n.transition("OPEN", "HALF_OPEN", 3, 12)  # late, still fired once
    n.transition("OPEN", "HALF_OPEN", 3, 12)
    assert fired == [("CLOSED", "OPEN"), ("HALF_OPEN", "CLOSED"), ("OPEN", "HALF_OPEN")]


def test_a_protector_created_again_starts_a_new_life():
    fired = []
    n = Notifier("p", lambda old, new: fired.append((old, new)))
    n.snapshot("CLOSED", 1, 1, False)
    n.transition("CLOSED", "OPEN", 2, 2)
    # The daemon restarted without its state: generation 1, CLOSED, smaller revisions.
    n.new_history()
    n.snapshot("CLOSED", 1, 1, True)
    n.transition("CLOSED", "OPEN", 2, 3)
    assert fired == [("CLOSED", "OPEN"), ("OPEN", "CLOSED"), ("CLOSED", "OPEN")]


def test_an_older_snapshot_is_ignored():
    fired = []
    n = Notifier("p", lambda old, new: fired.append((old, new)))
    n.transition("CLOSED", "OPEN", 2, 20)
    n.snapshot("CLOSED", 1, 5, False)
    assert n.status == "OPEN" and fired == [("CLOSED", "OPEN")]


def test_a_status_entered_right_after_the_last_known_generation_fires_in_order():
    fired = []
    n = Notifier("p", lambda old, new: fired.append((old, new)))
    n.snapshot("CLOSED", 1, 1, False)
    n.transition("CLOSED", "OPEN", 2, 2)
    n.entered(4, "HALF_OPEN", 4)  # generation 3 unknown: nothing can be said
    n.entered(3, "HALF_OPEN", 3)
    n.transition("OPEN", "HALF_OPEN", 3, 3)  # the Watch, later: already fired
    assert fired == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN")]
