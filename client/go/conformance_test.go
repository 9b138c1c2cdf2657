package circuit_test

// The shared conformance vectors (conformance/vectors.json, format in
// conformance/README.md), every one played against a real daemon of its own.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	circuit "example.invalid/resilient-circuit/client/go"
	pb "example.invalid/resilient-circuit/client/go/circuitv1"
	"example.invalid/resilient-circuit/client/go/internal/daemontest"
)

const vectorsFile = "../../conformance/vectors.json"

type object = map[string]json.RawMessage

type vectorFile struct {
	Format     int      `json:"format"`
	DeadlineMS int      `json:"deadline_ms"`
	Vectors    []object `json:"vectors"`
}

func TestConformanceVectors(t *testing.T) {
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("reading the shared vectors: %v", err)
	}
	var file vectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if file.Format != 1 {
		t.Fatalf("vectors format %d: this player knows format 1 only", file.Format)
	}
	wait := max(time.Duration(file.DeadlineMS)*time.Millisecond, deadline)
	daemontest.Binary(t)
	// Every vector on each transport of Acquire and Report.
	for _, session := range []bool{false, true} {
		t.Run(map[bool]string{false: "unary", true: "session"}[session], func(t *testing.T) {
			for _, v := range file.Vectors {
				var name string
				mustField(t, v, "name", &name)
				t.Run(name, func(t *testing.T) { playVector(t, v, wait, session) })
			}
		})
	}
}

func playVector(t *testing.T, v object, wait time.Duration, session bool) {
	checkKeys(t, "vector", v, "name", "daemon", "client", "steps")
	var daemon struct {
		Flags []string `json:"flags"`
	}
	var clientCfg struct {
		AcquireDeadlineMS int `json:"acquire_deadline_ms"`
	}
	optField(t, v, "daemon", &daemon)
	clientCfg.AcquireDeadlineMS = 2000
	optField(t, v, "client", &clientCfg)
	var steps []object
	mustField(t, v, "steps", &steps)

	d := daemontest.StartDir(t, daemon.Flags...)
	c, err := circuit.Dial(d.Addr, circuit.WithAcquireDeadline(time.Duration(clientCfg.AcquireDeadlineMS)*time.Millisecond),
		circuit.WithRequestTimeout(5*time.Second), circuit.WithSession(session))
	if err != nil {
		t.Fatal(err)
	}
	harness, err := grpc.NewClient("passthrough:///"+d.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second}}))
	if err != nil {
		t.Fatal(err)
	}
	pl := &player{t: t, d: d, c: c, wait: wait, handles: map[string]*handle{}, permits: map[string]*circuit.Permit{},
		admin: pb.NewAdminServiceClient(harness), api: pb.NewProtectorServiceClient(harness)}
	defer func() {
		ctx := context.Background()
		for _, p := range pl.permits {
			_ = p.Ignore(ctx)
		}
		c.Close()
		harness.Close()
	}()
	// `listening on` comes before the store is recovered: wait until the daemon answers.
	pl.where = "start"
	pl.retrying(func(ctx context.Context) error {
		_, err := pl.api.ListProtectors(ctx, &pb.ListProtectorsRequest{})
		return err
	})
	for i, step := range steps {
		var op string
		mustField(t, step, "op", &op)
		pl.where = fmt.Sprintf("step %d (%s)", i, op)
		pl.play(op, step)
	}
}

type handle struct {
	p       *circuit.Protector
	changes chan circuit.StatusChange
}

type player struct {
	t       *testing.T
	where   string
	d       *daemontest.Daemon
	c       *circuit.Client
	wait    time.Duration
	handles map[string]*handle
	permits map[string]*circuit.Permit
	admin   pb.AdminServiceClient
	api     pb.ProtectorServiceClient
}

func (pl *player) fail(format string, args ...any) {
	pl.t.Helper()
	pl.t.Fatalf("%s: %s", pl.where, fmt.Sprintf(format, args...))
}

