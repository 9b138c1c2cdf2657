package circuit

// The in-process status machine of the LOCAL fallback: proto/SEMANTICS.md section 2,
// ported as the Python client's _machine.py ports it.
//
// Design note. The daemon's rules, less what one process has no use for (overrides,
// counters, revisions): CLOSED admits and trips when a FAILURE is recorded into a full
// window whose failure rate reaches failure_limit (or, with consecutive_failures, after
// that many FAILUREs in a row); OPEN rejects until openUntil, and the first acquire at or
// after it enters HALF_OPEN as a trial; HALF_OPEN admits up to trial_permits trials into a
// fresh window of success_limit's denominator (else failure_limit's) and decides once it
// is full. A permit carries its generation, so a report from another generation is
// stale. An unreported trial permit counts as a FAILURE at its own expiry. Time is passed
// in, so tests drive it. Not safe for concurrent use: the caller holds a lock.

import (
	"time"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

type fraction struct{ n, d uint32 }

func (f fraction) reachedBy(count, length int) bool {
	return length > 0 && uint64(count)*uint64(f.d) >= uint64(f.n)*uint64(length)
}

type localTransition struct {
	from, to   pb.Status
	reason     pb.TransitionReason
	generation uint64
}

type machine struct {
	cooldown     time.Duration
	failureLimit fraction
	successLimit *fraction
	trialPermits *uint32
	permitTTL    time.Duration
	consecutive  uint32

	status              pb.Status
	generation          uint64
	openUntil           time.Time
	consecutiveFailures uint32
	window              []bool // true = FAILURE, oldest first
	windowSize          int
	trials              map[uint64]time.Time
	nextID              uint64
}

func newMachine(p *pb.Policy) *machine {
	m := &machine{
		failureLimit: fraction{1, 1}, permitTTL: 30 * time.Second,
		status: pb.Status_STATUS_CLOSED, generation: 1, trials: map[uint64]time.Time{}, nextID: 1,
	}
	if p.Cooldown != nil {
		m.cooldown = p.Cooldown.AsDuration()
	}
	if f := p.FailureLimit; f != nil {
		m.failureLimit = fraction{f.Numerator, f.Denominator}
	}
	if f := p.SuccessLimit; f != nil {
		m.successLimit = &fraction{f.Numerator, f.Denominator}
	}
	if p.TrialPermits != nil {
		n := *p.TrialPermits
		m.trialPermits = &n
	}
	if p.PermitTtl != nil {
		m.permitTTL = p.PermitTtl.AsDuration()
	}
	m.consecutive = p.ConsecutiveFailures
	m.windowSize = int(m.failureLimit.d)
	return m
}

func (m *machine) halfOpenWindow() int {
	if m.successLimit != nil {
		return int(m.successLimit.d)
	}
	return int(m.failureLimit.d)
}

// acquire gives a permit (generation, trial id or 0) or the rejection's reason and wait,
// plus the transitions it caused.
func (m *machine) acquire(now time.Time) (gen, id uint64, rejected pb.DecisionReason, retryAfter time.Duration, changes []localTransition) {
	changes = m.expire(now)
	switch m.status {
	case pb.Status_STATUS_CLOSED:
		return m.generation, 0, 0, 0, changes
	case pb.Status_STATUS_OPEN:
		if now.Before(m.openUntil) {
			return 0, 0, pb.DecisionReason_DECISION_REASON_OPEN, m.openUntil.Sub(now), changes
		}
		changes = append(changes, m.enter(pb.Status_STATUS_HALF_OPEN, pb.TransitionReason_TRANSITION_REASON_COOLDOWN_ELAPSED, now))
	}
	limit := m.halfOpenWindow()
	if m.trialPermits != nil {
		limit = int(*m.trialPermits)
	}
	if limit > 0 && len(m.trials) >= limit {
		var earliest time.Time
		for _, at := range m.trials {
			if earliest.IsZero() || at.Before(earliest) {
				earliest = at
			}
		}
		return 0, 0, pb.DecisionReason_DECISION_REASON_TRIALS_EXHAUSTED, max(0, earliest.Sub(now)), changes
	}
	id = m.nextID
	m.nextID++
	m.trials[id] = now.Add(m.permitTTL)
	return m.generation, id, 0, 0, changes
}

// report records a permit's outcome: whether it was accepted, and the transitions.
func (m *machine) report(gen, id uint64, outcome pb.Outcome, now time.Time) (bool, []localTransition) {
	changes := m.expire(now)
	if gen != m.generation {
		return false, changes
	}
	if id == 0 {
		if m.status != pb.Status_STATUS_CLOSED {
			return false, changes
		}
	} else {
		if _, ok := m.trials[id]; !ok {
			return false, changes
		}
		delete(m.trials, id)
	}
	m.record(outcome)
	if t, ok := m.evaluate(outcome, now, false); ok {
		changes = append(changes, t)
	}
	return true, changes
}

func (m *machine) expire(now time.Time) []localTransition {
	var changes []localTransition
	for m.status == pb.Status_STATUS_HALF_OPEN && len(m.trials) > 0 {
		var first uint64
		var at time.Time
		for id, exp := range m.trials {
			if at.IsZero() || exp.Before(at) {
				first, at = id, exp
			}
		}
		if at.After(now) {
			break
		}
		delete(m.trials, first)
		m.record(pb.Outcome_OUTCOME_FAILURE)
		if t, ok := m.evaluate(pb.Outcome_OUTCOME_FAILURE, at, true); ok {
			changes = append(changes, t)
		}
	}
	return changes
}

func (m *machine) record(outcome pb.Outcome) {
	switch outcome {
	case pb.Outcome_OUTCOME_SUCCESS:
		m.consecutiveFailures = 0
	case pb.Outcome_OUTCOME_FAILURE:
		m.consecutiveFailures++
	default:
		return
	}
	m.window = append(m.window, outcome == pb.Outcome_OUTCOME_FAILURE)
	if len(m.window) > m.windowSize {
		m.window = m.window[1:]
	}
}

// failures counts the FAILUREs in the window.
func (m *machine) failures() int {
	n := 0
	for _, f := range m.window {
		if f {
			n++
		}
	}
	return n
}

func (m *machine) evaluate(outcome pb.Outcome, at time.Time, expired bool) (localTransition, bool) {
	if outcome == pb.Outcome_OUTCOME_IGNORED {
		return localTransition{}, false
	}
	full, length := len(m.window) >= m.windowSize, len(m.window)
	switch m.status {
	case pb.Status_STATUS_CLOSED:
		// When one FAILURE meets both rules, the older rule's reason wins
		// (proto/SEMANTICS.md, "Which reason wins"): FAILURE_LIMIT, then CONSECUTIVE_FAILURES.
		if outcome != pb.Outcome_OUTCOME_FAILURE {
			return localTransition{}, false
		}
		if full && m.failureLimit.reachedBy(m.failures(), length) {
			return m.enter(pb.Status_STATUS_OPEN, pb.TransitionReason_TRANSITION_REASON_FAILURE_LIMIT, at), true
		}
		if m.consecutive > 0 && m.consecutiveFailures >= m.consecutive {
			return m.enter(pb.Status_STATUS_OPEN, pb.TransitionReason_TRANSITION_REASON_CONSECUTIVE_FAILURES, at), true
		}
		return localTransition{}, false
	case pb.Status_STATUS_HALF_OPEN:
		if !full {
			return localTransition{}, false
		}
		failures := m.failures()
		var close bool
		if m.successLimit != nil {
			close = m.successLimit.reachedBy(length-failures, length)
		} else {
			close = !m.failureLimit.reachedBy(failures, length)
		}
		reason := pb.TransitionReason_TRANSITION_REASON_TRIALS_FAILED
		switch {
		case expired:
			reason = pb.TransitionReason_TRANSITION_REASON_PERMIT_EXPIRED
		case close:
			reason = pb.TransitionReason_TRANSITION_REASON_TRIALS_SUCCEEDED
		}
		to := pb.Status_STATUS_OPEN
		if close {
			to = pb.Status_STATUS_CLOSED
		}
		return m.enter(to, reason, at), true
	}
	return localTransition{}, false
}

func (m *machine) enter(status pb.Status, reason pb.TransitionReason, at time.Time) localTransition {
	t := localTransition{from: m.status, to: status, reason: reason}
	m.status = status
	m.generation++
	t.generation = m.generation
	clear(m.trials)
	m.window = m.window[:0]
	switch status {
	case pb.Status_STATUS_OPEN:
		m.openUntil = at.Add(m.cooldown)
	case pb.Status_STATUS_HALF_OPEN:
		m.windowSize = m.halfOpenWindow()
	case pb.Status_STATUS_CLOSED:
		m.windowSize = int(m.failureLimit.d)
		m.consecutiveFailures = 0
	}
	return t
}
