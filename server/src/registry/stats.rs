//! What `/metrics` reads from the registry: per-protector statistics the machine's own
//! counters do not hold, and the samples and totals a scrape takes.
//!
//! Design note. The hot path adds no lock and no atomic: an Acquire or Report already
//! holds its protector's entry guard, so the few numbers the machine's lifetime
//! [`Counters`] lack (rejections by reason, transitions by kind, time in each state)
//! are plain fields of the entry, bumped under that guard. Everything else is computed
//! when Prometheus scrapes: the state gauges and the running state's seconds from the
//! entry as it is then, the daemon-wide totals by summing the entries (plus what
//! deleted protectors had counted, so a deletion never makes a counter go down).
//!
//! Transitions are counted from the changes the registry commits, the same ones it
//! publishes to watchers, so a trip and its recovery that both happen between two
//! scrapes still show in `transitions_total` and `state_seconds_total`.

use std::collections::BTreeMap;
use std::time::Duration;

use resilient_circuit_breaker::{
    Counters, DecisionReason, OverrideKind, Protector, Status, Time, Transition, TransitionReason,
};

/// A protector's state as the metrics name it: its status, or the override in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// CLOSED, no override.
    Closed,
    /// OPEN, no override.
    Open,
    /// HALF_OPEN, no override.
    HalfOpen,
    /// A FORCED_OPEN override holds.
    ForcedOpen,
    /// A DISABLED override holds.
    Disabled,
}

impl State {
    /// Every state, in label order.
    pub const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    fn of(status: Status, overridden: Option<OverrideKind>) -> State {
        match (overridden, status) {
            (Some(OverrideKind::ForcedOpen), _) => State::ForcedOpen,
            (Some(OverrideKind::Disabled), _) => State::Disabled,
            (None, Status::Closed) => State::Closed,
            (None, Status::Open) => State::Open,
            (None, Status::HalfOpen) => State::HalfOpen,
        }
    }

    /// The state `protector` is in now.
    pub fn of_protector(protector: &Protector) -> State {
        State::of(protector.status(), protector.override_state().map(|o| o.kind))
    }
}

/// Why an Acquire was refused, as labelled.
pub const REJECTIONS: [&str; 3] = ["open", "trials_exhausted", "forced_open"];

/// A transition's kind: from, to, why.
pub type TransitionKind = (Status, Status, TransitionReason);

/// The label values of a status in `transitions_total`.
pub fn status_label(status: Status) -> &'static str {
    match status {
        Status::Closed => "closed",
        Status::Open => "open",
        Status::HalfOpen => "half_open",
    }
}

/// The label value of a transition's reason.
pub fn reason_label(reason: TransitionReason) -> &'static str {
    match reason {
        TransitionReason::FailureLimit => "failure_limit",
        TransitionReason::CooldownElapsed => "cooldown_elapsed",
        TransitionReason::TrialsSucceeded => "trials_succeeded",
        TransitionReason::TrialsFailed => "trials_failed",
        TransitionReason::PermitExpired => "permit_expired",
        TransitionReason::Manual => "manual",
        TransitionReason::ConsecutiveFailures => "consecutive_failures",
        TransitionReason::SlowCalls => "slow_calls",
    }
}

/// A refusal's place in [`REJECTIONS`]; `None` for the reasons that admit.
fn rejection_slot(reason: DecisionReason) -> Option<usize> {
    match reason {
        DecisionReason::Open => Some(0),
        DecisionReason::TrialsExhausted => Some(1),
        DecisionReason::ForcedOpen => Some(2),
        DecisionReason::Closed | DecisionReason::Trial | DecisionReason::Disabled => None,
    }
}

fn kind_key(kind: TransitionKind) -> (u8, u8, u8) {
    (kind.0 as u8, kind.1 as u8, kind.2 as u8)
}

/// One protector's statistics beyond the machine's counters; kept under its entry's
/// guard. Small: a protector that never changed holds no transition kinds.
#[derive(Debug, Clone)]
pub(super) struct Stats {
    rejected: [u64; 3],
    /// Acquires admitted in shadow mode that the policy would have refused, by
    /// [`REJECTIONS`].
    would_reject: [u64; 3],
    /// Each kind of transition seen, and how often (a handful at most).
    transitions: Vec<(TransitionKind, u64)>,
    /// Nanoseconds spent in each state before the current one began.
    nanos: [u64; 5],
    state: State,
    since: Time,
}

impl Stats {
    /// A protector in `state` since `now` (created, restored or replicated).
    pub(super) fn new(state: State, now: Time) -> Stats {
        Stats {
            rejected: [0; 3],
            would_reject: [0; 3],
            transitions: Vec::new(),
            nanos: [0; 5],
            state,
            since: now,
        }
    }

