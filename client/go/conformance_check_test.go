package circuit_test

// The conformance player's checks: expectations compared with answers, and the strict
// reading of the vectors' JSON.

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	circuit "example.invalid/resilient-circuit/client/go"
	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

func inspectMismatch(pl *player, got *pb.Protector, want map[string]json.RawMessage) string {
	c := got.GetCounters()
	numbers := map[string]uint64{
		"generation": got.Generation, "trials_in_flight": uint64(got.TrialsInFlight),
		"consecutive_failures": got.ConsecutiveFailures, "admitted": c.GetAdmitted(), "rejected": c.GetRejected(),
		"successes": c.GetSuccesses(), "failures": c.GetFailures(), "ignored": c.GetIgnored(),
		"stale_reports": c.GetStaleReports(), "expired_permits": c.GetExpiredPermits(),
	}
	var out []string
	for _, key := range slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}) {
		raw := want[key]
		if key == "status" {
			var st string
			_ = json.Unmarshal(raw, &st)
			if g := trimEnum(got.Status.String(), "STATUS_"); g != st {
				out = append(out, fmt.Sprintf("status %s, want %s", g, st))
			}
			continue
		}
		n, ok := numbers[key]
		if !ok {
			pl.fail("unknown inspect field %q", key)
		}
		var w uint64
		_ = json.Unmarshal(raw, &w)
		if n != w {
			out = append(out, fmt.Sprintf("%s %d, want %d", key, n, w))
		}
	}
	return strings.Join(out, "; ")
}

type acquireExpect struct {
	Decision   string `json:"decision"`
	Trial      *bool  `json:"trial"`
	Source     string `json:"source"`
	Reason     string `json:"reason"`
	Status     string `json:"status"`
	Fallback   *bool  `json:"fallback"`
	RetryAfter *bool  `json:"retry_after"`
}

// mismatch says how an Acquire's answer differs from the expectation ("" when it does not).
func (w acquireExpect) mismatch(permit *circuit.Permit, err error) string {
	var rejected *circuit.RejectedError
	switch {
	case err != nil && !errors.As(err, &rejected):
		return fmt.Sprintf("acquire failed: %v", err)
	case w.Decision == "admitted" && permit == nil:
		return fmt.Sprintf("rejected (%v), want admitted", err)
	case w.Decision == "rejected" && rejected == nil:
		return fmt.Sprintf("admitted (source %s), want rejected", permit.Source())
	}
	if permit != nil {
		if w.Trial != nil && permit.Trial() != *w.Trial {
			return fmt.Sprintf("trial %v, want %v", permit.Trial(), *w.Trial)
		}
		if w.Source != "" && permit.Source().String() != w.Source {
			return fmt.Sprintf("source %s, want %s", permit.Source(), w.Source)
		}
		return ""
	}
	if r := trimEnum(rejected.Reason.String(), "DECISION_REASON_"); w.Reason != "" && r != w.Reason {
		return fmt.Sprintf("reason %s, want %s", r, w.Reason)
	}
	if st := trimEnum(rejected.Status.String(), "STATUS_"); w.Status != "" && st != w.Status {
		return fmt.Sprintf("status %s, want %s", st, w.Status)
	}
	if w.Fallback != nil && rejected.Fallback != *w.Fallback {
		return fmt.Sprintf("fallback %v, want %v", rejected.Fallback, *w.Fallback)
	}
	if w.RetryAfter != nil && (rejected.RetryAfter > 0) != *w.RetryAfter {
		return fmt.Sprintf("retry_after %s, want one: %v", rejected.RetryAfter, *w.RetryAfter)
	}
	return ""
}

func trimEnum(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

// checkKeys: unknown keys are errors (a typo must not turn a check off); `description`
// says what a vector shows.
func checkKeys(t *testing.T, what string, raw any, allowed ...string) {
	t.Helper()
	var obj object
	switch r := raw.(type) {
	case object:
		obj = r
	case json.RawMessage:
		if err := json.Unmarshal(r, &obj); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for k := range obj {
		if k != "description" && !slices.Contains(allowed, k) {
			t.Fatalf("%s: unknown key %q", what, k)
		}
	}
}

func mustField(t *testing.T, obj object, key string, into any) {
	t.Helper()
	raw, ok := obj[key]
	if !ok {
		t.Fatalf("missing key %q", key)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
}

func optField(t *testing.T, obj object, key string, into any) {
	t.Helper()
	if raw, ok := obj[key]; ok {
		if err := json.Unmarshal(raw, into); err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
	}
}
