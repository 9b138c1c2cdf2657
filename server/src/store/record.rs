//! What the store writes: one record per protector state, trial permit or deletion, and
//! the snapshot.
//!
//! Records are protobuf (prost) messages declared here rather than in the public
//! contract: they are the daemon's private format. A `Put` carries the whole state of one
//! protector, so replay is "last version wins", and `version` (the journal sequence
//! number the record was written at) orders a record against a snapshot taken while the
//! journal moved on. A trial permit handed out or taken back with no transition is a
//! `Trial` record instead: the whole state except the permits in flight, and the one
//! permit that came or went, so its size does not grow with the permits outstanding
//! (whole states would make n unreported trials cost O(n^2) bytes). Replay applies it
//! on top of the state before it (`store::replay`).

mod rules;

use resilient_circuit_breaker::{
    Counters, Override, OverrideKind, PolicySpec, Protector, ProtectorState, Status,
};
pub use rules::{StoredRules, StoredTimeWindow, nanos, time};

/// One journal record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// The journal sequence number (also the version of the state it carries).
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The daemon-wide revision when the record was written.
    #[prost(uint64, tag = "2")]
    pub revision: u64,
    /// A protector's whole state, a trial permit, or its deletion.
    #[prost(oneof = "Body", tags = "3, 4, 5")]
    pub body: Option<Body>,
}

/// The records one group commit made durable together: the payload of one journal
/// frame (see `format`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordGroup {
    /// In sequence order.
    #[prost(message, repeated, tag = "1")]
    pub records: Vec<Record>,
}

/// The field number of [`RecordGroup::records`], for appending one encoded record at a
/// time to a group being built.
pub const GROUP_RECORDS_TAG: u32 = 1;

/// What one key of a replicated log holds (replicated mode): records, as in a
/// [`RecordGroup`] (same field number, so the two decode alike), and the watch events
/// those records published, so that every replica hands its watchers the leader's
/// events with the leader's revisions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogEntry {
    /// In sequence order.
    #[prost(message, repeated, tag = "1")]
    pub records: Vec<Record>,
    /// In revision order.
    #[prost(message, repeated, tag = "2")]
    pub events: Vec<LoggedEvent>,
}

/// The field number of [`LogEntry::events`].
pub const LOG_EVENTS_TAG: u32 = 2;

/// One published change, as logged for the replicas.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedEvent {
    /// The protector it concerns.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The event every watcher receives.
    #[prost(message, optional, tag = "2")]
    pub event: Option<resilient_circuit_api::v1::WatchEvent>,
}

/// What a record says.
// A record lives only while it is encoded or replayed; boxing the common variant would
// cost an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    /// The protector now has this state.
    #[prost(message, tag = "3")]
    Put(StoredProtector),
    /// The protector of this name was deleted.
    #[prost(string, tag = "4")]
    Delete(String),
    /// A trial permit was handed out or taken back, and nothing was published.
    #[prost(message, tag = "5")]
    Trial(TrialChange),
}

/// A trial permit handed out or taken back (a report), on top of the protector's
/// previous record. Journals written before this record existed hold only `Put`s.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrialChange {
    /// Every field but the permits in flight (`trials` is empty), versioned at this
    /// record's sequence number.
    #[prost(message, optional, tag = "1")]
    pub state: Option<StoredProtector>,
    /// When the operation ran (ns since the Unix epoch). It first applied every expiry
    /// due by then, so every permit expiring at or before it is gone; the effects of
    /// those expiries on the window and the counters are in `state`.
    #[prost(uint64, tag = "2")]
    pub at: u64,
    /// The permit handed out.
    #[prost(message, optional, tag = "3")]
    pub issued: Option<StoredTrial>,
    /// The id of the permit taken back.
    #[prost(uint64, optional, tag = "4")]
    pub released: Option<u64>,
}

/// A snapshot: every protector at the time it was taken.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    /// The daemon-wide revision when it was taken.
    #[prost(uint64, tag = "1")]
    pub revision: u64,
    /// The first journal segment to replay on top of it.
    #[prost(uint64, tag = "2")]
    pub first_segment: u64,
    /// Every protector, each with its version.
    #[prost(message, repeated, tag = "3")]
    pub protectors: Vec<StoredProtector>,
    /// The journal's last sequence number when the snapshot was complete: the journal
    /// continues above it, so no later record can look older than a state in here.
    #[prost(uint64, tag = "4")]
    pub last_seq: u64,
}

/// A trial permit in flight.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct StoredTrial {
    /// Its id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// When it expires, in nanoseconds since the Unix epoch.
    #[prost(uint64, tag = "2")]
    pub expires_at: u64,
}