func (pl *player) play(op string, s object) {
	t := pl.t
	ctx := context.Background()
	switch op {
	case "protector":
		checkKeys(t, op, s, "op", "id", "name", "policy", "fallback", "cached", "staleness_ms", "watch")
		pl.protector(s)
	case "acquire", "acquire_until":
		checkKeys(t, op, s, "op", "protector", "permit", "expect")
		h := pl.handle(s)
		var keep string
		optField(t, s, "permit", &keep)
		var want acquireExpect
		mustField(t, s, "expect", &want)
		checkKeys(t, "expect", s["expect"], "decision", "trial", "source", "reason", "status", "fallback", "retry_after")
		end := time.Now().Add(pl.wait)
		for {
			permit, err := h.p.Acquire(ctx)
			mismatch := want.mismatch(permit, err)
			if mismatch == "" && permit != nil && keep != "" {
				pl.permits[keep] = permit
			} else if permit != nil {
				_ = permit.Ignore(ctx)
			}
			if mismatch == "" {
				break
			}
			if op == "acquire" || time.Now().After(end) {
				pl.fail("%s", mismatch)
			}
			time.Sleep(20 * time.Millisecond) // a poll interval, not a synchronisation
		}
	case "report":
		checkKeys(t, op, s, "op", "permit", "outcome", "expect")
		var name, outcome string
		mustField(t, s, "permit", &name)
		mustField(t, s, "outcome", &outcome)
		permit, ok := pl.permits[name]
		if !ok {
			pl.fail("no permit kept under %q", name)
		}
		delete(pl.permits, name)
		o := map[string]pb.Outcome{"success": pb.Outcome_OUTCOME_SUCCESS, "failure": pb.Outcome_OUTCOME_FAILURE,
			"ignore": pb.Outcome_OUTCOME_IGNORED}[outcome]
		if o == 0 {
			pl.fail("unknown outcome %q", outcome)
		}
		res, err := permit.Report(ctx, o)
		if err != nil {
			pl.fail("report: %v", err)
		}
		var want struct {
			Accepted *bool `json:"accepted"`
		}
		optField(t, s, "expect", &want)
		if want.Accepted != nil && permit.Source() == circuit.SourceDaemon && res.Accepted != *want.Accepted {
			pl.fail("accepted %v, want %v", res.Accepted, *want.Accepted)
		}
	case "execute":
		checkKeys(t, op, s, "op", "protector", "result", "times", "expect")
		h := pl.handle(s)
		var result string
		times := 1
		mustField(t, s, "result", &result)
		optField(t, s, "times", &times)
		var want struct {
			Outcome  string `json:"outcome"`
			Reason   string `json:"reason"`
			Fallback *bool  `json:"fallback"`
		}
		mustField(t, s, "expect", &want)
		for i := range times {
			ran := false
			err := h.p.Execute(ctx, func(context.Context) error {
				ran = true
				if result == "fail" {
					return errBoom
				}
				return nil
			})
			var rejected *circuit.RejectedError
			switch {
			case want.Outcome == "ran" && (!ran || (result == "fail") != errors.Is(err, errBoom) || (result == "ok" && err != nil)):
				pl.fail("call %d: want it to run, got ran=%v err=%v", i, ran, err)
			case want.Outcome == "rejected" && (ran || !errors.As(err, &rejected)):
				pl.fail("call %d: want a rejection, got ran=%v err=%v", i, ran, err)
			case rejected != nil && want.Reason != "" && trimEnum(rejected.Reason.String(), "DECISION_REASON_") != want.Reason:
				pl.fail("call %d: reason %s, want %s", i, rejected.Reason, want.Reason)
			case rejected != nil && want.Fallback != nil && rejected.Fallback != *want.Fallback:
				pl.fail("call %d: fallback %v, want %v", i, rejected.Fallback, *want.Fallback)
			}
		}
	case "change":
		checkKeys(t, op, s, "op", "protector", "from", "to", "reason")
		h := pl.handle(s)
		var from, to, reason string
		mustField(t, s, "from", &from)
		mustField(t, s, "to", &to)
		optField(t, s, "reason", &reason)
		select {
		case sc := <-h.changes:
			got := fmt.Sprintf("%s -> %s", trimEnum(sc.From.String(), "STATUS_"), trimEnum(sc.To.String(), "STATUS_"))
			if got != from+" -> "+to {
				pl.fail("change %s, want %s -> %s", got, from, to)
			}
			if r := trimEnum(sc.Reason.String(), "TRANSITION_REASON_"); reason != "" && r != "UNSPECIFIED" && r != reason {
				pl.fail("change reason %s, want %s", r, reason)
			}
		case <-time.After(pl.wait):
			pl.fail("no status change within %s, want %s -> %s", pl.wait, from, to)
		}
	case "no_change":
		checkKeys(t, op, s, "op", "protector")
		select {
		case sc := <-pl.handle(s).changes:
			pl.fail("unexpected status change %+v", sc)
		default:
		}
	case "admin":
		checkKeys(t, op, s, "op", "action", "name", "status", "kind")
		pl.adminCall(s)
	case "inspect":
		checkKeys(t, op, s, "op", "name", "expect")
		pl.inspect(s)
	case "stop_daemon":
		if err := pl.d.Stop(); err != nil {
			pl.fail("%v", err)
		}
	case "start_daemon":
		if err := pl.d.Restart(); err != nil {
			pl.fail("%v", err)
		}
		pl.retrying(func(ctx context.Context) error {
			_, err := pl.api.ListProtectors(ctx, &pb.ListProtectorsRequest{})
			return err
		})
	case "freeze_daemon":
		if err := pl.d.Freeze(); err != nil {
			pl.fail("%v", err)
		}
	case "thaw_daemon":
		if err := pl.d.Thaw(); err != nil {
			pl.fail("%v", err)
		}
	default:
		pl.fail("unknown op %q", op)
	}
}

