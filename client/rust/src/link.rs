//! Whether the daemon is worth asking right now, and which of its replicas to ask.
//!
//! Design note. A client may know several addresses of the daemon (the replicas of one
//! cluster). The link asks one of them, the *current* replica, until it fails to answer;
//! it then moves to the next one in the list, at once, so one dead replica costs a call
//! no more than a refused connection. Only when every replica failed in turn (a full
//! round) does the link go down. Moving is keyed by the [`Turn`] a call asked in: when
//! many calls fail on the same replica together, the first moves the link on and the
//! others, finding it already moved, neither skip the next replica nor, after a round
//! ended, start another.
//!
//! After a full round failed the link is *down* for a backoff
//! period (capped exponential, full jitter); while it lasts every caller answers from its
//! fallback at once instead of paying the acquire deadline again. When the period ends,
//! the first caller to notice becomes the probe: it pushes the next attempt a fresh
//! backoff away before it tries, so concurrent callers keep answering from the fallback,
//! and a probe future that is dropped midway cannot leave the link stuck. Any answer from
//! the daemon (an RPC or a Watch message) marks the link up again. The link never gives
//! up: the backoff stops growing at its cap. With one address every failure is a full
//! round.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::ExponentialDelay;
use crate::sync::lock;

/// The reconnect backoff: the [`ExponentialDelay`] schedule doubling from `initial` up
/// to `cap`, with full jitter in place of its own: attempt `n` (from 0) waits a
/// uniformly random time in `[0, min(cap, initial * 2^n)]`.
#[derive(Debug, Clone)]
pub(crate) struct Reconnect {
    schedule: ExponentialDelay,
}

impl Reconnect {
    /// From `initial` up to `cap` (raised to `initial` if below it).
    pub(crate) fn new(initial: Duration, cap: Duration) -> Reconnect {
        let schedule = ExponentialDelay::try_new(initial, cap.max(initial), 2.0, 0.0)
            .expect("doubling without jitter, up to a cap no lower than the start, is valid");
        Reconnect { schedule }
    }

    /// The delay before attempt `attempt` (0 = the first retry).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        // The growth stops after 20 doublings even below the cap.
        let ceiling = self.schedule.base_delay(attempt.min(20) + 1);
        if ceiling.is_zero() {
            return ceiling;
        }
        Duration::from_nanos(rand::random_range(
            0..=ceiling.as_nanos().min(u128::from(u64::MAX)) as u64,
        ))
    }
}

/// Which replica a call asks, and in which of the link's moves: a failure reported for
/// a turn the link has moved on from (another caller's failure did) moves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    /// The replica (an index into the client's addresses).
    pub(crate) replica: usize,
    moves: u64,
}

/// What a caller should do about the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The link is up: ask the daemon.
    Ask,
    /// The link is down but its backoff ended: this caller probes.
    Probe,
    /// The link is down: answer from the fallback without the network.
    Skip,
}

#[derive(Debug)]
struct LinkState {
    down: bool,
    /// Failures since the link was last up; drives the backoff.
    failures: u32,
    next_try: Instant,
    /// Whether a fallback decision was already announced at warn level since going down.
    warned: bool,
    /// The replica to ask now, and the moves so far.
    turn: Turn,
    /// Replicas that failed in turn since the last answer or the last full round.
    round: usize,
}

/// The shared up/down state of one client's connection.
#[derive(Debug)]
pub(crate) struct Link {
    backoff: Reconnect,
    /// How many replicas the client knows (at least one).
    replicas: usize,
    state: Mutex<LinkState>,
    downs: AtomicU64,
}

impl Link {
    /// A link over `replicas` addresses (at least one), asking the first one first.
    pub(crate) fn new(backoff: Reconnect, replicas: usize) -> Link {
        Link {
            backoff,
            replicas: replicas.max(1),
            state: Mutex::new(LinkState {
                down: false,
                failures: 0,
                next_try: Instant::now(),
                warned: false,
                turn: Turn { replica: 0, moves: 0 },
                round: 0,
            }),
            downs: AtomicU64::new(0),
        }
    }

    /// Whether to ask the daemon now (see the module note).
    pub(crate) fn attempt(&self) -> Attempt {
        let mut s = lock(&self.state);
        if !s.down {
            return Attempt::Ask;
        }
        let now = Instant::now();
        if now < s.next_try {
            return Attempt::Skip;
        }
        s.next_try = now + self.backoff.delay(s.failures);
        Attempt::Probe
    }

    /// The daemon answered.
    pub(crate) fn up(&self) {
        let mut s = lock(&self.state);
        if s.down {
            tracing::info!(failures = s.failures, "the daemon is reachable again");
        }
        s.down = false;
        s.failures = 0;
        s.warned = false;
        s.round = 0;
    }

    /// The replica to ask now.
    pub(crate) fn turn(&self) -> Turn {
        lock(&self.state).turn
    }

