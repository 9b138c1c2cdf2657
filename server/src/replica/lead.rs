//! The replica's life: follow, campaign when no one leads, lead while the lease holds,
//! step down and follow again.
//!
//! Three small tasks feed it: the lease keeper (one lease per registration, renewed every
//! third of its time to live; each answered renewal extends the [`Fence`](crate::cluster::Fence)
//! of a leader), the leader key's watch, and the replicas' watch (for GetCluster).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::follow::Follow;
use super::keys::{self, MemberRecord};
use super::shared::Shared;
use super::sink::EtcdSink;
use crate::cluster::{Leader, Member, Role};
use crate::store::Journal;

/// The lease as the keeper last heard of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    id: i64,
    /// Before this instant etcd cannot have expired it.
    valid_until: Instant,
}

/// The leader key as last seen: its holder and the create revision of its term.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    record: MemberRecord,
    term: i64,
}

/// How much of a lease a leader gives up, against clock rates and etcd's own timers.
fn margin(ttl: Duration) -> Duration {
    ttl / 10 + Duration::from_millis(100)
}

const RETRY: Duration = Duration::from_millis(250);

pub(super) async fn run(
    shared: Arc<Shared>,
    lease: i64,
    mut follow: Follow,
    mut revision: i64,
    shutdown: CancellationToken,
) {
    let (lease_tx, mut lease_rx) = watch::channel(Lease {
        id: lease,
        valid_until: Instant::now() + shared.ttl - margin(shared.ttl),
    });
    let (leader_tx, mut leader_rx) = watch::channel(None::<Seen>);
    let tasks = shutdown.child_token();
    tokio::spawn(keep_lease(Arc::clone(&shared), lease_tx, tasks.clone()));
    tokio::spawn(watch_leader(Arc::clone(&shared), leader_tx, tasks.clone()));
    tokio::spawn(watch_members(Arc::clone(&shared), tasks.clone()));

    'life: loop {
        // Follow until nobody leads and this replica wins the election.
        let term = loop {
            let seen = leader_rx.borrow_and_update().clone();
            match &seen {
                // A term of this replica that outlived its leading (etcd was gone when
                // it stepped down, and the lease lives on): give it up, so that an
                // election can happen.
                Some(s) if s.record.id == shared.me.id => {
                    shared.cluster.set_role(Role::Follower { leader: None });
                    resign(&shared, s.term).await;
                }
                Some(s) => shared.cluster.set_role(Role::Follower {
                    leader: Some(Leader {
                        id: s.record.id.clone(),
                        advertise: s.record.advertise.clone(),
                        admin: s.record.admin(),
                        since: keys::from_ms(s.record.since_ms),
                    }),
                }),
                None => {
                    shared.cluster.set_role(Role::Follower { leader: None });
                    let id = lease_rx.borrow().id;
                    match campaign(&shared, id).await {
                        Ok(Some(term)) => break term,
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "campaign failed; retrying"),
                    }
                }
            }
            let stop = async {
                tokio::select! {
                    _ = leader_rx.changed() => {}
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(RETRY), if leader_rx.borrow().is_none() => {}
                }
            };
            if let Err(e) = follow.follow(&shared, revision, stop).await {
                tracing::warn!(error = %e, "following the log failed; reloading from etcd");
                match reload(&shared, &shutdown).await {
                    Some((f, r)) => (follow, revision) = (f, r),
                    None => break 'life,
                }
            }
            if shutdown.is_cancelled() {
                break 'life;
            }
            // The watch stopped at some revision past `revision`; re-read from there.
            match follow.catch_up(&shared, None).await {
                Ok(r) => revision = r,
                Err(e) => tracing::warn!(error = %e, "catching up with the log failed"),
            }
        };

        // Lead: catch up to the log's end (the old leader wrote nothing after our key's
        // revision), then decide from a registry restored from it.
        if let Err(e) = follow.catch_up(&shared, None).await {
            tracing::error!(error = %e, "elected, but the log could not be read; stepping down");
            resign(&shared, term).await;
            continue;
        }
        let outcome = lead(&shared, &follow, term, &mut lease_rx, &mut leader_rx, &shutdown).await;
        if shutdown.is_cancelled() {
            resign(&shared, term).await;
            break 'life;
        }
        tracing::warn!(why = %outcome, "role: follower (stepped down)");
        shared.cluster.set_role(Role::Unavailable);
        resign(&shared, term).await;
        match reload(&shared, &shutdown).await {
            Some((f, r)) => (follow, revision) = (f, r),
            None => break 'life,
        }
    }
    // Withdraw this replica: its registration (and any leader key) go with the lease.
    let id = lease_rx.borrow().id;
    let mut client = shared.client.clone();
    let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(id)).await;
    tasks.cancel();
}

