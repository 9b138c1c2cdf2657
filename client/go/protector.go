package circuit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// Fallback is what decides when the daemon cannot be asked in time.
type Fallback int

const (
	// FallbackDeny rejects (RejectedError with Fallback true). The default.
	FallbackDeny Fallback = iota
	// FallbackAllow admits; the outcome is recorded nowhere.
	FallbackAllow
	// FallbackLocal asks an in-process machine with the protector's policy.
	FallbackLocal
)

func (f Fallback) String() string {
	return [...]string{"deny", "allow", "local"}[f]
}

// StatusChange is one transition of a protector, delivered once per generation.
type StatusChange struct {
	Name       string
	From, To   pb.Status
	Reason     pb.TransitionReason
	Generation uint64
}

type protectorConfig struct {
	policy    []PolicyOption
	fallback  Fallback
	cached    bool
	isFailure func(error) bool
	onChange  []func(StatusChange)
	staleness time.Duration
}

// ProtectorOption configures a Protector.
type ProtectorOption func(*protectorConfig)

// WithPolicy: the policy to create the protector with (an existing protector keeps its
// own; the daemon's then applies, to the local fallback too).
func WithPolicy(opts ...PolicyOption) ProtectorOption {
	return func(c *protectorConfig) { c.policy = append(c.policy, opts...) }
}

// WithFallback: what decides when the daemon cannot be asked (default FallbackDeny).
func WithFallback(f Fallback) ProtectorOption { return func(c *protectorConfig) { c.fallback = f } }

// WithCached: decide locally while the Watch says CLOSED, successes counted and sent in
// batches, failures sent at once (see cached.go).
func WithCached(on bool) ProtectorOption { return func(c *protectorConfig) { c.cached = on } }

// WithStaleness: this protector's Watch staleness bound, instead of the client's
// (WithWatchStaleness): cached decisions stop once its stream was silent this long.
func WithStaleness(d time.Duration) ProtectorOption {
	return func(c *protectorConfig) { c.staleness = max(d, 300*time.Millisecond) }
}

// WithIsFailure: which errors of an Execute'd call count as FAILURE; the others count
// as SUCCESS. Default: every error. The caller's own context ending is always IGNORED.
func WithIsFailure(fn func(error) bool) ProtectorOption {
	return func(c *protectorConfig) { c.isFailure = fn }
}

// OnStatusChange: fn hears every transition, once each, in order (see Protector.OnStatusChange).
func OnStatusChange(fn func(StatusChange)) ProtectorOption {
	return func(c *protectorConfig) { c.onChange = append(c.onChange, fn) }
}

// Protector is the handle of one named protector. Safe for concurrent use; Execute is
// the usual way, Acquire and the Permit's Success/Failure/Ignore the two-step one.
type Protector struct {
	name       string
	c          *Client
	policy     *pb.Policy
	fallback   Fallback
	isFail     func(error) bool
	staleness  time.Duration
	ensured    atomic.Bool
	watchStart sync.Once

	localMu sync.Mutex
	local   *machine // FallbackLocal only

	notifier notifier
	cache    *cache // nil unless cached
	watch    watchState
}

