package circuit_test

import (
	"context"
	"errors"
	"log"
	"time"

	circuit "example.invalid/resilient-circuit/client/go"
)

func charge(context.Context, int) error { return nil }

// One step: Execute acquires, runs and reports, with the call's duration.
func ExampleProtector_Execute() {
	ctx := context.Background()
	client, err := circuit.Dial("127.0.0.1:50051") // a daemon that is down does not fail this
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	payments, err := client.Protector(ctx, "payments", circuit.WithFallback(circuit.FallbackLocal),
		circuit.WithPolicy(circuit.Cooldown(30*time.Second), circuit.FailureLimit(3, 10)),
		circuit.OnStatusChange(func(c circuit.StatusChange) { log.Printf("%s: %s -> %s", c.Name, c.From, c.To) }))
	if err != nil {
		log.Fatal(err)
	}
	err = payments.Execute(ctx, func(ctx context.Context) error { return charge(ctx, 42) })
	var rejected *circuit.RejectedError
	if errors.As(err, &rejected) {
		log.Printf("not called; retry after %s", rejected.RetryAfter)
	}
}

// Two steps: a permit, resolved exactly once.
func ExampleProtector_Acquire() {
	ctx := context.Background()
	client, _ := circuit.Dial("10.0.0.1:50051,10.0.0.2:50051", circuit.WithToken("…"))
	defer client.Close()
	payments, _ := client.Protector(ctx, "payments", circuit.WithCached(true))
	permit, err := payments.Acquire(ctx)
	if err != nil {
		return // errors.Is(err, circuit.ErrRejected): not admitted
	}
	if charge(ctx, 43) == nil {
		_ = permit.Success(ctx)
	} else {
		_ = permit.Failure(ctx)
	}
}

// A retry outside a protector asks the protector again on every attempt, and stops at
// a rejection it cannot wait out.
func ExampleSafetyNet() {
	ctx := context.Background()
	client, _ := circuit.Dial("127.0.0.1:50051")
	defer client.Close()
	payments, _ := client.Protector(ctx, "payments")
	retry := circuit.NewRetry(circuit.MaxRetries(2),
		circuit.WithBackoff(circuit.ExponentialDelay{Min: 100 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}))
	err := circuit.SafetyNet(retry, payments).Execute(ctx, func(ctx context.Context) error { return charge(ctx, 44) })
	if errors.Is(err, circuit.ErrRetryLimit) {
		log.Print("gave up")
	}
}