/// Tries to take the leader key with this replica's lease; the term's create revision
/// when it did.
async fn campaign(shared: &Shared, lease: i64) -> Result<Option<i64>, String> {
    let record = MemberRecord {
        since_ms: keys::now_ms(),
        ..shared.me.clone()
    };
    let key = shared.keys.leader();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            record.encode_to_vec(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let mut client = shared.client.clone();
    let answer = tokio::time::timeout(shared.ttl, client.txn(txn))
        .await
        .map_err(|_| "etcd did not answer".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(answer
        .succeeded()
        .then(|| answer.header().map_or(0, |h| h.revision())))
}

/// Leads one term; returns why it ended.
async fn lead(
    shared: &Arc<Shared>,
    follow: &Follow,
    term: i64,
    lease_rx: &mut watch::Receiver<Lease>,
    leader_rx: &mut watch::Receiver<Option<Seen>>,
    shutdown: &CancellationToken,
) -> String {
    let lease = *lease_rx.borrow_and_update();
    shared.fence.renew(lease.valid_until);
    let sink = EtcdSink {
        runtime: tokio::runtime::Handle::current(),
        kv: shared.client.kv_client(),
        keys: shared.keys.clone(),
        term,
        fence: Arc::clone(&shared.fence),
        since_snapshot: 0,
        snapshot_bytes: shared.snapshot_bytes,
    };
    let journal = Journal::start_remote(&shared.keys.log(), follow.applied, Box::new(sink));
    shared.sequencer.deliver_on_durable(&journal);
    let registry = Arc::new(shared.registry(Some(Arc::clone(&journal))));
    if let Err(e) = registry.restore(follow.replay.all()) {
        journal.fail_with("the replicated state could not be restored");
        shared.fence.revoke();
        return format!("the replicated state could not be restored: {e}");
    }
    for p in &shared.protectors {
        let ensured = match (
            crate::validate::name("name", p.name.clone(), shared.max_name_len),
            p.checked_policy(&shared.protector_rules),
        ) {
            (Ok(name), Ok(policy)) => registry
                .ensure(&name, policy)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (Err(e), _) => Err(e.to_string()),
            (_, Err(e)) => Err(e.to_string()),
        };
        if let Err(e) = ensured {
            tracing::error!(protector = %p.name, error = %e, "a configured protector could not be ensured");
        }
    }
    shared.cluster.set_registry(Arc::clone(&registry));
    let since = std::time::SystemTime::now();
    shared.cluster.set_role(Role::Leader { since });
    tracing::info!(
        term,
        protectors = registry.len(),
        revision = shared.sequencer.revision(),
        "role: leader"
    );

    let term_token = shutdown.child_token();
    let scheduler = tokio::spawn(Arc::clone(&registry).run_scheduler(term_token.clone()));
    let store = tokio::spawn(Arc::clone(&registry).run_store(shared.flush_interval, term_token.clone()));
    let why = loop {
        let remaining = shared.fence.remaining();
        tokio::select! {
            () = shutdown.cancelled() => break "shutdown".to_owned(),
            () = journal.failed() => {
                break journal.failure().unwrap_or_else(|| "the etcd log failed".into());
            }
            () = tokio::time::sleep(remaining) => {
                if !shared.fence.is_valid() {
                    break "etcd did not renew the lease in time: this replica stops deciding before another can be elected".to_owned();
                }
            }
            changed = lease_rx.changed() => {
                let now = *lease_rx.borrow_and_update();
                if changed.is_err() || now.id != lease.id {
                    break "the lease expired".to_owned();
                }
                shared.fence.extend_to(now.valid_until);
            }
            _ = leader_rx.changed() => {
                let mine = leader_rx
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|s| s.term == term && s.record.id == shared.me.id);
                if !mine {
                    break "the leader key is gone or another's".to_owned();
                }
            }
        }
    };
    if shutdown.is_cancelled() {
        // A graceful end: what the term decided is written before it resigns.
        term_token.cancel();
        let _ = scheduler.await;
        let _ = store.await;
        if let Err(e) = registry.flush_dirty() {
            tracing::error!(error = %e, "final flush failed");
        }
        let closing = Arc::clone(&journal);
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
        shared.fence.revoke();
    } else {
        shared.fence.revoke();
        term_token.cancel();
        journal.fail_with(&format!("leadership lost: {why}"));
        let _ = scheduler.await;
        let _ = store.await;
        shared.sequencer.abandon_pending();
    }
    why
}

/// Gives up the leader key of `term`, if this replica still holds it.
async fn resign(shared: &Shared, term: i64) {
    let key = shared.keys.leader();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, term)])
        .and_then([TxnOp::delete(key, None)]);
    let mut client = shared.client.clone();
    let _ = tokio::time::timeout(Duration::from_secs(2), client.txn(txn)).await;
}

