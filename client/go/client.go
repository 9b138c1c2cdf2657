// Package circuit is the Go client of circuitd, the daemon that holds the circuit
// protectors of a whole fleet.
//
// A protector is a circuit breaker shared by every process that names it: the daemon
// decides whether each call may go ahead (Acquire), learns how it went (Report) and
// announces every status change (Watch). A Client is one connection to the daemon (to any
// of its replicas, when given several addresses); a Protector acquires, runs and reports
// a call. When the daemon is down or slow, each Acquire still answers within its deadline
// (50 ms by default): the protector's declared Fallback decides (FallbackAllow,
// FallbackDeny, or FallbackLocal, an in-process machine running the daemon's rules).
//
// Layout:
//   - client.go: Client, Dial and its options, the link (which replica, the backoff);
//   - protector.go: Protector, its options, Acquire and Execute;
//   - permit.go: Permit and its reports, and the declared fallback's decisions, with
//     the LOCAL fallback's machine in machine.go;
//   - cached.go: cached mode, local decisions while CLOSED and batched outcomes;
//   - watch.go: the Watch stream that resumes from its revision, and the notifier;
//   - policy.go: PolicyOption for every Policy field; errors.go: the sentinel errors;
//   - retry.go: Retry, backoffs and SafetyNet, composed as Executors;
//   - circuitv1/: the generated stubs (generate.sh).
package circuit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// Defaults of the client's options, as in the Rust and Python clients.
const (
	DefaultAcquireDeadline = 50 * time.Millisecond
	DefaultRequestTimeout  = time.Second
	DefaultBackoffInitial  = 50 * time.Millisecond
	DefaultBackoffCap      = 5 * time.Second
	DefaultWatchStaleness  = 30 * time.Second
	DefaultBatchInterval   = 50 * time.Millisecond
)

type config struct {
	acquireDeadline time.Duration
	requestTimeout  time.Duration
	backoffInitial  time.Duration
	backoffCap      time.Duration
	watchStaleness  time.Duration
	batchInterval   time.Duration
	token           string
	tls             *tls.Config
	session         bool
}

// Option configures a Client.
type Option func(*config)

// WithAcquireDeadline: how long one Acquire may take before the fallback decides.
func WithAcquireDeadline(d time.Duration) Option { return func(c *config) { c.acquireDeadline = d } }

// WithRequestTimeout: how long a Report, EnsureProtector, ReportBatch or opening a
// Watch may take (default 1 s).
func WithRequestTimeout(d time.Duration) Option { return func(c *config) { c.requestTimeout = d } }

// WithReconnectBackoff: after every replica failed in turn, the link stays down (the
// fallbacks answer without the network) for a capped exponential, fully jittered delay
// from initial up to max.
func WithReconnectBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.backoffInitial, c.backoffCap = initial, max }
}

// WithWatchStaleness: how long a Watch may be silent before it is taken for dead and
// reopened (default 30 s; PROGRESS is asked for at a third of it). Cached decisions stop
// when the Watch has been silent this long.
func WithWatchStaleness(d time.Duration) Option {
	return func(c *config) { c.watchStaleness = max(d, 300*time.Millisecond) }
}

// WithBatchInterval: how often cached mode sends the successes it counted.
func WithBatchInterval(d time.Duration) Option { return func(c *config) { c.batchInterval = d } }

// WithSession: Acquire and Report travel pipelined on one Session stream per replica
// (the default, as in the Rust client: several times the unary calls' throughput, the
// same answers); false sends them as unary calls.
func WithSession(on bool) Option { return func(c *config) { c.session = on } }

// WithToken: the bearer token of a daemon started with --tokens (the data role), sent
// on every call.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithTLS: talk TLS (mTLS when cfg has certificates) to every address. An https://
// address turns TLS on with the system's roots when this is not given.
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// Stats are a client's counters, since Dial.
type Stats struct {
	// DaemonDecisions: Acquires the daemon answered.
	DaemonDecisions uint64
	// CacheDecisions: Acquires cached protectors answered in the process.
	CacheDecisions uint64
	// FallbackDecisions: Acquires the declared fallbacks answered.
	FallbackDecisions uint64
	// ReportsLost: reports of daemon permits that could not reach the daemon.
	ReportsLost uint64
	// LinkDowns: how many times every replica failed in turn and the backoff began.
	LinkDowns uint64
	// BatchedAccepted, BatchedStale: cached outcomes the daemon recorded, or refused as
	// stale (their generation had ended).
	BatchedAccepted, BatchedStale uint64
	// BatchedLost: cached outcomes that never reached the daemon (unreachable, the
	// protector gone or started another life, or the queue full).
	BatchedLost uint64
}

