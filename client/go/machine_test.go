package circuit

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// The local fallback's machine, driven by an injected clock.
func TestLocalMachine(t *testing.T) {
	t0 := time.Unix(1_000, 0)
	policy := &pb.Policy{
		Cooldown: durationpb.New(10 * time.Second), FailureLimit: &pb.Fraction{Numerator: 2, Denominator: 3},
		PermitTtl: durationpb.New(time.Second), TrialPermits: proto.Uint32(1),
	}
	m := newMachine(policy)
	report := func(gen, id uint64, o pb.Outcome, at time.Time) []localTransition {
		ok, changes := m.report(gen, id, o, at)
		if !ok {
			t.Fatalf("report of %d/%d refused", gen, id)
		}
		return changes
	}
	// CLOSED: the window of 3 must be full before the rate is judged.
	report(1, 0, pb.Outcome_OUTCOME_FAILURE, t0)
	report(1, 0, pb.Outcome_OUTCOME_FAILURE, t0)
	if changes := report(1, 0, pb.Outcome_OUTCOME_SUCCESS, t0); len(changes) != 0 || m.status != pb.Status_STATUS_CLOSED {
		t.Fatalf("a success tripped: %+v", changes)
	}
	changes := report(1, 0, pb.Outcome_OUTCOME_FAILURE, t0)
	if len(changes) != 1 || changes[0].to != pb.Status_STATUS_OPEN || changes[0].generation != 2 {
		t.Fatalf("want a trip into generation 2, got %+v", changes)
	}
	// OPEN rejects until the cooldown ends, with the time left.
	if _, _, reason, wait, _ := m.acquire(t0.Add(4 * time.Second)); reason != pb.DecisionReason_DECISION_REASON_OPEN || wait != 6*time.Second {
		t.Fatalf("OPEN: reason %s, wait %s", reason, wait)
	}
	// A report of the ended generation is stale.
	if ok, _ := m.report(1, 0, pb.Outcome_OUTCOME_SUCCESS, t0); ok {
		t.Fatal("a stale report was accepted")
	}
	// The first acquire after the cooldown is the trial; one trial at a time.
	t1 := t0.Add(10 * time.Second)
	gen, id, reason, _, changes := m.acquire(t1)
	if reason != 0 || id == 0 || gen != 3 || len(changes) != 1 || changes[0].to != pb.Status_STATUS_HALF_OPEN {
		t.Fatalf("want a trial in generation 3, got gen %d id %d reason %s %+v", gen, id, reason, changes)
	}
	if _, _, reason, wait, _ := m.acquire(t1); reason != pb.DecisionReason_DECISION_REASON_TRIALS_EXHAUSTED || wait != time.Second {
		t.Fatalf("second trial: reason %s wait %s", reason, wait)
	}
	// An unreported trial expires as a FAILURE at its own instant: the window of 3
	// is not full, so no transition yet, and the slot is free again.
	gen, id2, reason, _, changes := m.acquire(t1.Add(2 * time.Second))
	if reason != 0 || id2 == id || len(changes) != 0 {
		t.Fatalf("after the expiry: id %d reason %s %+v", id2, reason, changes)
	}
	report(gen, id2, pb.Outcome_OUTCOME_SUCCESS, t1.Add(2*time.Second))
	_, id3, _, _, _ := m.acquire(t1.Add(2 * time.Second))
	changes = report(gen, id3, pb.Outcome_OUTCOME_SUCCESS, t1.Add(2*time.Second))
	if len(changes) != 1 || changes[0].to != pb.Status_STATUS_CLOSED ||
		changes[0].reason != pb.TransitionReason_TRANSITION_REASON_TRIALS_SUCCEEDED {
		t.Fatalf("want HALF_OPEN -> CLOSED, got %+v", changes)
	}
}

func TestLocalMachineClosedTripsAndTheirReasons(t *testing.T) {
	// Two FAILUREs in a row under consecutive_failures 2. With a 10/10 window the streak
	// trips before the window is full; with 2/2 the same FAILURE also fills the window and
	// the older rule's reason wins, as the daemon's machine reports it.
	cases := []struct {
		window uint32
		want   pb.TransitionReason
	}{
		{10, pb.TransitionReason_TRANSITION_REASON_CONSECUTIVE_FAILURES},
		{2, pb.TransitionReason_TRANSITION_REASON_FAILURE_LIMIT},
	}
	for _, c := range cases {
		m := newMachine(&pb.Policy{FailureLimit: &pb.Fraction{Numerator: c.window, Denominator: c.window}, ConsecutiveFailures: 2})
		now := time.Unix(1_000, 0)
		m.report(1, 0, pb.Outcome_OUTCOME_FAILURE, now)
		if _, changes := m.report(1, 0, pb.Outcome_OUTCOME_FAILURE, now); len(changes) != 1 || changes[0].reason != c.want {
			t.Errorf("failure_limit %d/%d: want one %v trip, got %+v", c.window, c.window, c.want, changes)
		}
	}
}
