package circuit

import (
	"testing"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

const (
	closed   = pb.Status_STATUS_CLOSED
	open     = pb.Status_STATUS_OPEN
	halfOpen = pb.Status_STATUS_HALF_OPEN
)

func TestNotifierFiresEachGenerationOnce(t *testing.T) {
	var got []StatusChange
	n := &notifier{name: "n", callbacks: []func(StatusChange){func(c StatusChange) { got = append(got, c) }}}
	tr := func(from, to pb.Status, gen uint64) *pb.Transition {
		return &pb.Transition{From: from, To: to, Generation: gen}
	}
	n.snapshot(&pb.Protector{Status: closed, Generation: 1}) // the first word: nothing fires
	n.transition(tr(closed, open, 2))
	n.transition(tr(closed, open, 2)) // the Watch's copy of a report's answer
	n.transition(tr(halfOpen, open, 4))
	n.transition(tr(open, halfOpen, 3)) // late, still fires once
	n.transition(tr(open, halfOpen, 3))
	n.snapshot(&pb.Protector{Status: open, Generation: 4})   // nothing new
	n.snapshot(&pb.Protector{Status: closed, Generation: 6}) // missed: a synthetic change
	n.transition(tr(halfOpen, closed, 6))                    // its real copy: already fired
	n.snapshot(&pb.Protector{Status: open, Generation: 4})   // older news: ignored
	n.newLife()                                              // deleted, created again
	n.snapshot(&pb.Protector{Status: open, Generation: 1})   // differs: a synthetic change
	n.transition(tr(closed, open, 2))                        // fires again in the new life
	want := []struct {
		from, to pb.Status
		gen      uint64
	}{{closed, open, 2}, {halfOpen, open, 4}, {open, halfOpen, 3}, {open, closed, 6}, {closed, open, 1}, {closed, open, 2}}
	if len(got) != len(want) {
		t.Fatalf("fired %+v", got)
	}
	for i, w := range want {
		if got[i].From != w.from || got[i].To != w.to || got[i].Generation != w.gen {
			t.Fatalf("change %d: %+v, want %+v", i, got[i], w)
		}
	}
}
