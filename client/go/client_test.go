package circuit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	circuit "example.invalid/resilient-circuit/client/go"
	pb "example.invalid/resilient-circuit/client/go/circuitv1"
	"example.invalid/resilient-circuit/client/go/internal/daemontest"
)

// deadline bounds every wait for an event: generous, never a sleep.
const deadline = daemontest.Deadline

var errBoom = errors.New("boom")

func dial(t *testing.T, addr string, opts ...circuit.Option) *circuit.Client {
	t.Helper()
	c, err := circuit.Dial(addr, append([]circuit.Option{circuit.WithAcquireDeadline(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func protector(t *testing.T, c *circuit.Client, name string, opts ...circuit.ProtectorOption) *circuit.Protector {
	t.Helper()
	p, err := c.Protector(context.Background(), name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// changes collects a protector's status changes for the test to wait on.
type changes chan circuit.StatusChange

func (ch changes) next(t *testing.T) circuit.StatusChange {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(deadline):
		t.Fatalf("no status change within %s", deadline)
	}
	return circuit.StatusChange{}
}

func TestExecuteTripsAndAnnouncesOnce(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.Addr)
	ch := make(changes, 16)
	p := protector(t, c, "go-trip", circuit.WithPolicy(circuit.Cooldown(time.Minute), circuit.FailureLimit(2, 2)),
		circuit.OnStatusChange(func(sc circuit.StatusChange) { ch <- sc }))
	ctx := context.Background()
	ran := 0
	for range 2 {
		err := p.Execute(ctx, func(context.Context) error { ran++; return errBoom })
		if !errors.Is(err, errBoom) {
			t.Fatalf("want the call's own error, got %v", err)
		}
	}
	sc := ch.next(t)
	if sc.From != pb.Status_STATUS_CLOSED || sc.To != pb.Status_STATUS_OPEN ||
		sc.Reason != pb.TransitionReason_TRANSITION_REASON_FAILURE_LIMIT || sc.Generation != 2 {
		t.Fatalf("unexpected change %+v", sc)
	}
	err := p.Execute(ctx, func(context.Context) error { ran++; return nil })
	var rejected *circuit.RejectedError
	if !errors.Is(err, circuit.ErrRejected) || !errors.As(err, &rejected) || rejected.Fallback ||
		rejected.Reason != pb.DecisionReason_DECISION_REASON_OPEN || rejected.RetryAfter <= 0 {
		t.Fatalf("want an OPEN rejection with a retry_after, got %v", err)
	}
	if ran != 2 {
		t.Fatalf("the rejected call ran")
	}
	// The Watch's copy of the same transition is not announced again: a later change is
	// the next one seen.
	if _, err := admin(t, d.Addr).SetStatus(ctx, &pb.SetStatusRequest{Name: "go-trip", Status: pb.Status_STATUS_CLOSED}); err != nil {
		t.Fatal(err)
	}
	if sc := ch.next(t); sc.To != pb.Status_STATUS_CLOSED || sc.Generation != 3 {
		t.Fatalf("unexpected change %+v", sc)
	}
}

func TestTwoStepPermitIsResolvedOnce(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.Addr)
	p := protector(t, c, "go-permit")
	ctx := context.Background()
	permit, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if permit.Source() != circuit.SourceDaemon || permit.Trial() {
		t.Fatalf("want a daemon's CLOSED permit, got %v trial=%v", permit.Source(), permit.Trial())
	}
	res, err := permit.Report(ctx, pb.Outcome_OUTCOME_SUCCESS)
	if err != nil || !res.Accepted {
		t.Fatalf("report: %+v %v", res, err)
	}
	if err := permit.Failure(ctx); !errors.Is(err, circuit.ErrPermitResolved) {
		t.Fatalf("a second resolution: want ErrPermitResolved, got %v", err)
	}
	got := inspect(t, d.Addr, "go-permit")
	if got.Counters.Successes != 1 || got.Counters.Failures != 0 {
		t.Fatalf("counters %+v", got.Counters)
	}
}

func TestFallbacksOnADeadDaemon(t *testing.T) {
	d := daemontest.Start(t)
	addr := d.Addr
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr)
	ctx := context.Background()
	deny := protector(t, c, "go-deny")
	var rejected *circuit.RejectedError
	if err := deny.Execute(ctx, func(context.Context) error { return nil }); !errors.As(err, &rejected) || !rejected.Fallback {
		t.Fatalf("deny: want a fallback rejection, got %v", err)
	}
	allow := protector(t, c, "go-allow", circuit.WithFallback(circuit.FallbackAllow))
	permit, err := allow.Acquire(ctx)
	if err != nil || permit.Source() != circuit.SourceFallback {
		t.Fatalf("allow: %v %v", permit, err)
	}
	local := protector(t, c, "go-local", circuit.WithFallback(circuit.FallbackLocal),
		circuit.WithPolicy(circuit.Cooldown(time.Minute), circuit.FailureLimit(1, 1)))
	if err := local.Execute(ctx, func(context.Context) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("local: want the call to run, got %v", err)
	}
	err = local.Execute(ctx, func(context.Context) error { return nil })
	if !errors.As(err, &rejected) || !rejected.Fallback || rejected.Status != pb.Status_STATUS_OPEN {
		t.Fatalf("local: want the tripped machine's rejection, got %v", err)
	}
	if s := c.Stats(); s.FallbackDecisions < 4 || s.LinkDowns == 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCachedModeBatchesSuccesses(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.Addr)
	p := protector(t, c, "go-cached", circuit.WithCached(true), circuit.WithPolicy(circuit.FailureLimit(5, 10)))
	ctx := context.Background()
	waitFor(t, "a cached decision", func() bool {
		permit, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = permit.Ignore(ctx)
		return permit.Source() == circuit.SourceCache
	})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 250 {
				_ = p.Execute(ctx, func(context.Context) error { return nil })
			}
		})
	}
	wg.Wait()
	waitFor(t, "the daemon to count 1000 successes", func() bool {
		return inspect(t, d.Addr, "go-cached").Counters.Successes == 1000
	})
	if s := c.Stats(); s.CacheDecisions < 1000 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRetryInSafetyNetStopsAtAnOpenProtector(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.Addr)
	p := protector(t, c, "go-retry", circuit.WithPolicy(circuit.Cooldown(time.Minute), circuit.FailureLimit(2, 2)))
	net := circuit.SafetyNet(circuit.NewRetry(circuit.MaxRetries(5)), p)
	calls := 0
	err := net.Execute(context.Background(), func(context.Context) error { calls++; return errBoom })
	// Two failures trip the protector; the third attempt is rejected without a
	// retry_after that fits the (zero) delay, so the retry gives up at once with it.
	if calls != 2 || !errors.Is(err, circuit.ErrRejected) {
		t.Fatalf("calls %d, err %v", calls, err)
	}
	calls = 0
	retry := circuit.NewRetry(circuit.MaxRetries(2), circuit.WithBackoff(circuit.FixedDelay(0)))
	err = retry.Execute(context.Background(), func(context.Context) error { calls++; return errBoom })
	var limit *circuit.RetryLimitError
	if calls != 3 || !errors.Is(err, circuit.ErrRetryLimit) || !errors.As(err, &limit) || !errors.Is(err, errBoom) {
		t.Fatalf("calls %d, err %v", calls, err)
	}
	delay := circuit.ExponentialDelay{Min: time.Millisecond, Max: 4 * time.Millisecond, Jitter: 0.5}
	for n := 1; n < 10; n++ {
		if got := delay.Delay(n); got < 0 || got > 4*time.Millisecond {
			t.Fatalf("delay(%d) = %s beyond the cap", n, got)
		}
	}
}

