package circuit

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// PolicyOption sets one field of a protector's policy (proto/resilient_circuit/v1/types.proto
// Policy; the rules are in proto/SEMANTICS.md). Unset fields keep the daemon's defaults.
// The daemon validates the whole policy and names the field at fault; the few checks made
// here are those the local fallback machine depends on.
type PolicyOption func(*pb.Policy)

// Cooldown: how long OPEN rejects before a trial call may go (default 0).
func Cooldown(d time.Duration) PolicyOption {
	return func(p *pb.Policy) { p.Cooldown = durationpb.New(d) }
}

// FailureLimit: trip when the CLOSED window of `window` outcomes is full and its
// failure rate reaches failures/window (default 1/1; 1 <= failures <= window <= 10,000).
func FailureLimit(failures, window uint32) PolicyOption {
	return func(p *pb.Policy) { p.FailureLimit = &pb.Fraction{Numerator: failures, Denominator: window} }
}

// SuccessLimit: HALF_OPEN closes when its window of `window` outcomes is full and
// successes/window >= this fraction, else reopens.
func SuccessLimit(successes, window uint32) PolicyOption {
	return func(p *pb.Policy) { p.SuccessLimit = &pb.Fraction{Numerator: successes, Denominator: window} }
}

// TrialPermits: most HALF_OPEN trials in flight at once (0 = unlimited).
func TrialPermits(n uint32) PolicyOption {
	return func(p *pb.Policy) { p.TrialPermits = proto.Uint32(n) }
}

// PermitTTL: how long a trial permit lives unreported (default 30 s).
func PermitTTL(d time.Duration) PolicyOption {
	return func(p *pb.Policy) { p.PermitTtl = durationpb.New(d) }
}

// AutoHalfOpen: the daemon moves OPEN to HALF_OPEN itself at open_until.
func AutoHalfOpen(on bool) PolicyOption {
	return func(p *pb.Policy) { p.AutoHalfOpen = on }
}

// WindowDuration: CLOSED judges the outcomes of the last d (a time window) instead of
// the last failure-limit denominator.
func WindowDuration(d time.Duration) PolicyOption {
	return func(p *pb.Policy) { p.WindowDuration = durationpb.New(d) }
}

// MinimumCalls: with WindowDuration, no rate rule is judged below this many calls.
func MinimumCalls(n uint32) PolicyOption {
	return func(p *pb.Policy) { p.MinimumCalls = proto.Uint32(n) }
}

// ConsecutiveFailures: this many FAILUREs in a row trip CLOSED at once (0 = off).
func ConsecutiveFailures(n uint32) PolicyOption {
	return func(p *pb.Policy) { p.ConsecutiveFailures = n }
}

// SlowCalls: a call lasting d or more is slow; trip (or reopen) when the window is full
// and slow/calls >= slow/window. Execute measures every call's duration.
func SlowCalls(d time.Duration, slow, window uint32) PolicyOption {
	return func(p *pb.Policy) {
		p.SlowCallDuration = durationpb.New(d)
		p.SlowCallLimit = &pb.Fraction{Numerator: slow, Denominator: window}
	}
}

// CooldownMultiplier: each reopening from HALF_OPEN multiplies the cooldown (1 to 100).
func CooldownMultiplier(m float64) PolicyOption {
	return func(p *pb.Policy) { p.CooldownMultiplier = proto.Float64(m) }
}

// MaxCooldown: the cap of the multiplied cooldown.
func MaxCooldown(d time.Duration) PolicyOption {
	return func(p *pb.Policy) { p.MaxCooldown = durationpb.New(d) }
}

// Shadow: the machine runs and publishes transitions, but every Acquire is admitted
// (Permit.WouldReject says which would not have been).
func Shadow(on bool) PolicyOption {
	return func(p *pb.Policy) { p.Shadow = on }
}

// HistorySize: how many recent outcomes the daemon keeps for SimulatePolicy.
func HistorySize(n uint32) PolicyOption {
	return func(p *pb.Policy) { p.HistorySize = n }
}

// buildPolicy applies opts to an empty policy and checks what the local machine needs.
func buildPolicy(opts []PolicyOption) (*pb.Policy, error) {
	p := &pb.Policy{}
	for _, o := range opts {
		o(p)
	}
	for field, f := range map[string]*pb.Fraction{
		"failure_limit": p.FailureLimit, "success_limit": p.SuccessLimit, "slow_call_limit": p.SlowCallLimit,
	} {
		if f != nil && !(1 <= f.Numerator && f.Numerator <= f.Denominator && f.Denominator <= 10_000) {
			return nil, fmt.Errorf("circuit: policy field %s: need 1 <= n <= d <= 10000, got %d/%d", field, f.Numerator, f.Denominator)
		}
	}
	for field, d := range map[string]*durationpb.Duration{
		"cooldown": p.Cooldown, "permit_ttl": p.PermitTtl, "window_duration": p.WindowDuration,
		"slow_call_duration": p.SlowCallDuration, "max_cooldown": p.MaxCooldown,
	} {
		if d != nil && d.AsDuration() < 0 {
			return nil, fmt.Errorf("circuit: policy field %s: negative duration %s", field, d.AsDuration())
		}
	}
	return p, nil
}