    /// The replica asked in `turn` could not be reached (`why`). Moves the link to the
    /// next replica; after a full round of failures the link goes down for a backoff
    /// period (`why` is logged when this takes it down). Returns whether the caller may
    /// ask the (new) current replica at once: false once the round is over.
    pub(crate) fn failed(&self, turn: Turn, why: &dyn std::fmt::Display) -> bool {
        let mut s = lock(&self.state);
        if turn != s.turn {
            // Another caller already moved on from this turn.
            return !s.down;
        }
        s.turn = Turn {
            replica: (turn.replica + 1) % self.replicas,
            moves: turn.moves + 1,
        };
        s.round += 1;
        if s.round < self.replicas {
            tracing::info!(error = %why, failed = turn.replica, next = s.turn.replica, "a replica of the daemon cannot be reached; asking the next");
            if s.down {
                // Probing: the rest of the round goes at once, the backoff is between rounds.
                s.next_try = Instant::now();
            }
            return true;
        }
        s.round = 0;
        let delay = self.backoff.delay(s.failures);
        s.next_try = Instant::now() + delay;
        s.failures = s.failures.saturating_add(1);
        if !s.down {
            s.down = true;
            self.downs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %why, retry_in = ?delay, "the daemon cannot be reached; answering from fallbacks");
        } else {
            tracing::debug!(error = %why, retry_in = ?delay, failures = s.failures, "the daemon is still unreachable");
        }
        false
    }

    /// Whether this fallback decision is the first since the link went down (it is then
    /// announced at warn level, the rest at debug).
    pub(crate) fn first_fallback(&self) -> bool {
        let mut s = lock(&self.state);
        !std::mem::replace(&mut s.warned, true)
    }

    /// Whether the link is currently down.
    pub(crate) fn is_down(&self) -> bool {
        lock(&self.state).down
    }

    /// How many times the link went down.
    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Ordering::Relaxed)
    }

    /// The backoff the link uses, for other reconnecting loops of the same client.
    pub(crate) fn backoff(&self) -> &Reconnect {
        &self.backoff
    }
}

/// Whether a status means the daemon could not be reached (rather than that it refused).
pub(crate) fn unreachable(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Internal
            | Code::Aborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(replicas: usize) -> Link {
        Link::new(
            Reconnect::new(Duration::from_secs(1), Duration::from_secs(1)),
            replicas,
        )
    }

    /// Fails the current turn; returns whether the next replica may be asked at once.
    fn fail(link: &Link) -> bool {
        link.failed(link.turn(), &"refused")
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_replica_hands_over_to_the_next_until_a_round_is_over() {
        let link = link(3);
        assert_eq!(link.turn().replica, 0);
        assert!(fail(&link), "two replicas are left to try");
        assert_eq!((link.turn().replica, link.attempt()), (1, Attempt::Ask));
        assert!(fail(&link));
        assert_eq!(link.turn().replica, 2);
        assert!(!fail(&link), "the round is over");
        assert!(link.is_down() && link.downs() == 1);
        assert_eq!(link.turn().replica, 0, "round robin");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_of_a_turn_already_left_move_nothing() {
        let link = link(3);
        let first = link.turn();
        assert!(link.failed(first, &"refused"));
        // Calls that were on replica 0 together fail after the first moved on.
        assert!(
            link.failed(first, &"refused"),
            "the caller may ask the next replica"
        );
        assert!(link.failed(first, &"refused"));
        assert_eq!(link.turn().replica, 1);
        assert!(!link.is_down());
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_failure_does_not_start_a_round_the_backoff_holds_back() {
        let link = link(2);
        let first = link.turn();
        assert!(fail(&link));
        assert!(!fail(&link), "the round is over");
        assert_eq!(link.turn().replica, first.replica, "back on the first replica");
        // A call that asked the first replica in the first round fails only now.
        assert!(!link.failed(first, &"refused"));
        assert_eq!(link.attempt(), Attempt::Skip, "still backing off");
        assert_eq!(link.downs(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_starts_a_new_round() {
        let link = link(2);
        assert!(fail(&link));
        link.up();
        assert!(fail(&link), "a new round: replica 0 is worth a try again");
        assert!(!link.is_down());
        assert_eq!(link.turn().replica, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_tries_the_whole_round_then_backs_off() {
        let link = link(2);
        assert!(fail(&link));
        assert!(!fail(&link));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(link.attempt(), Attempt::Probe);
        assert!(fail(&link), "the probe goes on to the next replica");
        assert_eq!(
            link.attempt(),
            Attempt::Probe,
            "at once: the backoff is between rounds"
        );
        assert!(!fail(&link));
        assert!(link.is_down() && link.downs() == 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_is_a_round_of_one() {
        let link = link(1);
        assert!(!fail(&link));
        assert!(link.is_down());
        assert_eq!(link.turn().replica, 0);
    }
}