/// Reloads the whole state from etcd, retrying while it is unreachable; `None` on
/// shutdown.
async fn reload(shared: &Shared, shutdown: &CancellationToken) -> Option<(Follow, i64)> {
    loop {
        match Follow::load(shared).await {
            Ok((follow, revision)) => {
                shared.cluster.set_registry(Arc::clone(&follow.registry));
                return Some((follow, revision));
            }
            Err(e) => {
                shared.cluster.set_role(Role::Unavailable);
                tracing::warn!(error = %e, "cannot load the replicated state; retrying");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Keeps this replica's lease alive; when it expired anyway (etcd unreachable for a
/// whole time to live), grants a new one and registers again.
async fn keep_lease(shared: Arc<Shared>, tx: watch::Sender<Lease>, stop: CancellationToken) {
    let ttl = shared.ttl;
    let every = ttl / 3;
    let mut client = shared.client.clone();
    let mut id = tx.borrow().id;
    'keeper: loop {
        let Ok(Ok((mut keeper, mut answers))) =
            tokio::time::timeout(every, client.lease_keep_alive(id)).await
        else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RETRY) => continue 'keeper,
            }
        };
        loop {
            let sent = Instant::now();
            let renewed = async {
                keeper.keep_alive().await.ok()?;
                answers.message().await.ok().flatten()
            };
            let answer = tokio::select! {
                () = stop.cancelled() => return,
                answer = tokio::time::timeout(every, renewed) => answer,
            };
            match answer {
                Ok(Some(a)) if a.ttl() > 0 => {
                    let granted = Duration::from_secs(a.ttl() as u64);
                    tx.send_replace(Lease {
                        id,
                        valid_until: sent + granted.saturating_sub(margin(ttl)),
                    });
                }
                Ok(Some(_)) => {
                    // Expired: a new lease and a new registration.
                    match renew_registration(&shared).await {
                        Ok(new) => {
                            id = new;
                            tx.send_replace(Lease {
                                id,
                                valid_until: Instant::now() + ttl.saturating_sub(margin(ttl)),
                            });
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot register again; retrying"),
                    }
                    continue 'keeper;
                }
                _ => continue 'keeper,
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until((sent + every).into()) => {}
            }
        }
    }
}

async fn renew_registration(shared: &Shared) -> Result<i64, String> {
    let mut client = shared.client.clone();
    let granted = client
        .lease_grant(shared.ttl.as_secs() as i64, None)
        .await
        .map_err(|e| e.to_string())?;
    client
        .put(
            shared.keys.replica(&shared.me.advertise),
            shared.me.encode_to_vec(),
            Some(PutOptions::new().with_lease(granted.id())),
        )
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("lease expired; registered again with a new one");
    Ok(granted.id())
}

/// Follows the leader key.
async fn watch_leader(shared: Arc<Shared>, tx: watch::Sender<Option<Seen>>, stop: CancellationToken) {
    let key = shared.keys.leader();
    let decode = |kv: &etcd_client::KeyValue| {
        MemberRecord::decode(kv.value()).ok().map(|record| Seen {
            record,
            term: kv.create_revision(),
        })
    };
    loop {
        let mut client = shared.client.clone();
        let watched = async {
            let now = tokio::time::timeout(shared.ttl, client.get(key.clone(), None))
                .await
                .map_err(|_| "etcd did not answer".to_owned())?
                .map_err(|e| e.to_string())?;
            let revision = now.header().map_or(0, |h| h.revision());
            tx.send_replace(now.kvs().first().and_then(decode));
            let mut stream = client
                .watch(
                    key.clone(),
                    Some(WatchOptions::new().with_start_revision(revision + 1)),
                )
                .await
                .map_err(|e| e.to_string())?;
            while let Some(answer) = stream.message().await.map_err(|e| e.to_string())? {
                if answer.canceled() {
                    break;
                }
                for event in answer.events() {
                    let seen = match event.event_type() {
                        EventType::Put => event.kv().and_then(decode),
                        EventType::Delete => None,
                    };
                    tx.send_replace(seen);
                }
            }
            Ok::<(), String>(())
        };
        if !watched_once(&stop, "leader", watched).await {
            return;
        }
    }
}

/// Keeps the cluster's list of replicas for GetCluster.
async fn watch_members(shared: Arc<Shared>, stop: CancellationToken) {
    let prefix = shared.keys.replicas();
    let member = |record: MemberRecord| Member {
        admin: record.admin(),
        id: record.id,
        advertise: record.advertise,
        started: keys::from_ms(record.since_ms),
    };
    loop {
        let mut client = shared.client.clone();
        let watched = async {
            let now = tokio::time::timeout(
                shared.ttl,
                client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
            )
            .await
            .map_err(|_| "etcd did not answer".to_owned())?
            .map_err(|e| e.to_string())?;
            let revision = now.header().map_or(0, |h| h.revision());
            let mut members: BTreeMap<Vec<u8>, MemberRecord> = now
                .kvs()
                .iter()
                .filter_map(|kv| Some((kv.key().to_vec(), MemberRecord::decode(kv.value()).ok()?)))
                .collect();
            publish(&shared, members.values().cloned().map(member).collect()).await;
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision + 1);
            let mut stream = client
                .watch(prefix.clone(), Some(options))
                .await
                .map_err(|e| e.to_string())?;
            while let Some(answer) = stream.message().await.map_err(|e| e.to_string())? {
                if answer.canceled() {
                    break;
                }
                for event in answer.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Put => {
                            if let Ok(record) = MemberRecord::decode(kv.value()) {
                                members.insert(kv.key().to_vec(), record);
                            }
                        }
                        EventType::Delete => {
                            members.remove(kv.key());
                        }
                    }
                }
                publish(&shared, members.values().cloned().map(member).collect()).await;
            }
            Ok::<(), String>(())
        };
        if !watched_once(&stop, "replicas", watched).await {
            return;
        }
    }
}