// Protector makes a handle for the protector `name`, creating it on the daemon with the
// policy given when absent. A daemon that is down does not fail this (the protector is
// created at the first Acquire that reaches it); an invalid policy or name does.
func (c *Client) Protector(ctx context.Context, name string, opts ...ProtectorOption) (*Protector, error) {
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	cfg := protectorConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	policy, err := buildPolicy(cfg.policy)
	if err != nil {
		return nil, err
	}
	p := &Protector{name: name, c: c, policy: policy, fallback: cfg.fallback, isFail: cfg.isFailure,
		staleness: c.cfg.watchStaleness}
	if cfg.staleness > 0 {
		p.staleness = cfg.staleness
	}
	p.notifier.name = name
	p.notifier.callbacks = cfg.onChange
	if cfg.fallback == FallbackLocal {
		p.local = newMachine(policy)
	}
	if cfg.cached {
		p.cache = newCache(p)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
	defer cancel()
	if err := p.ensure(rctx); err != nil && !unreachable(err) {
		// Wrapped: errors.Is and status.Code still see the daemon's status.
		return nil, fmt.Errorf("circuit: protector %q: %w", name, err)
	}
	if p.cache != nil || len(cfg.onChange) > 0 {
		p.startWatch()
	}
	if p.cache != nil {
		c.wg.Add(1)
		go p.cache.batcher()
	}
	return p, nil
}

// Name is the protector's name.
func (p *Protector) Name() string { return p.name }

// OnStatusChange adds fn to the callbacks that hear every transition, from the Watch
// (started now if it was not) and from the answers of this client's own calls, each
// exactly once (by generation), in order. Callbacks run on the goroutine that learned of
// the change, one at a time; they must not block nor call back into the notifier.
func (p *Protector) OnStatusChange(fn func(StatusChange)) {
	p.notifier.mu.Lock()
	p.notifier.callbacks = append(p.notifier.callbacks, fn)
	p.notifier.mu.Unlock()
	p.startWatch()
}

// startWatch starts the protector's Watch once: only protectors that need it (cached,
// or with a status-change callback) hold a stream, as the daemon bounds them per client.
func (p *Protector) startWatch() {
	p.watchStart.Do(func() {
		if p.c.ctx.Err() != nil {
			return
		}
		p.c.wg.Add(1)
		go p.watchLoop()
	})
}

func (p *Protector) ensure(ctx context.Context) error {
	if p.cache != nil {
		// A batch on its way (taken before a deletion) lands before the protector is
		// created again, so it is judged in its own life, never counted in the new one.
		p.cache.flushMu.Lock()
		defer p.cache.flushMu.Unlock()
	}
	resp, err := call(ctx, p.c, func(ctx context.Context, r *replica) (*pb.EnsureProtectorResponse, error) {
		return r.api.EnsureProtector(ctx, &pb.EnsureProtectorRequest{Name: p.name, Policy: p.policy})
	})
	if err != nil {
		return err
	}
	if !resp.PolicyMatches {
		p.adoptPolicy(resp.Protector.GetPolicy())
	}
	if pr := resp.Protector; pr != nil {
		if resp.Created {
			// A new life, whose generations start again at 1.
			p.newLife(resp.Revision)
			p.fromProtector(pr)
		} else {
			p.observe(pr.Status, pr.Generation)
		}
	}
	p.ensured.Store(true)
	return nil
}

// adoptPolicy: the daemon's policy applies (another was asked for, or an operator
// replaced it); the LOCAL fallback's machine follows it, starting anew as the daemon's
// window does.
func (p *Protector) adoptPolicy(policy *pb.Policy) {
	if p.fallback != FallbackLocal || policy == nil {
		return
	}
	p.localMu.Lock()
	p.local = newMachine(policy)
	p.localMu.Unlock()
}

// Acquire asks whether a call may go ahead: a Permit to resolve exactly once, or a
// *RejectedError (errors.Is(err, ErrRejected)). Other errors: the caller's ctx ended, the
// client is closed, or the daemon refused the request (a bad token, for one).
func (p *Protector) Acquire(ctx context.Context) (*Permit, error) {
	if v := p.cacheView(); v != nil {
		p.c.stats.cacheDecisions.Add(1)
		permit := &Permit{p: p, kind: permitCached, generation: v.generation, view: v}
		if v.slow > 0 {
			permit.start = time.Now()
		}
		return permit, nil
	}
	permit, err := p.acquireRemote(ctx)
	if err == nil {
		permit.start = time.Now()
	}
	return permit, err
}

// Execute runs fn if the protector admits it and reports how it went, with its duration:
// fn's error counts as FAILURE (see WithIsFailure), nil as SUCCESS, the caller's context
// ending as IGNORED; a panic is reported as FAILURE and goes on. Returns fn's error, or the
// rejection (errors.Is(err, ErrRejected)) without running fn.
func (p *Protector) Execute(ctx context.Context, fn func(context.Context) error) error {
	if v := p.cacheView(); v != nil {
		// The hot path: no permit, no clock unless a slow-call rule needs the duration.
		p.c.stats.cacheDecisions.Add(1)
		var start time.Time
		if v.slow > 0 {
			start = time.Now()
		}
		err := p.run(ctx, fn, func(outcome pb.Outcome) {
			var d time.Duration
			if v.slow > 0 {
				d = time.Since(start)
			}
			p.cache.record(ctx, v, outcome, d)
		})
		return err
	}
	permit, err := p.acquireRemote(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	return p.run(ctx, fn, func(outcome pb.Outcome) {
		_, _ = permit.resolve(ctx, outcome, time.Since(start))
	})
}

// run calls fn and hands its outcome to report, a panic included.
func (p *Protector) run(ctx context.Context, fn func(context.Context) error, report func(pb.Outcome)) (err error) {
	done := false
	defer func() {
		if !done {
			report(pb.Outcome_OUTCOME_FAILURE)
		}
	}()
	err = fn(ctx)
	done = true
	report(p.outcomeOf(ctx, err))
	return err
}

func (p *Protector) outcomeOf(ctx context.Context, err error) pb.Outcome {
	switch {
	case err == nil:
		return pb.Outcome_OUTCOME_SUCCESS
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return pb.Outcome_OUTCOME_IGNORED
	case p.isFail != nil && !p.isFail(err):
		return pb.Outcome_OUTCOME_SUCCESS
	}
	return pb.Outcome_OUTCOME_FAILURE
}

type acquireResult struct {
	resp *pb.AcquireResponse
	err  error
}

// The hand-over of one background Acquire: exactly one side settles its answer.
const (
	askPending   int32 = iota
	askDelivered       // the answer is (about to be) on the channel for the caller
	askAbandoned       // the caller left; the background goroutine gives a permit back
)

// acquireRemote asks the daemon within the acquire deadline; past it, or with the
// daemon unreachable, the fallback decides. The question itself goes on in the
// background (bounded by the request timeout), so a permit that comes too late is given
// back at once (IGNORED) rather than left to expire as a FAILURE.
func (p *Protector) acquireRemote(ctx context.Context) (*Permit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if !p.c.link.usable() {
		return p.decideByFallback("the reconnect backoff holds")
	}
	answer := make(chan acquireResult, 1)
	var state atomic.Int32
	go func() {
		rctx, cancel := context.WithTimeout(p.c.ctx, p.c.cfg.requestTimeout)
		defer cancel()
		resp, err := p.ask(rctx)
		if state.CompareAndSwap(askPending, askDelivered) {
			answer <- acquireResult{resp, err}
			return
		}
		if permit := (acquireResult{resp, err}).trialPermit(); permit != nil {
			_, _ = p.report(rctx, permit, pb.Outcome_OUTCOME_IGNORED, 0)
		}
	}()
	timer := time.NewTimer(p.c.cfg.acquireDeadline)
	defer timer.Stop()
	select {
	case r := <-answer:
		return p.settle(r)
	case <-timer.C:
		if state.CompareAndSwap(askPending, askAbandoned) {
			return p.decideByFallback(fmt.Sprintf("no answer within %s", p.c.cfg.acquireDeadline))
		}
		return p.settle(<-answer)
	case <-ctx.Done():
		if !state.CompareAndSwap(askPending, askAbandoned) {
			if permit := (<-answer).trialPermit(); permit != nil {
				p.giveBack(permit)
			}
		}
		return nil, ctx.Err()
	}
}

// settle turns the daemon's answer (or failure) into the caller's.
func (p *Protector) settle(r acquireResult) (*Permit, error) {
	if r.err != nil {
		if unreachable(r.err) || status.Code(r.err) == codes.ResourceExhausted {
			return p.decideByFallback(r.err.Error())
		}
		if errors.Is(r.err, ErrClosed) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("circuit: protector %q: %w", p.name, r.err)
	}
	return p.decided(r.resp)
}

// trialPermit is the trial permit an answer holds (a trial's permit has an id), which a
// caller that gave up must give back; nil when there is none.
func (r acquireResult) trialPermit() *pb.Permit {
	if r.err == nil && r.resp.Decision == pb.Decision_DECISION_ADMITTED && r.resp.Permit.GetId() != 0 {
		return r.resp.Permit
	}
	return nil
}

// giveBack reports a trial permit nobody will use as IGNORED, in the background.
func (p *Protector) giveBack(permit *pb.Permit) {
	go func() {
		rctx, cancel := context.WithTimeout(p.c.ctx, p.c.cfg.requestTimeout)
		defer cancel()
		_, _ = p.report(rctx, permit, pb.Outcome_OUTCOME_IGNORED, 0)
	}()
}

// ask: Acquire, ensuring the protector first when the daemon does not know it.
func (p *Protector) ask(ctx context.Context) (*pb.AcquireResponse, error) {
	if !p.ensured.Load() {
		if err := p.ensure(ctx); err != nil {
			return nil, err
		}
	}
	acquire := func(ctx context.Context, r *replica) (*pb.AcquireResponse, error) {
		return p.c.acquireOn(ctx, r, p.name)
	}
	resp, err := call(ctx, p.c, acquire)
	if status.Code(err) == codes.NotFound {
		p.ensured.Store(false)
		if err := p.ensure(ctx); err != nil {
			return nil, err
		}
		resp, err = call(ctx, p.c, acquire)
	}
	return resp, err
}

func (p *Protector) decided(resp *pb.AcquireResponse) (*Permit, error) {
	p.c.stats.daemonDecisions.Add(1)
	if t := resp.Transition; t != nil {
		p.learn(t)
	}
	if resp.Decision == pb.Decision_DECISION_ADMITTED {
		return &Permit{p: p, kind: permitDaemon, generation: resp.Permit.GetGeneration(), daemon: resp.Permit,
			WouldReject: resp.WouldReject}, nil
	}
	return nil, &RejectedError{Name: p.name, Status: resp.Status, Reason: resp.Reason,
		RetryAfter: resp.RetryAfter.AsDuration()}
}

// learn takes a transition from any answer: the notifier and the cached view hear it.
func (p *Protector) learn(t *pb.Transition) {
	p.notifier.transition(t)
	p.observe(t.To, t.Generation)
}

// State is what this client knows of the protector from its Watch and its answers.
type State struct {
	Status     pb.Status
	Override   pb.OverrideKind
	Generation uint64
	Synced     bool // the Watch is synced and live
}

// State reports the protector's state as this client last saw it.
func (p *Protector) State() State {
	v := p.watch.view.Load()
	if v == nil {
		return State{}
	}
	return State{Status: v.status, Override: v.override, Generation: v.generation, Synced: v.live}
}
