//! What this replica is in its cluster, and the registry it currently serves.
//!
//! A daemon started without `--etcd` is [`Role::Standalone`] for its whole life. In
//! replicated mode (`replica`, behind the `etcd` feature) the role changes: a follower
//! serves reads and Watch from its replicated registry and forwards everything else to
//! the leader; the replica that wins the election becomes [`Role::Leader`] and decides; a
//! leader that loses its lease or etcd goes back to following. Each change of role may
//! replace the registry (a new leader restores a deciding registry from the replicated
//! state; a deposed one throws away what it had not made durable), so the services read
//! [`Cluster::registry`] per call rather than holding one (a Session keeps a
//! [`RegistryCache`] while requests flow, which sees a swap at its next message). The
//! sequencer, and so every open Watch stream, outlives those swaps.

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use crate::fence::Fence;
use crate::registry::Registry;

/// The registry a [`Cluster`] serves, kept between calls (see [`Cluster::registry_cache`]).
pub type RegistryCache = arc_swap::Cache<Registries, Arc<Registry>>;

/// A cluster's registry slot, for [`RegistryCache`].
#[derive(Debug)]
pub struct Registries(Arc<Cluster>);

impl Deref for Registries {
    type Target = ArcSwap<Registry>;

    fn deref(&self) -> &ArcSwap<Registry> {
        &self.0.registry
    }
}

/// One replica as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Unique for each run of a process.
    pub id: String,
    /// The address clients and other replicas use to reach it.
    pub advertise: String,
    /// Where its admin listener (`--admin-listen`) is reached, if it has one: AdminService
    /// is then served there alone.
    pub admin: Option<String>,
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
    /// Where to forward AdminService calls to, when the leader serves them on an admin
    /// listener of its own; `None`: at `advertise`.
    pub admin: Option<String>,
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
    /// `role.decides()`, kept beside the role so the hot path reads one flag, not the
    /// role's lock (a Session checks it per message).
    decides: AtomicBool,
    me: Member,
    members: Mutex<Vec<Member>>,
    /// The IP addresses the members' advertised hosts resolve to: a call from one of
    /// them may carry forwarding marks (`service::forward::trust`). Read on forwarded
    /// calls, so a lock-free load.
    member_addresses: ArcSwap<Vec<IpAddr>>,
    /// The etcd key prefix; empty when standalone.
    prefix: String,
}

impl Cluster {
    /// A daemon alone: always [`Role::Standalone`], always this registry.
    pub fn standalone(registry: Arc<Registry>, advertise: String, admin: Option<String>) -> Arc<Cluster> {
        let me = Member {
            id: format!("{:016x}", crate::store::new_epoch()),
            advertise,
            admin,
            started: SystemTime::now(),
        };
        Arc::new(Cluster {
            registry: ArcSwap::new(registry),
            role: watch::channel(Role::Standalone).0,
            decides: AtomicBool::new(true),
            members: Mutex::new(vec![me.clone()]),
            member_addresses: ArcSwap::default(),
            me,
            prefix: String::new(),
        })
    }

    /// A replica of the cluster under `prefix`, starting in `role` with `registry`.
    pub fn replica(registry: Arc<Registry>, me: Member, prefix: String, role: Role) -> Arc<Cluster> {
        Arc::new(Cluster {
            registry: ArcSwap::new(registry),
            decides: AtomicBool::new(role.decides()),
            role: watch::channel(role).0,
            members: Mutex::new(vec![me.clone()]),
            member_addresses: ArcSwap::default(),
            me,
            prefix,
        })
    }

    /// The registry to serve this call from.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// The registry to serve from, kept between calls: [`RegistryCache::load`] compares
    /// one pointer and reads the registry again only when it was replaced (a Session's
    /// way, per message). Whoever keeps one keeps a replaced registry alive until its
    /// next load, so it drops the cache when it goes idle.
    pub fn registry_cache(self: &Arc<Self>) -> RegistryCache {
        arc_swap::Cache::new(Registries(Arc::clone(self)))
    }

    /// Serves `registry` from now on.
    pub fn set_registry(&self, registry: Arc<Registry>) {
        self.registry.store(registry);
    }

    /// What this replica does now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Whether this replica decides itself now (standalone or leader).
    pub fn decides(&self) -> bool {
        self.decides.load(Ordering::Acquire)
    }

    /// Changes of role, as they happen.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Records a new role (only the replica's own election loop calls this).
    pub fn set_role(&self, role: Role) {
        self.role.send_if_modified(|old| {
            let changed = *old != role;
            self.decides.store(role.decides(), Ordering::Release);
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

    /// Replaces the addresses the members' hosts resolve to.
    pub fn set_member_addresses(&self, addresses: Vec<IpAddr>) {
        let mut addresses: Vec<IpAddr> = addresses.into_iter().map(|ip| ip.to_canonical()).collect();
        addresses.sort_unstable();
        addresses.dedup();
        self.member_addresses.store(Arc::new(addresses));
    }

    /// Whether `ip` is one of the members' addresses (an IPv4 address seen through an
    /// IPv6 socket counts as itself).
    pub fn is_member_address(&self, ip: IpAddr) -> bool {
        self.member_addresses.load().contains(&ip.to_canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::empty_registry;

    #[test]
    fn a_registry_cache_reads_a_replaced_registry_at_its_next_load() {
        let first = Arc::new(empty_registry());
        let cluster = Cluster::standalone(Arc::clone(&first), "127.0.0.1:0".to_owned(), None);
        let mut cache = cluster.registry_cache();
        assert!(Arc::ptr_eq(cache.load(), &first));
        assert!(Arc::ptr_eq(cache.load(), &first), "kept, not read again");

        let second = Arc::new(empty_registry());
        cluster.set_registry(Arc::clone(&second));
        assert!(Arc::ptr_eq(cache.load(), &second));
        assert_eq!(
            Arc::strong_count(&first),
            1,
            "neither the cluster nor the cache keeps the replaced registry"
        );
    }
}
