//! What this replica is in its cluster, and the registry it currently serves.
//!
//! A daemon started without `--etcd` is [`Role::Standalone`] for its whole life. In
//! replicated mode (`replica`, behind the `etcd` feature) the role changes: a follower
//! serves reads and Watch from its replicated registry and forwards everything else to
//! the leader; the replica that wins the election becomes [`Role::Leader`] and decides; a
//! leader that loses its lease or etcd goes back to following. Each change of role may
//! replace the registry (a new leader restores a deciding registry from the replicated
//! state; a deposed one throws away what it had not made durable), so the services read
//! [`Cluster::registry`] per call rather than holding one. The sequencer, and so every
//! open Watch stream, outlives those swaps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::registry::Registry;

/// One replica as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Unique for each run of a process.
    pub id: String,
    /// The address clients and other replicas use to reach it.
    pub advertise: String,
    /// When this run registered.
    pub started: SystemTime,
}

/// What this replica does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not replicated: it decides, with its own journal or in memory.
    Standalone,
    /// It holds the lease and decides.
    Leader {
        /// When it started to lead.
        since: SystemTime,
    },
    /// It follows etcd, serves reads and Watch, and forwards the rest.
    Follower {
        /// The leader to forward to, if one is known (none during an election).
        leader: Option<Leader>,
    },
    /// It lost etcd (or is still catching up): it neither decides nor forwards, and its
    /// reads may be stale. Health is NOT_SERVING.
    Unavailable,
}

/// The leader as a follower sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// Its identity.
    pub id: String,
    /// Where to forward to.
    pub advertise: String,
    /// When it started to lead.
    pub since: SystemTime,
}

impl Role {
    /// Whether this replica decides itself (standalone or leader).
    pub fn decides(&self) -> bool {
        matches!(self, Role::Standalone | Role::Leader { .. })
    }
}

/// This replica's place in its cluster and the registry it serves.
#[derive(Debug)]
pub struct Cluster {
    registry: ArcSwap<Registry>,
    role: watch::Sender<Role>,
    me: Member,
    members: Mutex<Vec<Member>>,
    /// The etcd key prefix; empty when standalone.
    prefix: String,
}

impl Cluster {
    /// A daemon alone: always [`Role::Standalone`], always this registry.
    pub fn standalone(registry: Arc<Registry>, advertise: String) -> Arc<Cluster> {
        let me = Member {
            id: format!("{:016x}", crate::store::new_epoch()),
            advertise,
            started: SystemTime::now(),
        };
        Arc::new(Cluster {
            registry: ArcSwap::new(registry),
            role: watch::channel(Role::Standalone).0,
            members: Mutex::new(vec![me.clone()]),
            me,
            prefix: String::new(),
        })
    }

    /// A replica of the cluster under `prefix`, starting in `role` with `registry`.
    pub fn replica(registry: Arc<Registry>, me: Member, prefix: String, role: Role) -> Arc<Cluster> {
        Arc::new(Cluster {
            registry: ArcSwap::new(registry),
            role: watch::channel(role).0,
            members: Mutex::new(vec![me.clone()]),
            me,
            prefix,
        })
    }

    /// The registry to serve this call from.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Serves `registry` from now on.
    pub fn set_registry(&self, registry: Arc<Registry>) {
        self.registry.store(registry);
    }

    /// What this replica does now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Changes of role, as they happen.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Records a new role (only the replica's own election loop calls this).
    pub fn set_role(&self, role: Role) {
        self.role.send_if_modified(|old| {
            let changed = *old != role;
            *old = role;
            changed
        });
    }

    /// This replica.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The etcd key prefix; empty when standalone.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every replica registered, as last seen.
    pub fn members(&self) -> Vec<Member> {
        self.members.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the replicas seen.
    pub fn set_members(&self, members: Vec<Member>) {
        *self.members.lock().unwrap_or_else(|e| e.into_inner()) = members;
    }
}

/// A leader's right to decide, in time: valid until an instant its lease cannot have
/// expired before. Each keepalive etcd answers extends it to the keepalive's sending
/// instant plus the lease's time to live, less a margin; nothing else does. A leader
/// whose keepalives stop being answered (etcd unreachable, or the process stopped)
/// thus stops deciding before etcd can hand the lease to another replica: the check
/// reads the monotonic clock, which keeps running while a process is stopped.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base`; 0 = not valid.
    until: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }
}

impl Fence {
    /// Valid until `until` (never moves an earlier revoke back, see [`Fence::revoke`]).
    pub fn extend_to(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.until.fetch_max(nanos.max(1), Ordering::AcqRel);
    }

    /// No longer valid, until extended by a new term (see [`Fence::renew`]).
    pub fn revoke(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// Valid until `until`, even if an earlier extension reached later (a new term).
    pub fn renew(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.until.store(nanos.max(1), Ordering::Release);
    }

    /// Whether a decision may be made now.
    pub fn is_valid(&self) -> bool {
        self.remaining() > Duration::ZERO
    }

    /// How long the right to decide lasts from now.
    pub fn remaining(&self) -> Duration {
        let until = Duration::from_nanos(self.until.load(Ordering::Acquire));
        until.saturating_sub(self.base.elapsed())
    }
}