/// One protector's whole state. Instants are nanoseconds since the Unix epoch (UTC),
/// so a restart knows the absolute deadline, not a duration to start again.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredProtector {
    #[prost(string, tag = "1")]
    pub name: String,
    /// The version of this state (a journal sequence number).
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(uint64, tag = "3")]
    pub mod_revision: u64,
    #[prost(uint64, tag = "4")]
    pub cooldown: u64,
    #[prost(uint32, tag = "5")]
    pub failure_n: u32,
    #[prost(uint32, tag = "6")]
    pub failure_d: u32,
    #[prost(uint32, optional, tag = "7")]
    pub success_n: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub success_d: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub trial_permits: Option<u32>,
    #[prost(uint64, tag = "10")]
    pub permit_ttl: u64,
    #[prost(bool, tag = "11")]
    pub auto_half_open: bool,
    /// 1 CLOSED, 2 OPEN, 3 HALF_OPEN (the contract's numbers).
    #[prost(int32, tag = "12")]
    pub status: i32,
    #[prost(uint64, tag = "13")]
    pub generation: u64,
    #[prost(uint64, optional, tag = "14")]
    pub open_until: Option<u64>,
    #[prost(uint64, tag = "15")]
    pub open_for: u64,
    #[prost(uint32, tag = "16")]
    pub window_size: u32,
    /// Outcomes oldest first, one bit each (1 = failure), `window_len` of them.
    #[prost(bytes = "vec", tag = "17")]
    pub window: Vec<u8>,
    #[prost(uint32, tag = "18")]
    pub window_len: u32,
    #[prost(uint64, tag = "19")]
    pub consecutive_failures: u64,
    #[prost(message, repeated, tag = "20")]
    pub trials: Vec<StoredTrial>,
    #[prost(uint64, tag = "21")]
    pub next_permit_id: u64,
    /// 0 none, 2 FORCED_OPEN, 3 DISABLED (the contract's numbers).
    #[prost(int32, tag = "22")]
    pub override_kind: i32,
    #[prost(uint64, optional, tag = "23")]
    pub override_expires_at: Option<u64>,
    #[prost(uint64, tag = "24")]
    pub resumed_at: u64,
    /// admitted, rejected, successes, failures, ignored, stale_reports, expired_permits.
    #[prost(uint64, repeated, tag = "25")]
    pub counters: Vec<u64>,
    /// The identity that created the protector (`token:NAME`, `certificate:NAME` or
    /// `address:IP`, see `auth::Identity::key`), counted against its
    /// `--max-protectors-per-identity`. Carried by every later state of the protector,
    /// so snapshots and replicas keep it. Absent for protectors created from the config
    /// file, and in records written before it existed (counted against nobody).
    #[prost(string, optional, tag = "26")]
    pub creator: Option<String>,
    /// The revision at which the protector's policy was last set (creation, UpdatePolicy):
    /// the AcquireResponse's `policy_revision`. Absent in records written before it
    /// existed (read as 0 until the policy is next set).
    #[prost(uint64, optional, tag = "27")]
    pub policy_revision: Option<u64>,
    /// The policy's optional rules (proto/SEMANTICS.md section 2a); absent when every
    /// one is off, as in records written before they existed.
    #[prost(message, optional, tag = "28")]
    pub rules: Option<StoredRules>,
    /// Whether each of `window`'s outcomes was slow, one bit each, `window_len` of
    /// them; empty when none was (and in records written before slow calls).
    #[prost(bytes = "vec", tag = "29")]
    pub window_slow: Vec<u8>,
    /// CLOSED's time window (frozen while OPEN), with a `window_duration`; absent in
    /// records written before it was kept (restored empty).
    #[prost(message, optional, tag = "30")]
    pub time_window: Option<StoredTimeWindow>,
}

impl StoredProtector {
    /// The stored form of `protector`.
    pub fn new(name: &str, protector: &Protector, mod_revision: u64, version: u64) -> StoredProtector {
        Self::from_state(name, protector.to_state(), mod_revision, version)
    }

    /// The stored form of `protector` without its trial permits in flight (for a
    /// [`TrialChange`]): its size does not depend on how many there are.
    pub fn without_trials(
        name: &str,
        protector: &Protector,
        mod_revision: u64,
        version: u64,
    ) -> StoredProtector {
        Self::from_state(name, protector.state_except_trials(), mod_revision, version)
    }

