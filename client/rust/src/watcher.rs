//! Status-change notifications: exactly once per transition, from two sources.
//!
//! Design note. A transition reaches a [`Protector`](crate::Protector) handle either in
//! the answer to its own Report (fired at once, on the reporting task) or on the Watch
//! stream a background task reads for that one name. Both feed one [`Notifier`], which
//! fires each generation once: a generation is unique within one life of a protector,
//! so the notifier keeps the generations fired above a floor and drops repeats. A
//! transition that arrives late (the Watch lagging behind a report) still fires, once.
//!
//! Resets. A protector deleted and created again, or re-created by a daemon that
//! restarted without its state, starts again at generation 1. The notifier resets on
//! CREATED, after DELETED, on a snapshot whose generation went backwards, and when a
//! RESYNC reveals a new history (its revision is below the one the stream resumed from:
//! the daemon's revisions started over) or may have (COMPACTED on a resumed stream: the
//! stream may have reached another daemon, whose epoch differs). After a reset or a
//! resync, a snapshot whose status differs from the last one known fires a synthetic
//! change (no `reason`).
//!
//! Revisions order information from one history: a snapshot older than what the
//! notifier already applied (a report's answer can overtake the stream) is ignored.
//!
//! The Watch task also feeds a [`Follower`], when the protector has one: a cached
//! protector's model, which decides locally only while the stream vouches for it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use resilient_circuit_api::v1::{self, watch_event::Event};
use resilient_circuit_api::{convert, v1::watch_request::Filter};
use resilient_circuit_breaker::{Status, Time, Transition, TransitionReason};

use crate::link::unreachable;
use crate::sync::lock;
use crate::transport::Connection;

/// One status transition of a protector, as the daemon announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The protector's name.
    pub name: String,
    /// The status before.
    pub from: Status,
    /// The status after.
    pub to: Status,
    /// Why; `None` for a change reconciled from a snapshot after the watch missed
    /// events, where the daemon's reason is not known.
    pub reason: Option<TransitionReason>,
    /// The generation entered; unique within one life of the protector.
    pub generation: u64,
    /// When `to` is OPEN: when the cooldown ends.
    pub open_until: Option<SystemTime>,
}

pub(crate) type Callback = Arc<dyn Fn(&StatusChange) + Send + Sync + 'static>;

/// The most generations remembered above the floor; older ones count as fired.
const MAX_REMEMBERED: usize = 256;

#[derive(Debug, Default)]
struct Seen {
    /// Every generation at or below it counts as fired.
    floor: u64,
    /// Generations above the floor already fired.
    fired: BTreeSet<u64>,
    /// The status of the highest generation known, if known.
    status: Option<Status>,
    /// The revision of the newest information applied.
    revision: u64,
}

impl Seen {
    fn highest(&self) -> u64 {
        self.fired.last().copied().unwrap_or(0).max(self.floor)
    }

    fn reset(&mut self, generation: u64) {
        self.floor = generation;
        self.fired.clear();
    }
}

/// Fires the callbacks of one protector, once per transition.
pub(crate) struct Notifier {
    name: String,
    callbacks: Mutex<Vec<Callback>>,
    seen: Mutex<Seen>,
    /// Held from taking a transition to the end of its callbacks: a transition a report's
    /// answer and the Watch stream both bring is fired by whichever took it first, and
    /// the other waits here until that is done. So when a report returns, the callbacks
    /// of the transition it caused have run, whichever path fired them, and callbacks
    /// run one at a time, in the order their transitions were taken.
    firing: Mutex<()>,
    /// See [`Notifier::restart_watch`].
    restart: tokio::sync::Notify,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("name", &self.name)
            .field("callbacks", &lock(&self.callbacks).len())
            .field("seen", &*lock(&self.seen))
            .finish()
    }
}

/// An instant the daemon sent, on the wall clock.
pub(crate) fn wall(t: Time) -> SystemTime {
    SystemTime::UNIX_EPOCH + t
}

impl StatusChange {
    /// A transition the daemon announced for the protector `name`.
    pub(crate) fn announced(name: &str, t: &Transition) -> StatusChange {
        StatusChange {
            name: name.to_owned(),
            from: t.from,
            to: t.to,
            reason: Some(t.reason),
            generation: t.generation,
            open_until: t.open_until.map(wall),
        }
    }
}

/// Who reads a protector's Watch stream besides its [`Notifier`]: a cached protector's
/// model (see `cached`).
pub(crate) trait Follower: Send + Sync {
    /// How long the stream may stay silent before it is taken for dead.
    fn staleness(&self) -> Duration;
    /// An event arrived on a stream that resumed from `started_from` (`None`: from a
    /// snapshot).
    fn event(&self, event: &v1::WatchEvent, started_from: Option<u64>);
    /// The stream broke, went silent, or is being reopened.
    fn interrupted(&self);
}

