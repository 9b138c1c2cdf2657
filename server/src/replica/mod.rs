//! Replicated mode: several circuitd replicas share one state in etcd v3; one leads.
//!
//! Design note. etcd's primitives map one to one onto ours, so there is no replication
//! protocol of our own: the leader is whoever holds the `P/leader` key, created only
//! when absent and attached to its lease; it decides exactly as a single daemon does,
//! but its journal is the etcd log (`sink`), each group commit a transaction that checks
//! the leader key's create revision, so a deposed or partitioned leader can never write.
//! Followers replay that log (`follow`) into a registry that never decides, hand their
//! watchers the leader's events with the leader's revisions (so `start_revision` means
//! the same on every replica), and forward every decision to the leader. When the
//! leader key goes, they campaign; the winner catches up to the log's end and restores a
//! deciding registry from it, so OPEN protectors stay OPEN until their stored deadline
//! and revisions continue. A leader decides only while its `Fence` says its lease cannot
//! have expired, so it stops before another replica can be elected (`lead`).
//!
//! Keys and records: `keys`.

mod follow;
mod keys;
mod lead;
mod shared;
mod sink;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::cluster::{Cluster, Fence, Member, Role};
use crate::config::{ClusterSettings, Config};
use crate::error::ServeError;
use crate::registry::Registry;
use crate::sequencer::Sequencer;
use crate::store;
use crate::watch::Watchers;
use follow::Follow;
use keys::{ClusterMeta, FORMAT, Keys, MemberRecord};
use shared::Shared;

/// How long connecting to etcd and each call at start may take.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A started replica: its cluster view and the task that follows, campaigns and leads.
#[derive(Debug)]
pub struct Replica {
    cluster: Arc<Cluster>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    /// The replica's place in the cluster, for the services.
    pub fn cluster(&self) -> Arc<Cluster> {
        Arc::clone(&self.cluster)
    }