    fn from_state(name: &str, s: ProtectorState, mod_revision: u64, version: u64) -> StoredProtector {
        let window = rules::pack(&s.window);
        let c = s.counters;
        StoredProtector {
            name: name.to_owned(),
            version,
            mod_revision,
            cooldown: nanos(s.policy.cooldown),
            failure_n: s.policy.failure_limit.0,
            failure_d: s.policy.failure_limit.1,
            success_n: s.policy.success_limit.map(|f| f.0),
            success_d: s.policy.success_limit.map(|f| f.1),
            trial_permits: s.policy.trial_permits,
            permit_ttl: nanos(s.policy.permit_ttl),
            auto_half_open: s.policy.auto_half_open,
            status: match s.status {
                Status::Closed => 1,
                Status::Open => 2,
                Status::HalfOpen => 3,
            },
            generation: s.generation,
            open_until: s.open_until.map(nanos),
            open_for: nanos(s.open_for),
            window_size: s.window_size,
            window_len: s.window.len() as u32,
            window,
            consecutive_failures: s.consecutive_failures,
            trials: s
                .trials
                .iter()
                .map(|&(id, at)| StoredTrial {
                    id,
                    expires_at: nanos(at),
                })
                .collect(),
            next_permit_id: s.next_permit_id,
            override_kind: match s.override_state.map(|o| o.kind) {
                None => 0,
                Some(OverrideKind::ForcedOpen) => 2,
                Some(OverrideKind::Disabled) => 3,
            },
            override_expires_at: s.override_state.and_then(|o| o.expires_at).map(nanos),
            resumed_at: nanos(s.resumed_at),
            creator: None,
            policy_revision: None,
            rules: StoredRules::new(&s.rules),
            window_slow: rules::pack(&s.window_slow),
            time_window: s.time_window.as_ref().map(StoredTimeWindow::new),
            counters: vec![
                c.admitted,
                c.rejected,
                c.successes,
                c.failures,
                c.ignored,
                c.stale_reports,
                c.expired_permits,
            ],
        }
    }

    /// The same state, recording `creator` as the identity that created the protector.
    pub fn created_by(mut self, creator: Option<&str>) -> StoredProtector {
        self.creator = creator.map(str::to_owned);
        self
    }

    /// The same state, recording the revision at which its policy was last set.
    pub fn policy_set_at(mut self, revision: u64) -> StoredProtector {
        self.policy_revision = Some(revision);
        self
    }

    /// The protector back, checked; the error says what is wrong.
    pub fn protector(&self) -> Result<Protector, String> {
        let status = match self.status {
            1 => Status::Closed,
            2 => Status::Open,
            3 => Status::HalfOpen,
            n => return Err(format!("unknown status {n}")),
        };
        let override_state = match self.override_kind {
            0 => None,
            k @ (2 | 3) => Some(Override {
                kind: if k == 2 {
                    OverrideKind::ForcedOpen
                } else {
                    OverrideKind::Disabled
                },
                expires_at: self.override_expires_at.map(time),
            }),
            n => return Err(format!("unknown override kind {n}")),
        };
        let success_limit = match (self.success_n, self.success_d) {
            (Some(n), Some(d)) => Some((n, d)),
            (None, None) => None,
            _ => return Err("half a success_limit".into()),
        };
        let window = rules::unpack(&self.window, self.window_len as usize, "window")?;
        let window_slow = if self.window_slow.is_empty() {
            Vec::new()
        } else {
            rules::unpack(&self.window_slow, self.window_len as usize, "window_slow")?
        };
        let [
            admitted,
            rejected,
            successes,
            failures,
            ignored,
            stale_reports,
            expired_permits,
        ] = <[u64; 7]>::try_from(self.counters.as_slice()).map_err(|_| "counters: expected 7 values")?;
        Protector::restore(ProtectorState {
            policy: PolicySpec {
                cooldown: time(self.cooldown),
                failure_limit: (self.failure_n, self.failure_d),
                success_limit,
                trial_permits: self.trial_permits,
                permit_ttl: time(self.permit_ttl),
                auto_half_open: self.auto_half_open,
            },
            rules: self
                .rules
                .as_ref()
                .map_or_else(|| Ok(Default::default()), StoredRules::rules)?,
            status,
            generation: self.generation,
            open_until: self.open_until.map(time),
            open_for: time(self.open_for),
            window_size: self.window_size,
            window,
            window_slow,
            time_window: self
                .time_window
                .as_ref()
                .map(StoredTimeWindow::state)
                .transpose()?,
            consecutive_failures: self.consecutive_failures,
            trials: self.trials.iter().map(|t| (t.id, time(t.expires_at))).collect(),
            next_permit_id: self.next_permit_id,
            override_state,
            resumed_at: time(self.resumed_at),
            counters: Counters {
                admitted,
                rejected,
                successes,
                failures,
                ignored,
                stale_reports,
                expired_permits,
            },
        })
        .map_err(|e| e.to_string())
    }
}
