package circuit

// The Watch of one protector, the view it feeds and the notifier.
//
// Design note. One goroutine per protector holds a Watch stream on its name. It asks for
// PROGRESS at a third of the staleness bound and takes a stream silent for the whole
// bound for dead: the view is then not live (cached decisions stop) and the stream is
// reopened, on the next replica, with start_revision and start_epoch, so the daemon
// replays what was missed (or, from another history, answers RESYNC and a snapshot).
// Answers of the client's own calls feed the view too (observe), ordered by generation:
// a change never goes back to an older generation. Snapshots are held until SYNCED, which
// says whether they belong to another history (a new epoch, revisions going backwards,
// or COMPACTED on a resumed stream): then the protector starts a new life (startLife)
// before they apply. The notifier delivers each transition once, the first time any
// source shows its generation.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// view is what the client knows of its protector; immutable once published.
type view struct {
	status     pb.Status
	override   pb.OverrideKind
	generation uint64
	live       bool          // the Watch is synced and not stale
	slow       time.Duration // policy.slow_call_duration; 0 = no slow-call rule
	counters   *counters     // cached mode: this generation's successes
}

type watchState struct {
	mu       sync.Mutex // writers of view
	view     atomic.Pointer[view]
	revision uint64  // the Watch goroutine's own
	epoch    *uint64 // the Watch goroutine's own
	// The revision of the protector's current life's start (creation or deletion), under mu.
	lifeRevision uint64
}

// update publishes fn's change of the view; a new generation gets fresh counters.
func (p *Protector) update(fn func(*view)) {
	w := &p.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.view.Load()
	next := view{}
	if old != nil {
		next = *old
	}
	fn(&next)
	if p.cache != nil && (next.counters == nil || next.counters.generation != next.generation) {
		if next.counters != nil {
			p.cache.retire(next.counters)
		}
		next.counters = &counters{generation: next.generation}
	}
	w.view.Store(&next)
}

// newLife starts the protector's next life at revision rev (its deletion, or its
// creation again), once: a second word of the same change (the Watch's event and the
// answer to EnsureProtector) is not a new life. The view's status is unknown until the
// daemon says, and cached outcomes of the old life are dropped: the new life's
// generations start again at 1, so they would be counted in it.
func (p *Protector) newLife(rev uint64) { p.startLife(rev, false) }

// newHistory: the daemon's history started over (another epoch: it lost its state), so
// its revisions cannot be compared with ours; whatever the protector was is gone. The
// stream's snapshot, as of rev, says what it is now: a creation at or before rev is that
// life, not another one.
func (p *Protector) newHistory(rev uint64) { p.startLife(rev, true) }

func (p *Protector) startLife(rev uint64, force bool) {
	w := &p.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if rev <= w.lifeRevision && !force {
		return
	}
	w.lifeRevision = rev
	next := view{}
	if old := w.view.Load(); old != nil {
		next = *old
		if p.cache != nil {
			p.cache.dropLife(old.counters)
		}
	}
	p.notifier.newLife()
	// No counters until a status is known: update gives the next generation its own.
	next.status, next.generation, next.counters = pb.Status_STATUS_UNSPECIFIED, 0, nil
	w.view.Store(&next)
}

// observe takes a status and generation from an answer; older generations are ignored.
func (p *Protector) observe(status pb.Status, generation uint64) {
	if v := p.watch.view.Load(); v != nil && v.generation >= generation {
		return
	}
	p.update(func(v *view) {
		if generation > v.generation {
			v.status, v.generation = status, generation
		}
	})
}

func (p *Protector) fromProtector(pr *pb.Protector) {
	p.notifier.snapshot(pr)
	// An older generation is older news (a report's answer overtook the stream): a new
	// life starts from generation 0 (startLife), so its snapshot always applies.
	p.update(func(v *view) {
		if pr.Generation >= v.generation {
			v.status, v.generation = pr.Status, pr.Generation
		}
		v.override = pr.Override.GetKind()
		v.slow = 0
		if pr.Policy.GetSlowCallDuration() != nil {
			v.slow = pr.Policy.SlowCallDuration.AsDuration()
		}
	})
}

func (p *Protector) setLive(live bool) {
	if v := p.watch.view.Load(); v != nil && v.live == live {
		return
	}
	p.update(func(v *view) { v.live = live })
}