func TestEveryPolicyFieldReachesTheDaemon(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.Addr)
	protector(t, c, "go-policy", circuit.WithPolicy(
		circuit.Cooldown(time.Second), circuit.FailureLimit(3, 10), circuit.SuccessLimit(2, 4),
		circuit.TrialPermits(2), circuit.PermitTTL(5*time.Second), circuit.AutoHalfOpen(true),
		circuit.WindowDuration(10*time.Second), circuit.MinimumCalls(20), circuit.ConsecutiveFailures(5),
		circuit.SlowCalls(200*time.Millisecond, 1, 2), circuit.CooldownMultiplier(2), circuit.MaxCooldown(time.Minute),
		circuit.Shadow(true), circuit.HistorySize(100),
	))
	got := inspect(t, d.Addr, "go-policy").Policy
	if got.Cooldown.AsDuration() != time.Second || got.FailureLimit.Numerator != 3 || got.SuccessLimit.Denominator != 4 ||
		got.GetTrialPermits() != 2 || got.PermitTtl.AsDuration() != 5*time.Second || !got.AutoHalfOpen ||
		got.WindowDuration.AsDuration() != 10*time.Second || got.GetMinimumCalls() != 20 || got.ConsecutiveFailures != 5 ||
		got.SlowCallDuration.AsDuration() != 200*time.Millisecond || got.SlowCallLimit.Denominator != 2 ||
		got.GetCooldownMultiplier() != 2 || got.MaxCooldown.AsDuration() != time.Minute || !got.Shadow || got.HistorySize != 100 {
		t.Fatalf("the daemon holds %v", got)
	}
	_, err := c.Protector(context.Background(), "go-bad-policy", circuit.WithPolicy(circuit.FailureLimit(3, 2)))
	if err == nil || !strings.Contains(err.Error(), "failure_limit") {
		t.Fatalf("want the field at fault named, got %v", err)
	}
	_, err = c.Protector(context.Background(), "go-bad-policy", circuit.WithPolicy(circuit.MinimumCalls(0), circuit.WindowDuration(time.Second)))
	if err == nil || !strings.Contains(err.Error(), "minimum_calls") {
		t.Fatalf("want the daemon to name the field at fault, got %v", err)
	}
}

