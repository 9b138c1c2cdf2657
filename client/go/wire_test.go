package circuit_test

// What travels on the wire, checked on a fake ProtectorService: durations (the daemon
// this was written against does not judge them yet, so its answers cannot show them),
// and a trial permit that came too late, given back.

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	circuit "example.invalid/resilient-circuit/client/go"
	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// recorder answers as a daemon holding one CLOSED protector with a slow-call rule, and
// hands every Report and ReportBatch to the test. It has no Session (UNIMPLEMENTED), so
// these tests also show the client turning to unary calls on such a daemon.
type recorder struct {
	pb.UnimplementedProtectorServiceServer
	reports chan *pb.ReportRequest
	batches chan *pb.ReportBatchRequest
	// When set, Acquire waits for it and answers a trial permit.
	gate chan struct{}
}

func (r *recorder) protector(name string) *pb.Protector {
	return &pb.Protector{Name: name, Status: pb.Status_STATUS_CLOSED, Generation: 1,
		Policy: &pb.Policy{SlowCallDuration: durationpb.New(slowCall), SlowCallLimit: &pb.Fraction{Numerator: 1, Denominator: 2}}}
}

func (r *recorder) EnsureProtector(_ context.Context, req *pb.EnsureProtectorRequest) (*pb.EnsureProtectorResponse, error) {
	return &pb.EnsureProtectorResponse{Protector: r.protector(req.Name), PolicyMatches: true}, nil
}

func (r *recorder) Acquire(context.Context, *pb.AcquireRequest) (*pb.AcquireResponse, error) {
	if r.gate != nil {
		<-r.gate
		return &pb.AcquireResponse{Decision: pb.Decision_DECISION_ADMITTED, Status: pb.Status_STATUS_HALF_OPEN,
			Permit: &pb.Permit{Generation: 3, Id: 7}, Reason: pb.DecisionReason_DECISION_REASON_TRIAL}, nil
	}
	return &pb.AcquireResponse{Decision: pb.Decision_DECISION_ADMITTED, Status: pb.Status_STATUS_CLOSED,
		Permit: &pb.Permit{Generation: 1}, Reason: pb.DecisionReason_DECISION_REASON_CLOSED}, nil
}

func (r *recorder) Report(_ context.Context, req *pb.ReportRequest) (*pb.ReportResponse, error) {
	r.reports <- req
	return &pb.ReportResponse{Accepted: true, Status: pb.Status_STATUS_CLOSED}, nil
}

func (r *recorder) ReportBatch(_ context.Context, req *pb.ReportBatchRequest) (*pb.ReportBatchResponse, error) {
	r.batches <- req
	return &pb.ReportBatchResponse{Results: []*pb.OutcomeBatchResult{{Name: req.Batches[0].Name, Status: pb.Status_STATUS_CLOSED, Generation: 1}}}, nil
}

func (r *recorder) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.WatchEvent]) error {
	name := req.GetNames().GetNames()[0]
	_ = stream.Send(&pb.WatchEvent{Revision: 1, Event: &pb.WatchEvent_Snapshot{Snapshot: r.protector(name)}})
	_ = stream.Send(&pb.WatchEvent{Revision: 1, Event: &pb.WatchEvent_Synced{Synced: &pb.Synced{Epoch: 7}}})
	<-stream.Context().Done()
	return nil
}

func fakeDaemon(t *testing.T, gated ...bool) (string, *recorder) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{reports: make(chan *pb.ReportRequest, 16), batches: make(chan *pb.ReportBatchRequest, 16)}
	if len(gated) > 0 && gated[0] {
		r.gate = make(chan struct{})
	}
	srv := grpc.NewServer()
	pb.RegisterProtectorServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), r
}

// slowCall is the fake protector's slow-call threshold: far above what a call that does
// nothing takes, even on a loaded machine.
const slowCall = 50 * time.Millisecond

// slowWork stands for a protected call that takes at least slowCall.
func slowWork(context.Context) error {
	time.Sleep(slowCall)
	return nil
}

func TestExecuteReportsTheCallsDuration(t *testing.T) {
	addr, r := fakeDaemon(t)
	c := dial(t, addr)
	p := protector(t, c, "go-duration")
	if err := p.Execute(context.Background(), slowWork); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-r.reports:
		if req.Duration == nil || req.Duration.AsDuration() < slowCall || req.Outcome != pb.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("report %v: want a SUCCESS lasting at least %s", req, slowCall)
		}
	case <-time.After(deadline):
		t.Fatal("no report")
	}
}

func TestCachedModeListsSlowCallsWithTheirDurations(t *testing.T) {
	addr, r := fakeDaemon(t)
	c := dial(t, addr)
	p := protector(t, c, "go-slow", circuit.WithCached(true))
	waitFor(t, "the Watch to go live", func() bool { return p.State().Synced })
	ctx := context.Background()
	if err := p.Execute(ctx, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := p.Execute(ctx, slowWork); err != nil {
		t.Fatal(err)
	}
	var fast, slow uint64
	for fast+slow < 2 {
		select {
		case req := <-r.batches:
			b := req.Batches[0]
			fast += b.Successes
			for i, o := range b.Outcomes {
				if o != pb.Outcome_OUTCOME_SUCCESS || i >= len(b.Durations) || b.Durations[i].AsDuration() < slowCall {
					t.Fatalf("batch %v: want the slow call listed with its duration", b)
				}
				slow++
			}
		case <-time.After(deadline):
			t.Fatalf("no batch; %d fast and %d slow so far", fast, slow)
		}
	}
	if fast != 1 || slow != 1 {
		t.Fatalf("%d counted, %d listed: want 1 and 1", fast, slow)
	}
}

// An answer that comes after the acquire deadline is not lost: the fallback decided the
// call, and the trial permit the daemon handed out meanwhile is given back at once
// (IGNORED) rather than left to expire and count as a FAILURE.
func TestALateTrialPermitIsGivenBack(t *testing.T) {
	addr, r := fakeDaemon(t, true)
	c := dial(t, addr, circuit.WithAcquireDeadline(50*time.Millisecond))
	p := protector(t, c, "go-late", circuit.WithFallback(circuit.FallbackAllow))
	permit, err := p.Acquire(context.Background())
	if err != nil || permit.Source() != circuit.SourceFallback {
		t.Fatalf("want the fallback's permit past the deadline, got %v %v", permit, err)
	}
	close(r.gate) // the daemon answers now, too late
	select {
	case req := <-r.reports:
		if req.Outcome != pb.Outcome_OUTCOME_IGNORED || req.Permit.GetId() != 7 || req.Permit.GetGeneration() != 3 {
			t.Fatalf("want trial 7 of generation 3 given back IGNORED, got %v", req)
		}
	case <-time.After(deadline):
		t.Fatal("the late trial permit was not given back")
	}
}
