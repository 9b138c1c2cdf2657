package circuit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	circuit "example.invalid/resilient-circuit/client/go"
	"example.invalid/resilient-circuit/client/go/internal/daemontest"
)

func TestTokenTravelsOnEveryCall(t *testing.T) {
	const token = "go-client-test-token-0123456789abcdef"
	sum := sha256.Sum256([]byte(token))
	file := filepath.Join(t.TempDir(), "tokens.toml")
	table := fmt.Sprintf("[[token]]\nname = \"go-app\"\nsha256 = \"%s\"\nrole = \"data\"\n", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(file, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, "--tokens", file)
	ctx := context.Background()

	c := dial(t, d.Addr, circuit.WithToken(token))
	p := protector(t, c, "go-token", circuit.WithCached(true))
	if err := p.Execute(ctx, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// The Watch carries it too: the cached protector goes live.
	waitFor(t, "the Watch to go live", func() bool { return p.State().Synced })

	// Without the token the daemon refuses: an error, not a fallback's decision.
	anon := dial(t, d.Addr)
	_, err := anon.Protector(ctx, "go-token-anon")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("want UNAUTHENTICATED, got %v", err)
	}
	if _, err := circuit.Dial(d.Addr, circuit.WithToken("bad\ntoken")); err == nil {
		t.Fatal("a token that cannot travel in a header was accepted")
	}
}

func TestReplicasTheFirstDeadTheNextAnswers(t *testing.T) {
	dead := daemontest.Start(t)
	deadAddr := dead.Addr
	if err := dead.Stop(); err != nil {
		t.Fatal(err)
	}
	alive := daemontest.Start(t)
	c := dial(t, deadAddr+","+alive.Addr)
	ctx := context.Background()
	p := protector(t, c, "go-replicas")
	permit, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if permit.Source() != circuit.SourceDaemon {
		t.Fatalf("want the live replica to decide, got %s", permit.Source())
	}
	if err := permit.Success(ctx); err != nil {
		t.Fatal(err)
	}
	if got := inspect(t, alive.Addr, "go-replicas").Counters.Successes; got != 1 {
		t.Fatalf("the live replica counted %d successes", got)
	}
}

func TestCancelledCallerIsNotAFailure(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.Addr)
	p := protector(t, c, "go-cancel", circuit.WithPolicy(circuit.FailureLimit(1, 1)))
	ctx, cancel := context.WithCancel(context.Background())
	err := p.Execute(ctx, func(ctx context.Context) error {
		cancel()
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want the caller's cancellation, got %v", err)
	}
	got := inspect(t, d.Addr, "go-cancel")
	if got.Counters.Failures != 0 || got.Counters.Ignored != 1 {
		t.Fatalf("counters %+v", got.Counters)
	}
	if _, err := p.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("an ended context: want context.Canceled, got %v", err)
	}
}

// A daemon restarted without its state (in memory) is another history: the Watch gets
// RESYNC and a snapshot without the protector, the next call creates it again, and the
// cached protector decides locally again once the new protector is on its stream.
func TestCachedProtectorSurvivesADaemonThatLostItsState(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.Addr)
	p := protector(t, c, "go-amnesia", circuit.WithCached(true), circuit.WithFallback(circuit.FallbackAllow))
	ctx := context.Background()
	untilSource := func(want circuit.Source) {
		t.Helper()
		waitFor(t, "a decision by "+want.String(), func() bool {
			permit, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = permit.Ignore(ctx)
			return permit.Source() == want
		})
	}
	untilSource(circuit.SourceCache)
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	untilSource(circuit.SourceDaemon) // created again by that call
	untilSource(circuit.SourceCache)
	if err := p.Execute(ctx, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the success to reach the new daemon", func() bool {
		return inspect(t, d.Addr, "go-amnesia").Counters.Successes == 1
	})
}

func TestDialValidatesItsOptions(t *testing.T) {
	for _, tc := range []struct {
		addr string
		opt  circuit.Option
	}{
		{"127.0.0.1", nil},
		{"http://127.0.0.1:1/x", nil},
		{"127.0.0.1:1", circuit.WithAcquireDeadline(0)},
		{"127.0.0.1:1", circuit.WithRequestTimeout(-time.Second)},
		{"127.0.0.1:1", circuit.WithReconnectBackoff(time.Second, time.Millisecond)},
		{"127.0.0.1:1", circuit.WithBatchInterval(0)},
	} {
		opts := []circuit.Option{}
		if tc.opt != nil {
			opts = append(opts, tc.opt)
		}
		if c, err := circuit.Dial(tc.addr, opts...); err == nil {
			c.Close()
			t.Fatalf("Dial(%q, ...) accepted an invalid setting", tc.addr)
		}
	}
}