func TestCloseFlushesCachedSuccesses(t *testing.T) {
	d := daemontest.Start(t)
	c, err := circuit.Dial(d.Addr, circuit.WithBatchInterval(time.Hour)) // only Close flushes
	if err != nil {
		t.Fatal(err)
	}
	p := protector(t, c, "go-close", circuit.WithCached(true))
	ctx := context.Background()
	waitFor(t, "the Watch to go live", func() bool { return p.State().Synced })
	for range 100 {
		if err := p.Execute(ctx, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if c.Stats().CacheDecisions != 100 {
		t.Fatalf("stats %+v", c.Stats())
	}
	c.Close()
	if got := inspect(t, d.Addr, "go-close").Counters.Successes; got != 100 {
		t.Fatalf("the daemon counted %d successes", got)
	}
	if _, err := p.Acquire(ctx); !errors.Is(err, circuit.ErrClosed) {
		t.Fatalf("after Close: want ErrClosed, got %v", err)
	}
	if _, err := c.Protector(ctx, "go-close-2"); !errors.Is(err, circuit.ErrClosed) {
		t.Fatalf("after Close: want ErrClosed, got %v", err)
	}
}

// The daemon's policy applies to a protector that exists with another one, and the
// LOCAL fallback follows it: with the daemon gone, one failure trips it (1/1), not five.
func TestLocalFallbackFollowsTheDaemonsPolicy(t *testing.T) {
	d := daemontest.Start(t)
	first := dial(t, d.Addr)
	protector(t, first, "go-adopt", circuit.WithPolicy(circuit.Cooldown(time.Minute), circuit.FailureLimit(1, 1)))
	c := dial(t, d.Addr)
	p := protector(t, c, "go-adopt", circuit.WithFallback(circuit.FallbackLocal),
		circuit.WithPolicy(circuit.Cooldown(time.Minute), circuit.FailureLimit(5, 5)))
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Execute(ctx, func(context.Context) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("want the call to run, got %v", err)
	}
	var rejected *circuit.RejectedError
	if err := p.Execute(ctx, func(context.Context) error { return nil }); !errors.As(err, &rejected) || !rejected.Fallback {
		t.Fatalf("want the local machine tripped by one failure, got %v", err)
	}
}