func (pl *player) protector(s object) {
	t := pl.t
	var id, name, fallback string
	var cached, watch bool
	var stalenessMS int
	var policy struct {
		CooldownMS   *int     `json:"cooldown_ms"`
		FailureLimit []uint32 `json:"failure_limit"`
		SuccessLimit []uint32 `json:"success_limit"`
		TrialPermits *uint32  `json:"trial_permits"`
		PermitTTLMS  *int     `json:"permit_ttl_ms"`
	}
	mustField(t, s, "id", &id)
	mustField(t, s, "name", &name)
	optField(t, s, "fallback", &fallback)
	optField(t, s, "cached", &cached)
	optField(t, s, "watch", &watch)
	optField(t, s, "staleness_ms", &stalenessMS)
	if p, ok := s["policy"]; ok {
		checkKeys(t, "policy", p, "cooldown_ms", "failure_limit", "success_limit", "trial_permits", "permit_ttl_ms")
		optField(t, s, "policy", &policy)
	}
	var rules []circuit.PolicyOption
	if policy.CooldownMS != nil {
		rules = append(rules, circuit.Cooldown(time.Duration(*policy.CooldownMS)*time.Millisecond))
	}
	if f := policy.FailureLimit; len(f) == 2 {
		rules = append(rules, circuit.FailureLimit(f[0], f[1]))
	}
	if f := policy.SuccessLimit; len(f) == 2 {
		rules = append(rules, circuit.SuccessLimit(f[0], f[1]))
	}
	if policy.TrialPermits != nil {
		rules = append(rules, circuit.TrialPermits(*policy.TrialPermits))
	}
	if policy.PermitTTLMS != nil {
		rules = append(rules, circuit.PermitTTL(time.Duration(*policy.PermitTTLMS)*time.Millisecond))
	}
	opts := []circuit.ProtectorOption{circuit.WithPolicy(rules...), circuit.WithCached(cached)}
	switch fallback {
	case "", "deny":
	case "allow":
		opts = append(opts, circuit.WithFallback(circuit.FallbackAllow))
	case "local":
		opts = append(opts, circuit.WithFallback(circuit.FallbackLocal))
	default:
		pl.fail("unknown fallback %q", fallback)
	}
	if stalenessMS > 0 {
		opts = append(opts, circuit.WithStaleness(time.Duration(stalenessMS)*time.Millisecond))
	}
	h := &handle{changes: make(chan circuit.StatusChange, 64)}
	if watch {
		opts = append(opts, circuit.OnStatusChange(func(sc circuit.StatusChange) { h.changes <- sc }))
	}
	p, err := pl.c.Protector(context.Background(), name, opts...)
	if err != nil {
		pl.fail("%v", err)
	}
	h.p = p
	pl.handles[id] = h
}

func (pl *player) handle(s object) *handle {
	var id string
	mustField(pl.t, s, "protector", &id)
	h, ok := pl.handles[id]
	if !ok {
		pl.fail("no protector %q", id)
	}
	return h
}

// retrying runs an admin or harness call until it is not UNAVAILABLE, within the deadline.
func (pl *player) retrying(fn func(context.Context) error) {
	end := time.Now().Add(pl.wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Until(end))
		err := fn(ctx)
		cancel()
		if err == nil {
			return
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(end) {
			pl.fail("%v", err)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a synchronisation
	}
}

func (pl *player) adminCall(s object) {
	var action, name, st, kind string
	mustField(pl.t, s, "action", &action)
	mustField(pl.t, s, "name", &name)
	optField(pl.t, s, "status", &st)
	optField(pl.t, s, "kind", &kind)
	pl.retrying(func(ctx context.Context) error {
		var err error
		switch action {
		case "set_status":
			_, err = pl.admin.SetStatus(ctx, &pb.SetStatusRequest{Name: name, Status: pb.Status(pb.Status_value["STATUS_"+st])})
		case "set_override":
			_, err = pl.admin.SetOverride(ctx, &pb.SetOverrideRequest{Name: name,
				Kind: pb.OverrideKind(pb.OverrideKind_value["OVERRIDE_KIND_"+kind])})
		case "delete":
			_, err = pl.admin.DeleteProtector(ctx, &pb.DeleteProtectorRequest{Name: name})
		default:
			pl.fail("unknown admin action %q", action)
		}
		return err
	})
}

func (pl *player) inspect(s object) {
	var name string
	mustField(pl.t, s, "name", &name)
	var want map[string]json.RawMessage
	mustField(pl.t, s, "expect", &want)
	end := time.Now().Add(pl.wait)
	for {
		var got *pb.Protector
		pl.retrying(func(ctx context.Context) error {
			resp, err := pl.api.GetProtector(ctx, &pb.GetProtectorRequest{Name: name})
			got = resp.GetProtector()
			return err
		})
		mismatch := inspectMismatch(pl, got, want)
		if mismatch == "" {
			return
		}
		if time.Now().After(end) {
			pl.fail("%s", mismatch)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a synchronisation
	}
}
