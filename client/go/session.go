package circuit

// Acquire and Report pipelined on one Session stream per replica (the default;
// WithSession(false) sends unary calls instead).
//
// Design note. A stream is opened on a replica's first call and shared by every
// protector of the client. Requests carry ids the client picks; one goroutine reads the
// answers and hands each to its caller's channel. A caller that gives up (its context
// ended) forgets its id, and the answer is dropped when it comes. When the stream ends
// (the daemon stopped, the connection broke) every waiting caller gets UNAVAILABLE, as
// the unary call would have said, so the link's replica rotation and backoff and the
// fallbacks work as they do for unary calls; the next call opens a new stream. A
// request's own error comes back as the status the unary call would have had.

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

type session struct {
	stream grpc.BidiStreamingClient[pb.SessionRequest, pb.SessionResponse]
	cancel context.CancelFunc
	sendMu sync.Mutex // one Send at a time, as grpc wants

	mu      sync.Mutex
	pending map[uint64]chan *pb.SessionResponse
	nextID  uint64
	err     error         // why the stream ended; set once, with done closed
	done    chan struct{} // closed when the stream ended
}

// sessionOf is the replica's live stream, opened now if there is none.
func (r *replica) sessionOf(c *Client) (*session, error) {
	r.sessionMu.Lock()
	defer r.sessionMu.Unlock()
	if s := r.session; s != nil {
		select {
		case <-s.done:
		default:
			return s, nil
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	stream, err := r.api.Session(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &session{stream: stream, cancel: cancel, pending: map[uint64]chan *pb.SessionResponse{}, done: make(chan struct{})}
	go s.receive()
	r.session = s
	return s, nil
}

func (s *session) receive() {
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			s.end(err)
			return
		}
		s.mu.Lock()
		ch := s.pending[resp.Id]
		delete(s.pending, resp.Id)
		s.mu.Unlock()
		if ch != nil {
			ch <- resp // buffered: the receiver never waits on a caller
		}
	}
}

// end records why the stream ended (as UNAVAILABLE: the replica could not answer) and
// wakes every caller still waiting.
func (s *session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	switch {
	case status.Code(err) == codes.Unimplemented:
		s.err = err // a daemon without Session: the caller turns to unary calls
	case errors.Is(err, io.EOF):
		s.err = status.Error(codes.Unavailable, "session stream ended by the daemon")
	default:
		s.err = status.Errorf(codes.Unavailable, "session stream ended: %v", err)
	}
	close(s.done)
	s.cancel()
}

// ask sends one request and waits for its answer, the caller's context or the end of
// the stream, whichever comes first.
func (s *session) ask(ctx context.Context, req *pb.SessionRequest) (*pb.SessionResponse, error) {
	ch := make(chan *pb.SessionResponse, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, s.err
	}
	s.nextID++
	req.Id = s.nextID
	s.pending[req.Id] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, req.Id)
		s.mu.Unlock()
	}
	s.sendMu.Lock()
	err := s.stream.Send(req)
	s.sendMu.Unlock()
	if err != nil {
		forget()
		s.end(err)
		return nil, s.err
	}
	select {
	case resp := <-ch:
		if e := resp.GetError(); e != nil {
			return nil, status.Error(codes.Code(e.Code), e.Message)
		}
		return resp, nil
	case <-s.done:
		forget()
		return nil, s.err
	case <-ctx.Done():
		forget()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// No answer within the request timeout: the stream is taken for dead (a
			// frozen daemon, a connection gone silent), and the next call opens another.
			s.end(ctx.Err())
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// onSession asks req on the replica's Session stream; ok is false when the replica is
// to be asked with a unary call instead (WithSession(false), or a daemon that answered
// the stream UNIMPLEMENTED: it is not asked for one again).
func (c *Client) onSession(ctx context.Context, r *replica, req *pb.SessionRequest) (resp *pb.SessionResponse, ok bool, err error) {
	if !c.cfg.session || r.unary.Load() {
		return nil, false, nil
	}
	s, err := r.sessionOf(c)
	if err == nil {
		resp, err = s.ask(ctx, req)
	}
	if status.Code(err) == codes.Unimplemented && resp == nil {
		r.unary.Store(true)
		return nil, false, nil
	}
	return resp, true, err
}

// acquireOn asks one replica, on its Session stream or unary.
func (c *Client) acquireOn(ctx context.Context, r *replica, name string) (*pb.AcquireResponse, error) {
	req := &pb.AcquireRequest{Name: name}
	resp, ok, err := c.onSession(ctx, r, &pb.SessionRequest{Request: &pb.SessionRequest_Acquire{Acquire: req}})
	if !ok {
		return r.api.Acquire(ctx, req)
	}
	return resp.GetAcquire(), err
}

// reportOn reports to one replica, on its Session stream or unary.
func (c *Client) reportOn(ctx context.Context, r *replica, req *pb.ReportRequest) (*pb.ReportResponse, error) {
	resp, ok, err := c.onSession(ctx, r, &pb.SessionRequest{Request: &pb.SessionRequest_Report{Report: req}})
	if !ok {
		return r.api.Report(ctx, req)
	}
	return resp.GetReport(), err
}
