package circuit

import (
	"errors"
	"fmt"
	"time"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// ErrRejected matches (with errors.Is) every *RejectedError: the protector did not let
// the call through, so it did not run.
var ErrRejected = errors.New("circuit: call rejected")

// ErrClosed is returned by a Protector or Client used after Client.Close.
var ErrClosed = errors.New("circuit: client closed")

// ErrPermitResolved is returned by a Permit's second Success, Failure or Ignore: a
// permit is reported exactly once.
var ErrPermitResolved = errors.New("circuit: permit already resolved")

// ErrRetryLimit matches (with errors.Is) every *RetryLimitError.
var ErrRetryLimit = errors.New("circuit: retry limit reached")

// RejectedError is a call the protector did not let through, with what the caller needs
// to decide what next: the status and when asking again may succeed.
type RejectedError struct {
	// Name is the protector's name.
	Name string
	// Status is the protector's status when it rejected.
	Status pb.Status
	// Reason is why: OPEN, TRIALS_EXHAUSTED or FORCED_OPEN (with Fallback, the local reason).
	Reason pb.DecisionReason
	// RetryAfter is when asking again may succeed; 0 when unknown.
	RetryAfter time.Duration
	// Fallback is true when the daemon could not be asked and the declared fallback decided.
	Fallback bool
}

func (e *RejectedError) Error() string {
	s := fmt.Sprintf("circuit: protector %q rejected the call (%s, status %s", e.Name, e.Reason, e.Status)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(", retry after %s", e.RetryAfter)
	}
	if e.Fallback {
		s += ", by the fallback"
	}
	return s + ")"
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// RetryLimitError is a Retry giving up: Attempts attempts were made and Last is the
// error of the final one (errors.Is and errors.As see through to it).
type RetryLimitError struct {
	Attempts int
	Last     error
}

func (e *RetryLimitError) Error() string {
	return fmt.Sprintf("circuit: gave up after %d attempts: %v", e.Attempts, e.Last)
}

// Is makes errors.Is(err, ErrRetryLimit) true.
func (e *RetryLimitError) Is(target error) bool { return target == ErrRetryLimit }

// Unwrap gives the last attempt's error.
func (e *RetryLimitError) Unwrap() error { return e.Last }