func (p *Protector) watchLoop() {
	defer p.c.wg.Done()
	attempt := 0
	for p.c.ctx.Err() == nil {
		synced := p.watchOnce()
		p.setLive(false)
		if synced {
			attempt = 0
		}
		// Capped exponential backoff with full jitter before the next replica.
		wait := backoffDelay(p.c.cfg.backoffInitial, p.c.cfg.backoffCap, attempt)
		attempt++
		p.c.link.next(p.c.link.current())
		select {
		case <-p.c.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// watchOnce runs one stream until it fails or goes stale; true if it reached SYNCED.
func (p *Protector) watchOnce() bool {
	ctx, cancel := context.WithCancel(p.c.ctx)
	defer cancel()
	staleness := p.staleness
	stale := time.AfterFunc(staleness, cancel)
	defer stale.Stop()
	req := &pb.WatchRequest{
		Filter:           &pb.WatchRequest_Names{Names: &pb.NameList{Names: []string{p.name}}},
		ProgressInterval: durationpb.New(max(staleness/3, 100*time.Millisecond)),
	}
	if p.watch.epoch != nil {
		req.StartRevision = proto.Uint64(p.watch.revision)
		req.StartEpoch = proto.Uint64(*p.watch.epoch)
	}
	replica := p.c.replicas[p.c.link.current()]
	stream, err := replica.api.Watch(ctx, req)
	if err != nil {
		return false
	}
	synced, renewed := false, false
	var snapshots []*pb.Protector
	for {
		ev, err := stream.Recv()
		if err != nil {
			return synced
		}
		stale.Reset(staleness)
		if r, ok := ev.Event.(*pb.WatchEvent_Resync); ok {
			// Revisions going backwards are another history; COMPACTED on a resumed
			// stream may be one (the protector may have lived and died meanwhile).
			renewed = renewed || ev.Revision < p.watch.revision ||
				r.Resync.Reason == pb.ResyncReason_RESYNC_REASON_COMPACTED
		}
		if ev.Revision > p.watch.revision {
			p.watch.revision = ev.Revision
		}
		switch e := ev.Event.(type) {
		case *pb.WatchEvent_Snapshot:
			// Held until SYNCED says which history it belongs to.
			snapshots = append(snapshots, e.Snapshot)
		case *pb.WatchEvent_Created:
			p.ensured.Store(true)
			p.newLife(ev.Revision)
			p.fromProtector(e.Created)
		case *pb.WatchEvent_Synced:
			epoch := e.Synced.Epoch
			if renewed || (p.watch.epoch != nil && *p.watch.epoch != epoch) {
				p.newHistory(ev.Revision)
				renewed = false
			}
			for _, s := range snapshots {
				p.fromProtector(s)
			}
			snapshots = nil
			p.watch.epoch = &epoch
			p.watch.revision = ev.Revision
			synced = true
			p.setLive(true)
		case *pb.WatchEvent_StatusChanged:
			p.learn(e.StatusChanged.Transition)
		case *pb.WatchEvent_Deleted:
			p.ensured.Store(false)
			p.newLife(ev.Revision)
		case *pb.WatchEvent_PolicyUpdated:
			p.adoptPolicy(e.PolicyUpdated.Policy)
			p.update(func(v *view) {
				v.slow = 0
				if d := e.PolicyUpdated.Policy.GetSlowCallDuration(); d != nil {
					v.slow = d.AsDuration()
				}
			})
		case *pb.WatchEvent_OverrideChanged:
			p.update(func(v *view) { v.override = e.OverrideChanged.Override.GetKind() })
		case *pb.WatchEvent_Resync:
			// Unknown until the snapshot says (none comes if the protector is gone).
			synced, snapshots = false, nil
			p.update(func(v *view) { v.live, v.status = false, pb.Status_STATUS_UNSPECIFIED })
		}
	}
}

// notifier delivers each status change once. A generation is unique within one life of
// a protector, so it keeps the generations fired above a floor and drops repeats; a
// transition that arrives late (the Watch lagging behind a report's answer) still fires,
// once. A snapshot that shows a newer generation with another status fires a synthetic
// change (reason UNSPECIFIED); an older one (a report's answer overtook the stream) is
// ignored. A new life (newLife) starts the generations again.
type notifier struct {
	name      string
	mu        sync.Mutex
	callbacks []func(StatusChange)
	known     bool
	status    pb.Status // as of gen, the newest generation known
	gen       uint64
	floor     uint64 // generations at or below it are past: never fired again
	fired     map[uint64]struct{}
}

const notifierKept = 64 // fired generations remembered above the floor

func (n *notifier) transition(t *pb.Transition) {
	n.deliver(StatusChange{Name: n.name, From: t.From, To: t.To, Reason: t.Reason, Generation: t.Generation})
}

// newLife: the protector was deleted or created again, or the daemon's history started
// over: generations start again, so none is past; the status known stays, and a snapshot
// of the new life that differs fires a synthetic change.
func (n *notifier) newLife() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen, n.floor, n.fired = 0, 0, map[uint64]struct{}{}
}

// reset starts a life known from a snapshot at generation gen.
func (n *notifier) reset(status pb.Status, gen uint64) {
	n.known, n.status, n.gen, n.floor, n.fired = true, status, gen, gen, map[uint64]struct{}{}
}

func (n *notifier) snapshot(pr *pb.Protector) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case !n.known:
		n.reset(pr.Status, pr.Generation)
	case pr.Generation > n.gen:
		from := n.status
		n.status, n.gen = pr.Status, pr.Generation
		if _, done := n.fired[pr.Generation]; !done && from != pr.Status {
			n.mark(pr.Generation)
			n.call(StatusChange{Name: n.name, From: from, To: pr.Status, Generation: pr.Generation})
		}
	}
}

func (n *notifier) deliver(c StatusChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.known {
		n.reset(c.From, c.Generation-1)
	}
	if _, done := n.fired[c.Generation]; done || c.Generation <= n.floor {
		return
	}
	n.mark(c.Generation)
	if c.Generation > n.gen {
		n.status, n.gen = c.To, c.Generation
	}
	n.call(c)
}

func (n *notifier) mark(gen uint64) {
	n.fired[gen] = struct{}{}
	if len(n.fired) > 2*notifierKept {
		n.floor = max(n.floor, n.gen-notifierKept)
		for g := range n.fired {
			if g <= n.floor {
				delete(n.fired, g)
			}
		}
	}
}

func (n *notifier) call(c StatusChange) {
	for _, fn := range n.callbacks {
		fn(c)
	}
}
