package circuit

// Retry, its backoffs and SafetyNet: the library's other policies, composed as Executors.
//
// Design note. As the Rust client's retry: up to MaxRetries+1 attempts (3 retries by
// default), no wait after the final attempt, an error ShouldHandle declines returned at
// once as itself, and a rejection retried only when its RetryAfter fits within the next
// delay (then after exactly RetryAfter: the protector said when to come back), else
// returned at once, since an open protector answers at once and retrying it on a schedule
// only burns attempts. Giving up is a *RetryLimitError (errors.Is ErrRetryLimit) that
// unwraps to the last attempt's error. SafetyNet(outer, inner...) runs outer around
// inner, so a Retry outside a Protector asks the protector again on every attempt.

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"time"
)

// Executor runs a call under a policy: a *Protector, a *Retry, a SafetyNet.
type Executor interface {
	Execute(ctx context.Context, fn func(context.Context) error) error
}

// Backoff is the wait after failed attempt n (1 for the first).
type Backoff interface {
	Delay(attempt int) time.Duration
}

// FixedDelay waits the same after every attempt; 0 does not wait.
type FixedDelay time.Duration

// Delay implements Backoff.
func (d FixedDelay) Delay(int) time.Duration { return time.Duration(d) }

// ExponentialDelay grows Min*Factor^(n-1), caps it at Max, spreads it by Jitter (a
// fraction: uniform in [d(1-j), d(1+j)]) and caps again, so Max is a hard ceiling.
// Factor 0 means 2.
type ExponentialDelay struct {
	Min, Max time.Duration
	Factor   float64
	Jitter   float64
}

// Delay implements Backoff.
func (e ExponentialDelay) Delay(attempt int) time.Duration {
	factor := e.Factor
	if factor == 0 {
		factor = 2
	}
	d := float64(e.Min) * math.Pow(factor, float64(max(attempt, 1)-1))
	d = min(d, float64(e.Max))
	if e.Jitter > 0 {
		d *= 1 - e.Jitter + 2*e.Jitter*rand.Float64()
	}
	return time.Duration(max(0, min(d, float64(e.Max))))
}

// Retry retries failed calls, waiting per its Backoff between attempts.
type Retry struct {
	maxRetries   int
	backoff      Backoff
	shouldHandle func(error) bool
}

// RetryOption configures a Retry.
type RetryOption func(*Retry)

// MaxRetries: retries after the first attempt (default 3).
func MaxRetries(n int) RetryOption { return func(r *Retry) { r.maxRetries = max(n, 0) } }

// WithBackoff: the wait between attempts (default FixedDelay(0)).
func WithBackoff(b Backoff) RetryOption { return func(r *Retry) { r.backoff = b } }

// ShouldHandle: which errors are retried (default every one).
func ShouldHandle(fn func(error) bool) RetryOption { return func(r *Retry) { r.shouldHandle = fn } }

// NewRetry makes a Retry: three retries, no wait, every error retried.
func NewRetry(opts ...RetryOption) *Retry {
	r := &Retry{maxRetries: 3, backoff: FixedDelay(0), shouldHandle: func(error) bool { return true }}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Execute implements Executor.
func (r *Retry) Execute(ctx context.Context, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		last := err
		var limit *RetryLimitError
		for errors.As(last, &limit) { // an inner give-up is judged by its last error
			last = limit.Last
		}
		delay := r.backoff.Delay(attempt)
		var rejected *RejectedError
		if errors.As(last, &rejected) {
			if rejected.RetryAfter <= 0 || rejected.RetryAfter > delay {
				return err
			}
			delay = rejected.RetryAfter
		} else if !r.shouldHandle(last) {
			return err
		}
		if attempt > r.maxRetries {
			return &RetryLimitError{Attempts: attempt, Last: err}
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}

type safetyNet struct {
	outer Executor
	inner Executor
}

// SafetyNet composes policies, the first outermost: SafetyNet(retry, protector) runs
// retry.Execute(ctx, func(ctx) error { return protector.Execute(ctx, fn) }).
func SafetyNet(outer Executor, inner ...Executor) Executor {
	if len(inner) == 0 {
		return outer
	}
	return safetyNet{outer: outer, inner: SafetyNet(inner[0], inner[1:]...)}
}

func (s safetyNet) Execute(ctx context.Context, fn func(context.Context) error) error {
	return s.outer.Execute(ctx, func(ctx context.Context) error { return s.inner.Execute(ctx, fn) })
}

// The policies that compose.
var (
	_ Executor = (*Protector)(nil)
	_ Executor = (*Retry)(nil)
)