    /// Waits for the replica's task to finish after `shutdown` (a leader flushes,
    /// closes its journal and resigns; every replica withdraws its registration).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

fn refuse(message: String) -> ServeError {
    ServeError::Config(message)
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    urls: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ServeError> {
    match tokio::time::timeout(START_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(refuse(format!("etcd at {urls} is unreachable ({what}): {e}"))),
        Err(_) => Err(refuse(format!(
            "etcd at {urls} is unreachable ({what}: no answer within {}s); check --etcd and that etcd runs",
            START_TIMEOUT.as_secs()
        ))),
    }
}

/// Connects to etcd, checks (or claims) the prefix, registers this replica under
/// `advertise`, replays the log and starts following. Fails with a message naming the
/// problem: etcd unreachable, a prefix holding something else, an address another
/// replica advertises.
pub async fn start(
    config: &Config,
    settings: &ClusterSettings,
    advertise: String,
    shutdown: CancellationToken,
) -> Result<Replica, ServeError> {
    let urls = settings.etcd.join(",");
    let options = ConnectOptions::new()
        .with_connect_timeout(START_TIMEOUT)
        .with_timeout(START_TIMEOUT)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
    let mut client = timed(
        "connecting",
        &urls,
        Client::connect(settings.etcd.clone(), Some(options)),
    )
    .await?;
    let keys = Keys::new(&settings.prefix);
    let epoch = claim(&mut client, &keys, &urls).await?;

    let id = format!("{:016x}", store::new_epoch());
    let me = MemberRecord {
        id: id.clone(),
        advertise: advertise.clone(),
        since_ms: keys::now_ms(),
        admin: settings.advertise_admin.clone().unwrap_or_default(),
    };
    let (lease, ttl) = register(&mut client, &keys, &me, settings.lease_ttl, &urls).await?;

    let sequencer = Arc::new(Sequencer::new(&config.watch, 0, epoch, true));
    let watchers = Watchers::new(config.limits.max_watchers, shutdown.clone());
    let placeholder = Arc::new(Registry::new(
        config.limits.max_protectors,
        Arc::clone(&sequencer),
        watchers.clone(),
        Clock::new(),
        None,
    ));
    let member = Member {
        id,
        advertise,
        admin: settings.advertise_admin.clone(),
        started: keys::from_ms(me.since_ms),
    };
    let cluster = Cluster::replica(placeholder, member, settings.prefix.clone(), Role::Unavailable);
    let shared = Arc::new(Shared {
        client,
        keys,
        cluster: Arc::clone(&cluster),
        sequencer,
        watchers,
        max_protectors: config.limits.max_protectors,
        max_history_entries: config.limits.max_history_entries,
        flush_interval: Duration::from_millis(100),
        ttl,
        snapshot_bytes: settings.snapshot_bytes,
        protectors: config.protectors.clone(),
        protector_rules: config.protector_rules.clone(),
        max_name_len: config.limits.max_name_len,
        me,
        fence: Arc::new(Fence::default()),
    });
    let (follow, revision) = Follow::load(&shared)
        .await
        .map_err(|e| refuse(format!("etcd at {urls}: {e}")))?;
    cluster.set_registry(Arc::clone(&follow.registry));
    tracing::info!(
        prefix = %settings.prefix,
        protectors = follow.registry.len(),
        revision = shared.sequencer.revision(),
        epoch,
        "replicated state loaded from etcd"
    );
    let task = tokio::spawn(lead::run(shared, lease, follow, revision, shutdown));
    Ok(Replica { cluster, task })
}

/// The prefix's epoch: claimed with a new one when the prefix is empty, read when it
/// holds a cluster of ours; anything else there is refused.
async fn claim(client: &mut Client, keys: &Keys, urls: &str) -> Result<u64, ServeError> {
    let prefix = keys.prefix();
    let meta = timed("reading the cluster key", urls, client.get(keys.cluster(), None)).await?;
    if let Some(kv) = meta.kvs().first() {
        return match ClusterMeta::decode(kv.value()) {
            Ok(meta) if meta.format == FORMAT && meta.epoch != 0 => Ok(meta.epoch),
            _ => Err(refuse(format!(
                "etcd prefix {prefix} is not a resilient-circuit cluster (its key {} holds something else): choose another --etcd-prefix",
                keys.cluster()
            ))),
        };
    }
    let any = timed(
        "reading the prefix",
        urls,
        client.get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only().with_limit(1)),
        ),
    )
    .await?;
    if let Some(kv) = any.kvs().first() {
        return Err(refuse(format!(
            "etcd prefix {prefix} is not a resilient-circuit cluster: it already holds other data (e.g. {}); choose another --etcd-prefix",
            String::from_utf8_lossy(kv.key())
        )));
    }
    let epoch = store::new_epoch();
    let meta = ClusterMeta {
        format: FORMAT.to_owned(),
        epoch,
    }
    .encode_to_vec();
    let txn = Txn::new()
        .when([Compare::create_revision(keys.cluster(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(keys.cluster(), meta, None)]);
    let answer = timed("creating the cluster key", urls, client.txn(txn)).await?;
    if answer.succeeded() {
        tracing::info!(%prefix, epoch, "new cluster created in etcd");
        Ok(epoch)
    } else {
        // Another replica claimed it at the same moment: read what it wrote.
        Box::pin(claim(client, keys, urls)).await
    }
}

/// Registers `me` under its address with a new lease; returns the lease and its time
/// to live. The key may still be held by this address's previous run (killed, its lease
/// not yet expired): wait up to one lease for it to go, holding no lease meanwhile (one
/// would expire unrenewed); a key that outlives that belongs to a live replica
/// advertising the same address.
async fn register(
    client: &mut Client,
    keys: &Keys,
    me: &MemberRecord,
    ttl: Duration,
    urls: &str,
) -> Result<(i64, Duration), ServeError> {
    let key = keys.replica(&me.advertise);
    let give_up = tokio::time::Instant::now() + ttl + Duration::from_secs(1);
    loop {
        let held = timed("reading the replicas", urls, client.get(key.clone(), None)).await?;
        if let Some(kv) = held.kvs().first() {
            if tokio::time::Instant::now() >= give_up {
                let holder = MemberRecord::decode(kv.value()).map(|m| m.id).unwrap_or_default();
                return Err(refuse(format!(
                    "address {} is already advertised by another live replica (id {holder}) of the cluster under {}: give each replica its own --advertise",
                    me.advertise,
                    keys.prefix()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let granted = timed(
            "granting a lease",
            urls,
            client.lease_grant(ttl.as_secs() as i64, None),
        )
        .await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                me.encode_to_vec(),
                Some(PutOptions::new().with_lease(granted.id())),
            )]);
        if timed("registering this replica", urls, client.txn(txn))
            .await?
            .succeeded()
        {
            return Ok((granted.id(), Duration::from_secs(granted.ttl().max(1) as u64)));
        }
        // Another run took it between the read and the write: give the lease back.
        let _ = client.lease_revoke(granted.id()).await;
    }
}
