package circuit

// Cached mode: decisions answered locally while the Watch says CLOSED.
//
// Design note. The view (watch.go) is an immutable value behind an atomic pointer, so a
// decision is one pointer load and a few field reads. A success is one atomic add on one
// of 16 cache-line-padded shards of the view's generation's counters (picked at random,
// so goroutines on different cores rarely share a line); nothing on the hot path takes a
// lock or allocates. The batcher sends what the shards counted every batch interval in
// one ReportBatch, one OutcomeBatch per generation, so the daemon judges each count
// against the generation it was admitted in (stale once that ended). A failure (and a
// slow call, whose duration the daemon needs) is queued and flushed by its caller at
// once, so a trip is known before the caller goes on, and the answer updates the view.
// Counters of an ended generation are retired and flushed a few more times; an increment
// that lands after its last flush is lost, which costs nothing: it would be stale.

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

const (
	counterShards  = 16
	maxPending     = 4096 // queued outcomes beyond this are counted lost, not kept
	retiredFlushes = 4
)

type counters struct {
	generation uint64
	shards     [counterShards]struct {
		n atomic.Uint64
		_ [56]byte // one shard per cache line
	}
}

func (c *counters) add() { c.shards[rand.Uint32()%counterShards].n.Add(1) }

func (c *counters) take() uint64 {
	var sum uint64
	for i := range c.shards {
		sum += c.shards[i].n.Swap(0)
	}
	return sum
}

type pendingOutcome struct {
	generation uint64
	outcome    pb.Outcome
	duration   time.Duration
}

type retired struct {
	c       *counters
	flushes int
}

type cache struct {
	p       *Protector
	mu      sync.Mutex
	pending []pendingOutcome
	retired []retired
	dropped uint64
	flushMu sync.Mutex // one batch in flight at a time, so batches stay in order
	wake    chan struct{}
}

func newCache(p *Protector) *cache { return &cache{p: p, wake: make(chan struct{}, 1)} }

// cacheView is the view to decide from locally, or nil when the daemon must be asked.
func (p *Protector) cacheView() *view {
	if p.cache == nil {
		return nil
	}
	v := p.watch.view.Load()
	if v == nil || !v.live || v.status != pb.Status_STATUS_CLOSED || v.counters == nil ||
		(v.override != pb.OverrideKind_OVERRIDE_KIND_NONE && v.override != pb.OverrideKind_OVERRIDE_KIND_UNSPECIFIED) {
		return nil
	}
	return v
}

// dropLife forgets what was counted and queued for the protector's previous life (it
// was deleted, or the daemon lost it): a new life's generations start again at 1, so
// sending them would count old outcomes in the new life. They are counted lost. The
// caller holds the view's lock and gives the counters it replaces.
func (c *cache) dropLife(old *counters) {
	c.mu.Lock()
	lost := uint64(len(c.pending)) + c.dropped
	for _, r := range c.retired {
		lost += r.c.take()
	}
	c.pending, c.retired, c.dropped = nil, nil, 0
	c.mu.Unlock()
	if old != nil {
		lost += old.take()
	}
	c.p.c.stats.batchedLost.Add(lost)
}

// retire keeps an ended generation's counters for a few more flushes.
func (c *cache) retire(old *counters) {
	c.mu.Lock()
	c.retired = append(c.retired, retired{c: old})
	c.mu.Unlock()
}

// record takes the outcome of a locally admitted call.
func (c *cache) record(ctx context.Context, v *view, outcome pb.Outcome, d time.Duration) {
	switch {
	case outcome == pb.Outcome_OUTCOME_IGNORED:
		return // a CLOSED permit has nothing to release
	case outcome == pb.Outcome_OUTCOME_SUCCESS && (v.slow == 0 || d < v.slow):
		v.counters.add()
		return
	}
	c.mu.Lock()
	if len(c.pending) < maxPending {
		c.pending = append(c.pending, pendingOutcome{v.generation, outcome, d})
	} else {
		c.dropped++
	}
	c.mu.Unlock()
	if outcome == pb.Outcome_OUTCOME_FAILURE {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.p.c.cfg.requestTimeout)
		defer cancel()
		c.flush(rctx)
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *cache) batcher() {
	defer c.p.c.wg.Done()
	ticker := time.NewTicker(c.p.c.cfg.batchInterval)
	defer ticker.Stop()
	for {
		select {
		case <-c.p.c.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), c.p.c.cfg.requestTimeout)
			c.flush(ctx)
			cancel()
			return
		case <-ticker.C:
		case <-c.wake:
		}
		ctx, cancel := context.WithTimeout(c.p.c.ctx, c.p.c.cfg.requestTimeout)
		c.flush(ctx)
		cancel()
	}
}

// flush sends everything counted and queued in one ReportBatch.
func (c *cache) flush(ctx context.Context) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	byGen := map[uint64]*pb.OutcomeBatch{}
	var order []*pb.OutcomeBatch
	batchOf := func(gen uint64) *pb.OutcomeBatch {
		b := byGen[gen]
		if b == nil {
			b = &pb.OutcomeBatch{Name: c.p.name, Generation: gen}
			byGen[gen] = b
			order = append(order, b)
		}
		return b
	}
	c.mu.Lock()
	var sources []*counters
	kept := c.retired[:0]
	for _, r := range c.retired {
		sources = append(sources, r.c)
		if r.flushes++; r.flushes < retiredFlushes {
			kept = append(kept, r)
		}
	}
	c.retired = kept
	pending := c.pending
	c.pending = nil
	dropped := c.dropped
	c.dropped = 0
	c.mu.Unlock()
	c.p.c.stats.batchedLost.Add(dropped)
	if v := c.p.watch.view.Load(); v != nil && v.counters != nil {
		sources = append(sources, v.counters)
	}
	total := uint64(0)
	for _, s := range sources {
		if n := s.take(); n > 0 {
			batchOf(s.generation).Successes += n
			total += n
		}
	}
	for _, o := range pending {
		b := batchOf(o.generation)
		b.Outcomes = append(b.Outcomes, o.outcome)
		b.Durations = append(b.Durations, durationpb.New(min(o.duration, time.Hour)))
		total++
	}
	if total == 0 {
		return
	}
	resp, err := call(ctx, c.p.c, func(ctx context.Context, r *replica) (*pb.ReportBatchResponse, error) {
		return r.api.ReportBatch(ctx, &pb.ReportBatchRequest{Batches: order})
	})
	if err != nil {
		c.p.c.stats.batchedLost.Add(total)
		return
	}
	for i, r := range resp.Results {
		if r.Error != nil {
			// The whole batch failed (the protector is gone, most likely): its outcomes
			// are lost, and the next call to the daemon ensures the protector again.
			if i < len(order) {
				c.p.c.stats.batchedLost.Add(order[i].Successes + uint64(len(order[i].Outcomes)))
			}
			c.p.ensured.Store(false)
			continue
		}
		c.p.c.stats.batchedAccepted.Add(r.Accepted)
		c.p.c.stats.batchedStale.Add(r.Stale)
		if r.Transition != nil {
			c.p.learn(r.Transition)
		} else {
			c.p.observe(r.Status, r.Generation)
		}
	}
}