    /// Counts an Acquire refused for `reason`.
    pub(super) fn rejected(&mut self, reason: DecisionReason) {
        if let Some(slot) = rejection_slot(reason) {
            self.rejected[slot] += 1;
        }
    }

    /// Counts an Acquire admitted in shadow mode that `reason` would have refused.
    pub(super) fn would_reject(&mut self, reason: DecisionReason) {
        if let Some(slot) = rejection_slot(reason) {
            self.would_reject[slot] += 1;
        }
    }

    /// Counts a committed transition and enters its status at its instant (unless an
    /// override holds, which the state stays in).
    pub(super) fn transition(&mut self, t: &Transition, overridden: Option<OverrideKind>) {
        let kind = (t.from, t.to, t.reason);
        match self.transitions.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.transitions.push((kind, 1)),
        }
        self.enter(State::of(t.to, overridden), t.at);
    }

    /// After an operation: the state `protector` is in now (an override set or ended).
    pub(super) fn settle(&mut self, protector: &Protector, now: Time) {
        self.enter(State::of_protector(protector), now);
    }

    fn enter(&mut self, state: State, at: Time) {
        if state == self.state {
            return;
        }
        let spent = at.saturating_sub(self.since);
        let slot = &mut self.nanos[self.state as usize];
        *slot = slot.saturating_add(u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX));
        self.state = state;
        self.since = at.max(self.since);
    }

    /// Seconds spent in each state (in [`State::ALL`] order) through `now`.
    fn seconds(&self, now: Time) -> [f64; 5] {
        let mut nanos = self.nanos;
        let running = now.saturating_sub(self.since);
        let slot = &mut nanos[self.state as usize];
        *slot = slot.saturating_add(u64::try_from(running.as_nanos()).unwrap_or(u64::MAX));
        nanos.map(|n| Duration::from_nanos(n).as_secs_f64())
    }
}

/// One protector's series, read at a scrape.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its name.
    pub name: String,
    /// Its state now.
    pub state: State,
    /// The machine's lifetime counters (calls by outcome, stale reports, expired
    /// permits).
    pub counters: Counters,
    /// Acquires refused, by [`REJECTIONS`].
    pub rejected: [u64; 3],
    /// Acquires admitted in shadow mode that would have been refused, by [`REJECTIONS`].
    pub would_reject: [u64; 3],
    /// Transitions by kind.
    pub transitions: Vec<(TransitionKind, u64)>,
    /// Seconds in each state, [`State::ALL`] order.
    pub seconds: [f64; 5],
    /// Failures over outcomes in the current window (0 when it is empty).
    pub failure_rate: f64,
    /// Trial permits in flight.
    pub trials_in_flight: u32,
}

/// The daemon-wide sums of every protector's counters, deleted ones included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Protectors in each state now, [`State::ALL`] order.
    pub states: [u64; 5],
    /// Successes, failures, ignored.
    pub calls: [u64; 3],
    /// Acquires refused, by [`REJECTIONS`].
    pub rejected: [u64; 3],
    /// Acquires admitted in shadow mode that would have been refused, by [`REJECTIONS`].
    pub would_reject: [u64; 3],
    /// Reports refused as stale.
    pub stale_reports: u64,
    /// Trial permits that expired.
    pub expired_permits: u64,
    /// Transitions by kind, in a stable order.
    pub transitions: BTreeMap<(u8, u8, u8), (TransitionKind, u64)>,
}

impl Totals {
    /// Adds one protector's counts (not its state).
    pub(super) fn add(&mut self, protector: &Protector, stats: &Stats) {
        let c = protector.counters();
        self.calls[0] += c.successes;
        self.calls[1] += c.failures;
        self.calls[2] += c.ignored;
        self.stale_reports += c.stale_reports;
        self.expired_permits += c.expired_permits;
        for (total, n) in self.rejected.iter_mut().zip(stats.rejected) {
            *total += n;
        }
        for (total, n) in self.would_reject.iter_mut().zip(stats.would_reject) {
            *total += n;
        }
        for (kind, n) in &stats.transitions {
            self.transitions.entry(kind_key(*kind)).or_insert((*kind, 0)).1 += n;
        }
    }
}

/// `name`'s series from its protector and statistics, at `now`.
pub(super) fn sample(name: String, protector: &Protector, stats: &Stats, now: Time) -> Sample {
    let window = protector.window();
    let failure_rate = if window.is_empty() {
        0.0
    } else {
        f64::from(window.failures()) / f64::from(window.len())
    };
    Sample {
        name,
        state: State::of_protector(protector),
        counters: *protector.counters(),
        rejected: stats.rejected,
        would_reject: stats.would_reject,
        transitions: stats.transitions.clone(),
        seconds: stats.seconds(now),
        failure_rate,
        trials_in_flight: protector.trials_in_flight(),
    }
}
