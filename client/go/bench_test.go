package circuit_test

// Decisions per second, cached and uncached, against a real daemon:
//
//	CIRCUITD_BIN=../../target/release/circuitd go test -run '^$' -bench . -benchtime 3s
//
// Each reports decisions/s (b.N calls over the elapsed time, every goroutine together).
// Nothing asserts a figure: BENCHMARKS.md records them.

import (
	"context"
	"testing"
	"time"

	circuit "example.invalid/resilient-circuit/client/go"
	"example.invalid/resilient-circuit/client/go/internal/daemontest"
)

func benchProtector(b *testing.B, cached, session bool) *circuit.Protector {
	d := daemontest.Start(b)
	c, err := circuit.Dial(d.Addr, circuit.WithAcquireDeadline(time.Second), circuit.WithSession(session))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	p, err := c.Protector(context.Background(), "go-bench", circuit.WithCached(cached),
		circuit.WithPolicy(circuit.FailureLimit(50, 100)))
	if err != nil {
		b.Fatal(err)
	}
	if cached {
		waitFor(b, "a cached decision", func() bool {
			permit, err := p.Acquire(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			_ = permit.Ignore(context.Background())
			return permit.Source() == circuit.SourceCache
		})
	}
	return p
}

func benchExecute(b *testing.B, cached, session bool, parallelism int) {
	p := benchProtector(b, cached, session)
	b.SetParallelism(parallelism)
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Execute(ctx, ok); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
}

// BenchmarkCachedExecute: decided in the process while CLOSED, successes batched.
func BenchmarkCachedExecute(b *testing.B) { benchExecute(b, true, false, 1) }

// BenchmarkUncachedExecute: every call an Acquire and a Report to the daemon as unary
// calls, from 16 goroutines per core (a round trip waits on the network, not the CPU).
func BenchmarkUncachedExecute(b *testing.B) { benchExecute(b, false, false, 16) }

// BenchmarkUncachedSessionExecute: the same on the Session stream (the default).
func BenchmarkUncachedSessionExecute(b *testing.B) { benchExecute(b, false, true, 16) }