type stats struct {
	daemonDecisions, cacheDecisions, fallbackDecisions atomic.Uint64
	reportsLost, linkDowns                             atomic.Uint64
	batchedAccepted, batchedStale, batchedLost         atomic.Uint64
}

// Client is a connection to circuitd, shared by every Protector made from it. Safe for
// concurrent use. Dialing never waits for the daemon: connections are made lazily.
type Client struct {
	cfg      config
	replicas []*replica
	link     link
	stats    stats
	ctx      context.Context // cancelled by Close: ends every Watch and batcher
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type replica struct {
	address   string
	conn      *grpc.ClientConn
	api       pb.ProtectorServiceClient
	sessionMu sync.Mutex
	session   *session    // the live Session stream, if any
	unary     atomic.Bool // the replica answered Session UNIMPLEMENTED
}

// Dial makes a client for one daemon address, or several comma-separated replicas
// ("host:port", "http://host:port" or "https://host:port").
func Dial(addresses string, opts ...Option) (*Client, error) {
	return DialMany(strings.Split(addresses, ","), opts...)
}

// DialMany makes a client for the replicas of one cluster, asked one at a time.
func DialMany(addresses []string, opts ...Option) (*Client, error) {
	cfg := config{
		acquireDeadline: DefaultAcquireDeadline, requestTimeout: DefaultRequestTimeout,
		backoffInitial: DefaultBackoffInitial, backoffCap: DefaultBackoffCap,
		watchStaleness: DefaultWatchStaleness, batchInterval: DefaultBatchInterval, session: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if len(addresses) == 0 {
		return nil, errors.New("circuit: no daemon address")
	}
	for _, check := range []struct {
		ok   bool
		what string
	}{
		{cfg.acquireDeadline > 0, "WithAcquireDeadline needs a positive deadline"},
		{cfg.requestTimeout > 0, "WithRequestTimeout needs a positive timeout"},
		{cfg.backoffInitial > 0 && cfg.backoffCap >= cfg.backoffInitial, "WithReconnectBackoff needs 0 < initial <= max"},
		{cfg.batchInterval > 0, "WithBatchInterval needs a positive interval"},
	} {
		if !check.ok {
			return nil, errors.New("circuit: " + check.what)
		}
	}
	if strings.ContainsAny(cfg.token, "\r\n") {
		return nil, errors.New("circuit: the token cannot travel in a header")
	}
	c := &Client{cfg: cfg}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, raw := range addresses {
		target, useTLS, err := parseAddress(strings.TrimSpace(raw))
		if err != nil {
			c.Close()
			return nil, err
		}
		creds := insecure.NewCredentials()
		if cfg.tls != nil {
			creds = credentials.NewTLS(cfg.tls)
		} else if useTLS {
			creds = credentials.NewTLS(&tls.Config{})
		}
		dialOpts := []grpc.DialOption{
			grpc.WithTransportCredentials(creds),
			// grpc's own reconnect backoff (1 s up to 120 s) would keep a restarted
			// daemon unused long after the link's backoff let calls through again.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: cfg.backoffInitial, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.backoffCap},
				MinConnectTimeout: cfg.requestTimeout,
			}),
		}
		if cfg.token != "" {
			dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(cfg.token)))
		}
		conn, err := grpc.NewClient(target, dialOpts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("circuit: invalid daemon address %q: %w", raw, err)
		}
		c.replicas = append(c.replicas, &replica{address: target, conn: conn, api: pb.NewProtectorServiceClient(conn)})
	}
	c.link.init(cfg.backoffInitial, cfg.backoffCap, len(c.replicas))
	return c, nil
}