impl Notifier {
    pub(crate) fn new(name: String) -> Notifier {
        Notifier {
            name,
            callbacks: Mutex::new(Vec::new()),
            seen: Mutex::new(Seen::default()),
            firing: Mutex::new(()),
            restart: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn subscribe(&self, callback: Callback) {
        lock(&self.callbacks).push(callback);
    }

    fn fire(&self, change: &StatusChange) {
        let callbacks = lock(&self.callbacks).clone();
        for callback in callbacks {
            callback(change);
        }
    }

    /// A transition, from a report's answer or the Watch stream.
    pub(crate) fn transition(&self, change: StatusChange, revision: u64) {
        let _firing = lock(&self.firing);
        {
            let mut s = lock(&self.seen);
            let g = change.generation;
            if g <= s.floor || !s.fired.insert(g) {
                return;
            }
            if g == s.highest() {
                s.status = Some(change.to);
            }
            s.revision = s.revision.max(revision);
            while s.fired.first() == Some(&(s.floor + 1)) || s.fired.len() > MAX_REMEMBERED {
                if let Some(first) = s.fired.pop_first() {
                    s.floor = first;
                }
            }
        }
        tracing::debug!(name = %change.name, from = ?change.from, to = ?change.to, generation = change.generation, "status change");
        self.fire(&change);
    }

    /// A protector's whole state: a Watch snapshot, or EnsureProtector's answer
    /// (`created` then means a new life of the protector).
    pub(crate) fn snapshot(&self, p: &v1::Protector, revision: u64, created: bool) {
        let Ok(now) = Status::try_from(p.status()) else {
            return;
        };
        let _firing = lock(&self.firing);
        let synthetic = {
            let mut s = lock(&self.seen);
            if !created && revision < s.revision {
                return;
            }
            s.revision = revision;
            let highest = s.highest();
            let moved = s.status.is_some_and(|before| before != now);
            // Below the highest generation at a newer revision: a new life of the
            // protector. Above it: transitions the stream missed.
            let synthetic = created || p.generation != highest;
            if synthetic {
                s.reset(p.generation);
            }
            let synthetic = synthetic && moved;
            let before = s.status.replace(now);
            synthetic.then(|| StatusChange {
                name: self.name.clone(),
                from: before.unwrap_or(now),
                to: now,
                reason: None,
                generation: p.generation,
                open_until: p.open_until.as_ref().and_then(convert::time).map(wall),
            })
        };
        if let Some(change) = synthetic {
            tracing::debug!(name = %change.name, to = ?change.to, "status reconciled from a snapshot");
            self.fire(&change);
        }
    }

    /// Whether the notifier knows a status, i.e. whether the protector was seen before.
    pub(crate) fn knows_status(&self) -> bool {
        lock(&self.seen).status.is_some()
    }

    /// Makes the watch task start over from a snapshot: the protector was created again
    /// by this client, so the revision the task would resume from may belong to the
    /// daemon's lost history (a restarted daemon counts revisions from zero again).
    pub(crate) fn restart_watch(&self) {
        self.restart.notify_one();
    }

    /// The protector was deleted: its next life starts from nothing.
    pub(crate) fn deleted(&self, revision: u64) {
        let mut s = lock(&self.seen);
        s.reset(0);
        s.status = None;
        s.revision = revision;
    }

    /// The daemon's revisions started over (it restarted without its state).
    pub(crate) fn new_history(&self) {
        let mut s = lock(&self.seen);
        s.reset(0);
        // The new history's revisions are not comparable with the old ones, and the
        // snapshot that follows carries its protector's own (older) revision.
        s.revision = 0;
    }
}

/// Reads the Watch of one protector for as long as its handles live (the caller aborts
/// the task), reconnecting with the client's backoff and resuming from the last revision,
/// on the next replica when the current one cannot be reached.
/// The `follower`, if any, is fed every event and told of every interruption.
pub(crate) async fn run(
    connection: Arc<Connection>,
    notifier: Arc<Notifier>,
    follower: Option<Arc<dyn Follower>>,
) {
    let staleness = follower
        .as_ref()
        .map_or(connection.config.watch_staleness, |f| f.staleness());
    // The daemon sends PROGRESS when idle, so a silent stream is a dead one. A follower
    // (a cached protector) asks for it more often: its staleness bound is short.
    let share = if follower.is_some() { 4 } else { 3 };
    let progress = (staleness / share).clamp(Duration::from_millis(100), Duration::from_secs(3600));
    let link = &connection.link;
    let timeout = connection.config.request_timeout;
    let mut resume: Option<u64> = None;
    // The daemon's history the resume revision belongs to: a daemon that restarted
    // without its state has a new epoch, and answers a resume with RESYNC.
    let mut epoch: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let request = v1::WatchRequest {
            filter: Some(Filter::Names(v1::NameList {
                names: vec![notifier.name.clone()],
            })),
            start_revision: resume,
            start_epoch: resume.and(epoch),
            progress_interval: Some(convert::duration(progress)),
        };
        // A replica that cannot be reached hands the stream to the next one at once; the
        // backoff is between full rounds (see `link`), and the resume revision and epoch
        // go along: another replica of the same cluster resumes without a resync.
        let (turn, replica) = connection.turn();
        let mut next_now = false;
        let why = match tokio::time::timeout(timeout, replica.watch(request)).await {
            Err(_) => {
                let why = format!("no answer within {timeout:?}");
                next_now = link.failed(turn, &why);
                why
            }
            Ok(Err(status)) => {
                let why = format!("{}: {}", status.code(), status.message());
                if unreachable(&status) {
                    next_now = link.failed(turn, &why);
                }
                why
            }
            Ok(Ok(mut stream)) => {
                let started_from = resume;
                loop {
                    let received = tokio::select! {
                        biased;
                        () = notifier.restart.notified() => None,
                        received = tokio::time::timeout(staleness, stream.message()) => Some(received),
                    };
                    let Some(received) = received else {
                        resume = None;
                        failures = 0;
                        break "the protector was created again".to_owned();
                    };
                    match received {
                        // Reopened on the same replica: a replica that no longer answers
                        // fails the reopening, within `timeout`, and is left then.
                        Err(_) => break format!("nothing received for {staleness:?}"),
                        Ok(Ok(None)) => break "the stream ended".to_owned(),
                        Ok(Err(status)) => {
                            let why = format!("{}: {}", status.code(), status.message());
                            if unreachable(&status) {
                                next_now = link.failed(turn, &why);
                            }
                            break why;
                        }
                        Ok(Ok(Some(event))) => {
                            link.up();
                            failures = 0;
                            if let Some(v1::watch_event::Event::Synced(synced)) = &event.event {
                                epoch = Some(synced.epoch);
                            }
                            if let Some(follower) = &follower {
                                follower.event(&event, started_from);
                            }
                            apply(&notifier, event, started_from, &mut resume);
                        }
                    }
                }
            }
        };
        if let Some(follower) = &follower {
            follower.interrupted();
        }
        let delay = if next_now {
            Duration::ZERO
        } else {
            let delay = link.backoff().delay(failures);
            failures = failures.saturating_add(1);
            delay
        };
        tracing::debug!(name = %notifier.name, why = %why, retry_in = ?delay, resume_from = ?resume, "watch interrupted");
        // A reconnect delay, not synchronisation: the stream is gone and the daemon is
        // given time to come back. A re-created protector needs a snapshot at once.
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = notifier.restart.notified() => resume = None,
        }
    }
}