/// How long resolving one member's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Records the replicas seen, and the IP addresses their advertised hosts (data and
/// admin) resolve to, by which a replica recognises the others' forwarded calls. A host
/// that does not resolve in time is left out until the next change, and said so.
async fn publish(shared: &Shared, members: Vec<Member>) {
    let hosts: Vec<String> = members
        .iter()
        .flat_map(|m| std::iter::once(m.advertise.clone()).chain(m.admin.clone()))
        .collect();
    shared.cluster.set_members(members);
    let mut addresses = Vec::new();
    for host in hosts {
        if let Ok(addr) = host.parse::<std::net::SocketAddr>() {
            addresses.push(addr.ip());
            continue;
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(host.as_str())).await {
            Ok(Ok(found)) => addresses.extend(found.map(|a| a.ip())),
            Ok(Err(e)) => {
                tracing::warn!(%host, error = %e, "a replica's advertised host does not resolve; its forwarded calls are not recognised")
            }
            Err(_) => {
                tracing::warn!(%host, "a replica's advertised host did not resolve in time; its forwarded calls are not recognised")
            }
        }
    }
    shared.cluster.set_member_addresses(addresses);
}

/// Runs one watch until it fails (then pauses before the next), or `stop`; false on
/// `stop`.
async fn watched_once(
    stop: &CancellationToken,
    what: &str,
    watch: impl std::future::Future<Output = Result<(), String>>,
) -> bool {
    tokio::select! {
        () = stop.cancelled() => return false,
        result = watch => {
            if let Err(e) = result {
                tracing::debug!(error = %e, what, "watch failed; watching again");
            }
        }
    }
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(RETRY) => true,
    }
}