func parseAddress(raw string) (target string, useTLS bool, err error) {
	switch {
	case strings.HasPrefix(raw, "https://"):
		target, useTLS = strings.TrimPrefix(raw, "https://"), true
	case strings.HasPrefix(raw, "http://"):
		target = strings.TrimPrefix(raw, "http://")
	default:
		target = raw
	}
	target = strings.TrimSuffix(target, "/")
	if target == "" || strings.ContainsAny(target, "/ ") || !strings.Contains(target, ":") {
		return "", false, fmt.Errorf("circuit: invalid daemon address %q: want host:port", raw)
	}
	return "passthrough:///" + target, useTLS, nil
}

// Close ends every Watch and batcher (flushing what cached mode counted, within the
// request timeout) and closes the connections.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	for _, r := range c.replicas {
		r.conn.Close()
	}
	return nil
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		DaemonDecisions: s.daemonDecisions.Load(), CacheDecisions: s.cacheDecisions.Load(),
		FallbackDecisions: s.fallbackDecisions.Load(), ReportsLost: s.reportsLost.Load(),
		LinkDowns: s.linkDowns.Load(), BatchedAccepted: s.batchedAccepted.Load(),
		BatchedStale: s.batchedStale.Load(), BatchedLost: s.batchedLost.Load(),
	}
}

// call runs one RPC on the current replica, moving to the next (within ctx) when one
// cannot be reached. errLinkDown: every replica failed recently and the backoff holds.
func call[T any](ctx context.Context, c *Client, rpc func(context.Context, *replica) (T, error)) (T, error) {
	var zero T
	// No check of Close here: the batchers' last flush runs after it, on connections
	// that Close shuts only once every batcher is done.
	if !c.link.usable() {
		return zero, errLinkDown
	}
	var last error
	for range len(c.replicas) {
		i := c.link.current()
		out, err := rpc(ctx, c.replicas[i])
		if err == nil {
			c.link.up()
			return out, nil
		}
		last = err
		if !unreachable(err) || ctx.Err() != nil {
			break
		}
		c.link.next(i)
	}
	// A deadline that passed counts too: a replica that cannot answer within the request
	// timeout (frozen, overloaded) is as good as down for the fallbacks.
	if unreachable(last) && c.ctx.Err() == nil {
		if c.link.down() {
			c.stats.linkDowns.Add(1)
		}
	}
	return zero, last
}

var errLinkDown = errors.New("circuit: the daemon is unreachable (reconnect backoff)")

// unreachable: the replica could not answer (as opposed to answering an error).
func unreachable(err error) bool {
	if errors.Is(err, errLinkDown) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// link: which replica to ask, and whether the daemon is worth asking now.
type link struct {
	mu        sync.Mutex
	initial   time.Duration
	cap       time.Duration
	attempt   int
	downUntil atomic.Int64 // unix nanos; 0 = up
	cur       atomic.Int32
	n         int32
}

func (l *link) init(initial, cap time.Duration, n int) {
	l.initial, l.cap, l.n = initial, cap, int32(n)
}

func (l *link) current() int { return int(l.cur.Load()) }

func (l *link) next(from int) { l.cur.CompareAndSwap(int32(from), (int32(from)+1)%l.n) }

func (l *link) usable() bool {
	until := l.downUntil.Load()
	return until == 0 || time.Now().UnixNano() >= until
}

func (l *link) up() {
	if l.downUntil.Load() != 0 {
		l.mu.Lock()
		l.attempt = 0
		l.downUntil.Store(0)
		l.mu.Unlock()
	}
}

// down starts (or extends) the backoff; true when the link was up before.
func (l *link) down() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	wasUp := l.downUntil.Load() == 0
	wait := backoffDelay(l.initial, l.cap, l.attempt)
	l.attempt++
	l.downUntil.Store(time.Now().Add(wait).UnixNano())
	return wasUp
}

// backoffDelay is the wait before retry number attempt (from 0): the initial delay doubled
// per attempt, capped, with full jitter, so replicas restarting together are not hit by
// every client at once. The link's outages and the Watch's reconnections share it.
func backoffDelay(initial, cap time.Duration, attempt int) time.Duration {
	d := initial << min(attempt, 30)
	if d > cap || d <= 0 {
		d = cap
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: a daemon on loopback may take tokens in plaintext,
// as the other clients allow.
func (b bearer) RequireTransportSecurity() bool { return false }