fn apply(notifier: &Notifier, event: v1::WatchEvent, started_from: Option<u64>, resume: &mut Option<u64>) {
    let revision = event.revision;
    match event.event {
        Some(Event::Snapshot(p)) => notifier.snapshot(&p, revision, false),
        Some(Event::Created(p)) => {
            notifier.snapshot(&p, revision, true);
            *resume = Some(revision);
        }
        Some(Event::StatusChanged(sc)) => {
            if let Some(t) = sc.transition.as_ref().and_then(|t| convert::transition(t).ok()) {
                notifier.transition(StatusChange::announced(&sc.name, &t), revision);
            }
            *resume = Some(revision);
        }
        Some(Event::Deleted(_)) => {
            notifier.deleted(revision);
            *resume = Some(revision);
        }
        Some(Event::Resync(_)) if started_from.is_some_and(|from| revision < from) => {
            tracing::info!(name = %notifier.name, revision, "the daemon's history started over");
            notifier.new_history();
        }
        // A resumed stream refused as COMPACTED may have reached another history (the
        // daemon answers a `start_epoch` not its own so too: another daemon behind the
        // next address, or one restarted without its state), whose revisions say nothing
        // about the ones applied: the snapshot that follows must not be ignored as older.
        // In the same history nothing is lost: the snapshot is newer anyway.
        Some(Event::Resync(r)) if started_from.is_some() && r.reason() == v1::ResyncReason::Compacted => {
            tracing::info!(name = %notifier.name, revision, "the watch resumed on another history, or past it");
            notifier.new_history();
        }
        // A resync within the same history: the snapshot that follows reconciles.
        Some(Event::Resync(_)) => {}
        Some(Event::Synced(_) | Event::Progress(_) | Event::PolicyUpdated(_) | Event::OverrideChanged(_)) => {
            *resume = Some(revision)
        }
        None => {}
    }
}
