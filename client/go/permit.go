package circuit

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

type permitKind uint8

const (
	permitDaemon permitKind = iota // the daemon's: reported with Report
	permitCached                   // admitted locally while CLOSED: counted, sent in batches
	permitAllow                    // the ALLOW fallback's: recorded nowhere
	permitLocal                    // the LOCAL fallback's: reported to the local machine
)

// Permit is an admitted call, to be resolved exactly once with Success, Failure or
// Ignore (or Report). A second resolution returns ErrPermitResolved.
type Permit struct {
	p          *Protector
	kind       permitKind
	generation uint64
	localID    uint64
	daemon     *pb.Permit
	view       *view
	start      time.Time
	resolved   atomic.Bool

	// WouldReject: shadow mode admitted a call the protector would have rejected.
	WouldReject bool
}

// Resolved is what became of a permit's report.
type Resolved struct {
	// Accepted is false when the report was stale (another generation, a trial permit
	// already reported or expired), or recorded nowhere (the ALLOW fallback's, or a
	// cached permit's, whose verdict comes with its batch).
	Accepted bool
	// Status is the protector's status after the report, when the daemon answered.
	Status pb.Status
}

// Source says who decided a call.
type Source int

const (
	// SourceDaemon: the daemon answered the Acquire.
	SourceDaemon Source = iota
	// SourceCache: a cached protector decided in the process, on the Watch's word.
	SourceCache
	// SourceFallback: the daemon could not be asked in time; the fallback decided.
	SourceFallback
)

func (s Source) String() string { return [...]string{"daemon", "cache", "fallback"}[s] }

// Source says who admitted the call.
func (pm *Permit) Source() Source {
	switch pm.kind {
	case permitCached:
		return SourceCache
	case permitAllow, permitLocal:
		return SourceFallback
	}
	return SourceDaemon
}

// Generation is the generation the permit was issued in.
func (pm *Permit) Generation() uint64 { return pm.generation }

// Trial reports whether the permit is a HALF_OPEN trial (of the daemon or the local machine).
func (pm *Permit) Trial() bool { return pm.daemon.GetId() != 0 || pm.localID != 0 }

// Success reports that the call succeeded.
func (pm *Permit) Success(ctx context.Context) error {
	_, err := pm.Report(ctx, pb.Outcome_OUTCOME_SUCCESS)
	return err
}

// Failure reports that the call failed.
func (pm *Permit) Failure(ctx context.Context) error {
	_, err := pm.Report(ctx, pb.Outcome_OUTCOME_FAILURE)
	return err
}

// Ignore gives the permit back without an outcome (a trial is released).
func (pm *Permit) Ignore(ctx context.Context) error {
	_, err := pm.Report(ctx, pb.Outcome_OUTCOME_IGNORED)
	return err
}

// Report resolves the permit with outcome, its duration measured since Acquire. A
// report that cannot reach the daemon is counted (Stats.ReportsLost) and returned.
func (pm *Permit) Report(ctx context.Context, outcome pb.Outcome) (Resolved, error) {
	var d time.Duration
	if !pm.start.IsZero() {
		d = time.Since(pm.start)
	}
	return pm.resolve(ctx, outcome, d)
}

func (pm *Permit) resolve(ctx context.Context, outcome pb.Outcome, d time.Duration) (Resolved, error) {
	if !pm.resolved.CompareAndSwap(false, true) {
		return Resolved{}, ErrPermitResolved
	}
	p := pm.p
	switch pm.kind {
	case permitCached:
		p.cache.record(ctx, pm.view, outcome, d)
		return Resolved{}, nil
	case permitAllow:
		return Resolved{}, nil
	case permitLocal:
		p.localMu.Lock()
		ok, _ := p.local.report(pm.generation, pm.localID, outcome, time.Now())
		st := p.local.status
		p.localMu.Unlock()
		return Resolved{Accepted: ok, Status: st}, nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.c.cfg.requestTimeout)
	defer cancel()
	return p.report(rctx, pm.daemon, outcome, d)
}

// report sends one daemon permit's outcome.
func (p *Protector) report(ctx context.Context, permit *pb.Permit, outcome pb.Outcome, d time.Duration) (Resolved, error) {
	req := &pb.ReportRequest{Name: p.name, Permit: permit, Outcome: outcome}
	if d > 0 {
		req.Duration = durationpb.New(min(d, time.Hour))
	}
	resp, err := call(ctx, p.c, func(ctx context.Context, r *replica) (*pb.ReportResponse, error) {
		return p.c.reportOn(ctx, r, req)
	})
	if err != nil {
		p.c.stats.reportsLost.Add(1)
		return Resolved{}, fmt.Errorf("circuit: protector %q: report lost: %w", p.name, err)
	}
	if t := resp.Transition; t != nil {
		p.learn(t)
	}
	return Resolved{Accepted: resp.Accepted, Status: resp.Status}, nil
}

// decideByFallback answers an Acquire the daemon could not: the declared fallback.
func (p *Protector) decideByFallback(why string) (*Permit, error) {
	p.c.stats.fallbackDecisions.Add(1)
	slog.Debug("circuit: the daemon could not be asked; the fallback decides",
		"protector", p.name, "fallback", p.fallback, "why", why)
	switch p.fallback {
	case FallbackAllow:
		return &Permit{p: p, kind: permitAllow}, nil
	case FallbackLocal:
		p.localMu.Lock()
		gen, id, reason, retry, _ := p.local.acquire(time.Now())
		st := p.local.status
		p.localMu.Unlock()
		if reason == 0 {
			return &Permit{p: p, kind: permitLocal, generation: gen, localID: id, start: time.Now()}, nil
		}
		return nil, &RejectedError{Name: p.name, Status: st, Reason: reason, RetryAfter: retry, Fallback: true}
	}
	return nil, &RejectedError{Name: p.name, Status: pb.Status_STATUS_OPEN,
		Reason: pb.DecisionReason_DECISION_REASON_OPEN, Fallback: true}
}
